"""Benchmark mode: one process per row, the fp32 torch row as the reference of the
agreement, a row that cannot run says why, and the JSON rows carry the documented keys."""

import json

import yolact_fast as yf
from yolact_fast.benchmarking import format_table, rows_for_machine


def test_rows_run_in_their_own_processes_and_report(tmp_path):
    path = tmp_path / "rows.json"
    rows = yf.benchmark(
        "demo",
        image_size=(64, 80),
        batch=2,
        runs=2,
        images=2,
        json_path=path,
        rows=[("torch", "fp32"), ("onnxruntime", "fp16"), ("eager", "fp32")],
    )
    by_name = {(row.runtime, row.precision): row for row in rows}
    reference, failed, eager = by_name[("torch", "fp32")], by_name[("onnxruntime", "fp16")], by_name[("eager", "fp32")]
    assert reference.error == "" and reference.agreement == 1.0 and reference.engine.startswith("torch/")
    assert reference.ms_per_image > 0 and reference.images_per_s > 0 and reference.images_per_s_batch > 0
    assert reference.peak_memory_mb > 0
    assert "onnxruntime" in failed.error and failed.ms_per_image is None
    assert eager.error == "" and eager.agreement is not None and eager.agreement >= 0.98
    written = json.loads(path.read_text())
    assert [row["runtime"] for row in written] == ["torch", "onnxruntime", "eager"]
    assert {"runtime", "precision", "ms_per_image", "images_per_s", "agreement"} <= set(written[0])
    table = format_table(rows)
    assert "error:" in table and table.count("\n") == 4


def test_every_machine_has_the_reference_and_the_baselines():
    rows = rows_for_machine("cpu")
    assert rows[0] == ("torch", "fp32") and ("eager", "fp32") in rows and ("onnxruntime-graph", "fp32") in rows
