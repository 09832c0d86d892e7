"""yf.segment_files and ``yolact-fast segment`` under torchrun: 2 gloo processes on the CPU give
the outputs of one process; a killed rank, then --resume, ends with every input done once;
failures name the rank and the input; ranks that disagree, or do not share --out, are refused."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import yolact_fast as yf
from yolact_fast import jobs

from inputs import shape_frames, write_video

REPO = Path(__file__).resolve().parents[1]
SIZES = [(64, 64), (96, 128), (64, 64), (128, 96), (64, 64)]  # two batch shapes per rank

pytestmark = pytest.mark.usefixtures("one_thread")


def torchrun(*args, processes=2, env=None, timeout=180):
    """``torchrun --nproc-per-node=PROCESSES ARGS`` (gloo, CPU) from the repository root."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(env or {}))
    env.pop("YOLACT_FAST_WEIGHTS", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def segment_cli(out, *inputs, options=(), **kwargs):
    return torchrun("-m", "yolact_fast", "segment", *map(str, inputs), "--out", str(out), *options, **kwargs)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of 5 synthetic images of 3 sizes, and a 4-frame video."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "images").mkdir()
    for index, size in enumerate(SIZES):
        image = yf.data.synthetic_shapes(1, seed=40 + index, size=size)[0][0]
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / "images" / f"{index}.png")
    pytest.importorskip("av")
    video = write_video(folder / "clip.mp4", shape_frames(4, size=(64, 80), seed=900), fps=8)
    return folder / "images", video


@pytest.fixture(scope="module")
def single(inputs, tmp_path_factory):
    """The outputs of one process (the Python API, in this process)."""
    out = tmp_path_factory.mktemp("single")
    torch.set_num_threads(1)
    summary = yf.segment_files([str(p) for p in inputs], out, "demo", batch_size=2)
    assert summary["world_size"] == 1 and not summary["failed"] and summary["frames"] == 4
    return out


@pytest.fixture(scope="module")
def two(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    result = segment_cli(out, *inputs, options=("--batch-size", "2"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-20000:]
    return out, result


def assert_same_outputs(a: Path, b: Path):
    """Equal results.json and JSON lines, up to float rounding of other batch compositions."""
    first, second = (json.loads((o / "results.json").read_text()) for o in (a, b))
    assert first["images"] == second["images"] and len(first["images"]) == len(SIZES)
    assert_same_annotations(first["annotations"], second["annotations"])
    lines = [[json.loads(line) for line in (o / "clip.jsonl").read_text().splitlines()] for o in (a, b)]
    assert [line["frame_index"] for line in lines[0]] == [line["frame_index"] for line in lines[1]] == [0, 1, 2, 3]
    for one, other in zip(*lines):
        assert_same_annotations(one["annotations"], other["annotations"])
    for out in (a, b):
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        assert [name for name in written if not name.startswith(jobs.PARTS)] == [
            "clip.jsonl",
            "clip.mp4",
            *(f"images/{i}.png" for i in range(len(SIZES))),
            "results.json",
        ]


def assert_same_annotations(first, second):
    assert len(first) == len(second) > 0
    for x, y in zip(first, second):
        assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
        assert x["score"] == pytest.approx(y["score"], abs=1e-4)
        assert x["bbox"] == pytest.approx(y["bbox"], abs=0.05)


def records(out: Path) -> dict:
    return {p.relative_to(out / jobs.PARTS): p.stat().st_mtime_ns for p in (out / jobs.PARTS).rglob("*.json")}


def test_two_processes_write_what_one_process_writes(single, two):
    out, result = two
    assert_same_outputs(single, out)
    assert "5 image(s), 1 video(s) (4 frames)" in result.stdout and "in 2 processes" in result.stdout
    assert result.stdout.count("image(s)") == 1  # rank 0 prints the summary


def test_every_input_is_processed_by_one_rank(two):
    """Each rank's share is disjoint: a rank only writes the records of its inputs, once."""
    out, _ = two
    names = sorted(str(p) for p in records(out))
    assert names == sorted([*(f"images/{i}.png.json" for i in range(len(SIZES))), "clip.mp4.json"])


def test_a_killed_rank_then_resume_does_only_what_is_missing(inputs, single, tmp_path):
    out = tmp_path / "out"
    # rank 1's share: images 1 and 3, then the video; it dies at image 3
    killed = segment_cli(out, *inputs, options=("--batch-size", "2"), env={jobs.FAULT_ENV: "1:1:kill"})
    assert killed.returncode != 0
    assert not (out / jobs.PARTS / "images" / "3.png.json").exists() and not (out / "clip.mp4").exists()
    before = records(out)
    assert Path("images/1.png.json") in before
    stale = out / "images" / ".3.png.0123456789ab.tmp"  # what a rank killed while writing leaves
    stale.write_bytes(b"half")
    summary = yf.segment_files([str(p) for p in inputs], out, "demo", batch_size=2, resume=True)  # 1 process
    assert summary["resumed"] == len(before) and not summary["failed"] and not stale.exists()
    after = records(out)
    assert sorted(after) == sorted(records(single)) and all(after[p] == t for p, t in before.items())
    assert_same_outputs(single, out)


def test_a_failing_rank_names_itself_and_its_input_and_ends_the_job(inputs, tmp_path):
    result = segment_cli(tmp_path / "out", *inputs, env={jobs.FAULT_ENV: "1:0:raise"})
    assert result.returncode != 0
    assert f"rank 1 failed on '{inputs[0] / '1.png'}'" in result.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_stalled_rank_ends_in_the_process_group_timeout(inputs, tmp_path):
    started = time.time()
    result = segment_cli(
        tmp_path / "out", inputs[0], options=("--dist-timeout", "5"), env={jobs.FAULT_ENV: "1:0:stall"}, timeout=120
    )
    assert result.returncode != 0 and time.time() - started < 100
    assert "timed out" in (result.stdout + result.stderr).lower()


def test_rank_zero_lists_the_inputs_and_bad_inputs_are_counted(inputs, tmp_path):
    """Ranks started with other inputs get rank 0's list; 3 processes for 2 inputs (rank 2
    has none); the unreadable input is counted once and the status is 1."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    good = inputs[0] / "0.png"
    out = tmp_path / "out"
    worker = str(Path(__file__).with_name("segment_worker.py"))
    result = torchrun(worker, "inputs", str(out), str(good), str(broken), processes=3)
    assert result.returncode != 0
    assert "'unreadable images': 1" in result.stdout and "in 3 processes" in result.stdout
    assert "1 input(s) could not be processed" in result.stderr
    written = json.loads((out / "results.json").read_text())
    assert written["images"] == [{"id": 0, "file_name": str(good)}]


@pytest.mark.parametrize(
    "mode,message",
    [
        ("options", "rank 1 was started with other options than rank 0"),
        ("unshared", "is not shared by every rank: rank 1"),
    ],
)
def test_ranks_that_disagree_or_do_not_share_out_are_refused(inputs, tmp_path, mode, message):
    out = tmp_path / "out"
    worker = str(Path(__file__).with_name("segment_worker.py"))
    result = torchrun(worker, mode, str(out), str(inputs[0] / "0.png"))
    assert result.returncode != 0
    assert message in result.stderr
    assert not (out / "0.png").exists()


def test_segment_files_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="inputs must name at least one"):
        yf.segment_files([], tmp_path)
    with pytest.raises(ValueError, match="every must be >= 1"):
        yf.segment_files(["a.png"], tmp_path, every=0)
    with pytest.raises(FileNotFoundError, match="image file not found"):
        yf.segment_files(["missing.png"], tmp_path)


def test_resume_redoes_an_input_whose_record_has_other_settings(inputs, single, tmp_path):
    image = inputs[0] / "0.png"
    first = yf.segment_files(str(image), tmp_path, "demo")
    assert first["resumed"] == 0 and first["instances"] > 0
    again = yf.segment_files(str(image), tmp_path, "demo", resume=True)
    assert again["resumed"] == 1 and again["instances"] == first["instances"]
    other = yf.segment_files(str(image), tmp_path, "demo", resume=True, score_threshold=0.5)
    assert other["resumed"] == 0 and other["instances"] < first["instances"]


def test_eval_in_two_processes_gives_the_results_and_ap_of_one(tmp_path):
    from yolact_fast.cli import main

    options = ["--weights", "demo", "--data", "synthetic:6:0:96", "--quiet"]
    assert main(["eval", *options, "--out", str(tmp_path / "one")]) == 0
    result = torchrun("-m", "yolact_fast", "eval", *options, "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("mask AP") == 1  # rank 0 computes and prints AP
    one, two = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two"))
    assert one == two and one["images"] == 6 and one["segm"]["AP"] > 0
    for name in ("results.json", "bbox_results.json"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
