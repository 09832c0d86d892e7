"""``yolact-fast train`` and ``yolact-fast eval`` end to end, and their error reporting."""

import json

import pytest

from yolact_fast.cli import main


pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--config",
        "yolact_demo",
        "--data",
        "synthetic:2:0:64",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--batch-size",
        "2",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1
    assert (out / "last.pt").exists() and (out / "model.pt").exists()
    assert len((out / "loss_log.jsonl").read_text().splitlines()) == 1
    # resume: the next epoch continues from last.pt
    assert main(args[:6] + ["2"] + args[7:] + ["--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2

    assert (
        main(
            ["eval", "--weights", str(out / "model.pt"), "--data", "synthetic:2:7:64", "--out", str(tmp_path / "eval")]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "box AP" in printed and "mask AP" in printed
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 2 and 0 <= metrics["segm"]["AP"] <= 1
    assert isinstance(json.loads((tmp_path / "eval" / "results.json").read_text()), list)


def test_train_refuses_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"\x00garbage")
    assert (
        main(
            [
                "train",
                "--config",
                "yolact_demo",
                "--data",
                "synthetic:2:0:64",
                "--epochs",
                "1",
                "--out",
                str(tmp_path),
                "--resume",
                str(bad),
            ]
        )
        == 1
    )
    assert "refusing to resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["eval", "--weights", "demo", "--data", "nowhere.json"], "data not found"),
        (["eval", "--weights", "missing.pt", "--data", "synthetic:1"], "checkpoint not found"),
        (["eval", "--weights", "demo", "--data", "synthetic:zero"], "bad synthetic data spec"),
        (["train", "--config", "nope", "--data", "synthetic:1", "--epochs", "1", "--out", "x"], "unknown config"),
        (
            ["train", "--config", "yolact_demo", "--data", "synthetic:1", "--epochs", "0", "--out", "x"],
            "--epochs must be >= 1, got 0",
        ),
        (
            [
                "train",
                "--config",
                "yolact_demo",
                "--data",
                "synthetic:1",
                "--epochs",
                "1",
                "--out",
                "x",
                "--batch-size",
                "0",
            ],
            "--batch-size must be >= 1, got 0",
        ),
        (
            [
                "train",
                "--config",
                "yolact_demo",
                "--data",
                "synthetic:1",
                "--epochs",
                "1",
                "--out",
                "x",
                "--workers",
                "-1",
            ],
            "--workers must be >= 0, got -1",
        ),
        (
            ["train", "--config", "yolact_demo", "--data", "synthetic:1", "--epochs", "1", "--out", "x", "--lr", "nan"],
            "--lr must be a finite number >= 0, got nan",
        ),
        (
            ["train", "--config", "yolact_demo", "--data", "synthetic:1:0:60000", "--epochs", "1", "--out", "x"],
            "SIZE in [16, 4096]",
        ),
        (["eval", "--weights", "demo", "--data", "synthetic:1:0:60000"], "SIZE in [16, 4096]"),
        (
            ["train", "--config", "yolact_demo", "--data", "synthetic:1", "--epochs", "1", "--out", "afile"],
            "--out must be a folder, but 'afile' is an existing file",
        ),
        (
            ["eval", "--weights", "demo", "--data", "synthetic:1", "--out", "afile"],
            "--out must be a folder, but 'afile' is an existing file",
        ),
        (["demo", "--out", "afile"], "--out must be a folder, but 'afile' is an existing file"),
    ],
)
def test_errors_are_reported(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    assert main(argv) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--dist-timeout", "0"], "timeout_s must be > 0 seconds, got 0.0"),
        (["--dist-timeout", "-5"], "timeout_s must be > 0 seconds"),
        (["--device", "cuda:1"], "--device cuda:1 under torchrun would put every process on one device"),
    ],
)
def test_train_refuses_bad_process_options(extra, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun; refused before joining a group
    argv = [
        "train",
        "--config",
        "yolact_demo",
        "--data",
        "synthetic:1",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        *extra,
    ]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_eval_reports_bad_annotation_file(tmp_path, capsys):
    (tmp_path / "a.json").write_text("{broken")
    assert main(["eval", "--weights", "demo", "--data", str(tmp_path / "a.json"), "--out", str(tmp_path)]) == 1
    assert "cannot read annotation file" in capsys.readouterr().err


def test_eval_outputs_replace_planted_links(tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    names = ("results.json", "bbox_results.json", "metrics.json")
    for name in names:
        (out / name).symlink_to(victim)
    assert main(["eval", "--weights", "demo", "--data", "synthetic:1:3:64", "--out", str(out)]) == 0
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert all(not (out / name).is_symlink() for name in names)
    json.loads((out / "metrics.json").read_text())


def test_train_skips_and_counts_oversized_images(tmp_path, capsys):
    from inputs import png_claiming_size
    from yolact_fast.configs import SHAPE_CLASSES
    from yolact_fast.data import synthetic_shapes, write_coco

    json_path = write_coco(synthetic_shapes(2, seed=4, size=(64, 64)), str(tmp_path / "data"), SHAPE_CLASSES)
    first = json.loads(open(json_path).read())["images"][0]["file_name"]
    png_claiming_size(tmp_path / "data" / "images" / first, 20000, 20000)
    assert (
        main(
            [
                "train",
                "--config",
                "yolact_demo",
                "--data",
                str(tmp_path / "data"),
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "run"),
                "--batch-size",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == {"unreadable_image": 1} and summary["steps"] == 1
