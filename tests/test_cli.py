"""The yolact-fast command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import yolact_fast as yf
from yolact_fast.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, rule_model):
    path = tmp_path_factory.mktemp("weights") / "yolact_resnet50_54_800000.pth"
    torch.save(rule_model("yolact_resnet50", 1).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for seed, (h, w) in enumerate([(120, 160), (97, 131)]):
        path = folder / f"img{seed}.png"
        Image.fromarray(np.ascontiguousarray(yf.io.make_image(seed, h, w)[..., ::-1])).save(path)
        paths.append(path)
    return paths


def test_segment_writes_overlays_and_coco_json(checkpoint, images, tmp_path, rule_model):
    out = tmp_path / "out"
    code = main(["segment", *map(str, images), "--weights", str(checkpoint), "--out", str(out),
                 "--score-threshold", "0.2"])
    assert code == 0
    for path in images:
        overlay = Image.open(out / (path.stem + ".png"))
        assert overlay.size == Image.open(path).size
    results = json.loads((out / "results.json").read_text())
    assert [im["file_name"] for im in results["images"]] == list(map(str, images))
    annotations = results["annotations"]
    expected = yf.segment(str(images[1]), model=rule_model("yolact_resnet50", 1), score_threshold=0.2)
    mine = [a for a in annotations if a["image_id"] == 1]
    assert len(mine) == len(expected) > 0
    assert all(a["score"] > 0.2 for a in annotations)
    assert [a["score"] for a in mine] == pytest.approx(expected.scores.tolist())


def test_segment_errors_are_reported(images, tmp_path, capsys):
    assert main(["segment", str(images[0]), "--weights", str(tmp_path / "nope.pth"), "--out", str(tmp_path)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["segment", "missing.png", "--weights", "x.pth", "--out", str(tmp_path)]) == 1
    assert "image file not found" in capsys.readouterr().err


def test_segment_unknown_config(checkpoint, images, tmp_path, capsys):
    assert main(["segment", str(images[0]), "--weights", str(checkpoint), "--config", "nope",
                 "--out", str(tmp_path)]) == 1
    assert "unknown config 'nope'" in capsys.readouterr().err


def test_missing_arguments_exit_with_usage():
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "a.png"])
    assert exit_info.value.code == 2


def test_demo_uses_random_weights_and_writes_overlay(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--random-weights", "yolact_resnet50"]) == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "not a trained model" in printed
    overlay = Image.open(tmp_path / "demo_random_weights.png")
    assert overlay.size == (640, 480)
    original = np.asarray(Image.open(tmp_path / "demo_input.png"))
    assert (np.asarray(overlay) != original).any()


def test_demo_segments_a_synthetic_image_with_the_trained_model(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "yolact_demo" in printed and "demo.png" in printed
    overlay = np.asarray(Image.open(tmp_path / "demo.png"))
    original = np.asarray(Image.open(tmp_path / "demo_input.png"))
    assert overlay.shape == original.shape == (256, 256, 3)
    assert (overlay != original).any()  # something was found and drawn


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "yolact_fast", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "segment" in result.stdout and "demo" in result.stdout
