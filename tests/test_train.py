"""A tiny training run whose loss falls; checkpoints, resume, bad input during training."""

import argparse
import json

import numpy as np
import pytest
import torch

import yolact_fast as yf
from yolact_fast import configs
from yolact_fast.data import Augment, CocoDataset, synthetic_shapes, write_coco
from yolact_fast.train import TrainOptions, read_checkpoint, train
from yolact_fast.train.trainer import learning_rate

TINY = configs.yolact_demo.replace(
    name="yolact_demo",  # a named config, so that checkpoints can name it
    backbone=configs.BackboneConfig("resnet_basic", (1, 1, 1, 1), (1, 2, 3), (8, 16, 32, 64), width=8),
    max_size=64,
    fpn_features=16,
    proto_width=16,
    mask_dim=8,
    pred_scales=((8, 11), (16, 23), (32, 45), (64, 90), (128, 181)),
)


class Fixed(torch.utils.data.Dataset):
    """A fixed list of samples (None = unreadable image)."""

    class_names = configs.SHAPE_CLASSES

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


pytestmark = pytest.mark.usefixtures("one_thread")


def _options(**changes):
    base = dict(epochs=1, batch_size=4, lr=5e-3, warmup_steps=2, log_every=1, augment=None, checkpoint_every=10_000)
    base.update(changes)
    return TrainOptions(**base)


@pytest.fixture(scope="module")
def tiny_data():
    return list(synthetic_shapes(4, seed=5, size=(64, 64), max_objects=2, min_size=0.3))


def _log(out):
    return [json.loads(line) for line in open(out / "loss_log.jsonl")]


def test_tiny_training_loss_falls(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    summary, model = train(TINY, Fixed(tiny_data), str(tmp_path), _options(epochs=40), progress=False)
    log = _log(tmp_path)
    assert summary["steps"] == 40 and len(log) == 40
    first = np.mean([r["total"] for r in log[:5]])
    last = np.mean([r["total"] for r in log[-5:]])
    assert last < 0.7 * first, (first, last)
    for term in ("box", "conf", "mask"):
        assert np.mean([r[term] for r in log[-5:]]) < np.mean([r[term] for r in log[:5]]), term
    assert not model.training
    # the saved weights load through yf.load with their config and classes
    loaded = yf.load(summary["weights"])
    assert loaded.config.class_names == configs.SHAPE_CLASSES
    for (k, v), v2 in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(v, v2), k


def test_resume_continues_and_corrupt_checkpoint_is_refused(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    data = Fixed(tiny_data)
    train(TINY, data, str(tmp_path), _options(epochs=1), progress=False)
    state = read_checkpoint(str(tmp_path / "last.pt"))
    assert state["epoch"] == 1 and state["step"] == 1
    summary, _ = train(TINY, data, str(tmp_path), _options(epochs=3), resume=str(tmp_path / "last.pt"), progress=False)
    assert summary["steps"] == 3 and read_checkpoint(str(tmp_path / "last.pt"))["epoch"] == 3

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(open(tmp_path / "last.pt", "rb").read()[:1000])
    with pytest.raises(RuntimeError, match="refusing to resume.*not a torch checkpoint"):
        train(TINY, data, str(tmp_path), _options(), resume=str(corrupt), progress=False)
    pickled_code = tmp_path / "namespace.pt"
    torch.save({"a": argparse.Namespace()}, pickled_code)
    with pytest.raises(RuntimeError, match="refusing to resume.*not a torch checkpoint") as refused:
        train(TINY, data, str(tmp_path), _options(), resume=str(pickled_code), progress=False)
    assert "weights_only" not in str(refused.value)
    lying = dict(state, state_dict=dict(state["state_dict"]))
    key = next(iter(lying["state_dict"]))
    lying["state_dict"][key] = torch.zeros(1).expand(1000, 1000)
    torch.save(lying, tmp_path / "lying.pt")
    with pytest.raises(ValueError, match="claims shape"):
        read_checkpoint(str(tmp_path / "lying.pt"))
    diverged = dict(state, state_dict=dict(state["state_dict"]))
    key = next(k for k, v in diverged["state_dict"].items() if v.is_floating_point())
    diverged["state_dict"][key] = torch.full_like(diverged["state_dict"][key], float("nan"))
    torch.save(diverged, tmp_path / "diverged.pt")
    with pytest.raises(ValueError, match=f"refusing to resume.*{key} holds NaN"):
        train(TINY, data, str(tmp_path), _options(), resume=str(tmp_path / "diverged.pt"), progress=False)
    weights_only = tmp_path / "model.pt"
    with pytest.raises(RuntimeError, match="not a yolact_fast training checkpoint"):
        train(TINY, data, str(tmp_path), _options(), resume=str(weights_only), progress=False)
    with pytest.raises(FileNotFoundError):
        train(TINY, data, str(tmp_path), _options(), resume=str(tmp_path / "nope.pt"), progress=False)


def test_bad_images_and_annotations_do_not_stop_training(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    root = tmp_path / "data"
    json_path = write_coco(tiny_data, str(root), configs.SHAPE_CLASSES)
    data = json.load(open(json_path))
    (root / "images" / data["images"][0]["file_name"]).write_bytes(b"corrupt")  # undecodable
    data["images"].append({"id": 99, "file_name": "gone.png", "height": 64, "width": 64})
    extra = dict(data["annotations"][0], id=1000, bbox=[3, 3, 0, 0])  # zero-area box
    data["annotations"] += [extra, dict(data["annotations"][0], id=1001, category_id=42)]
    image = next(i for i in data["images"] if i["id"] == data["annotations"][1]["image_id"])
    no_pixel = {"size": [image["height"], image["width"]], "counts": [image["height"] * image["width"]]}
    empty = dict(data["annotations"][1], id=1002, segmentation=no_pixel)  # empty mask
    data["annotations"].append(empty)
    json.dump(data, open(json_path, "w"))
    with pytest.warns(UserWarning, match="skipped"):
        dataset = CocoDataset(str(root / "images"), json_path)
    assert dict(dataset.skipped) == {"missing_image": 1, "zero_area_box": 1, "unknown_category": 1, "empty_mask": 1}
    summary, _ = train(TINY, dataset, str(tmp_path / "out"), _options(epochs=2, batch_size=2), progress=False)
    assert summary["skipped"]["unreadable_image"] == 2 and summary["steps"] == 4


def test_training_with_augmentation_and_empty_images(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    empty_target = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, 80, 48, dtype=torch.bool),
    }
    samples = tiny_data[:3] + [(torch.zeros(3, 80, 48, dtype=torch.uint8), empty_target)]
    summary, _ = train(
        TINY, Fixed(samples), str(tmp_path), _options(epochs=2, augment=yf.data.Augment()), progress=False
    )
    assert summary["steps"] == 2 and all(np.isfinite(list(summary["losses"].values())))


def test_learning_rate_schedule():
    options = TrainOptions(lr=1.0, warmup_steps=10)
    assert learning_rate(0, 100, options) == pytest.approx(0.1)
    assert learning_rate(10, 100, options) == pytest.approx(1.0)
    assert learning_rate(100, 100, options) == pytest.approx(0.0)


def test_empty_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        train(TINY, Fixed([]), str(tmp_path), _options(), progress=False)


def test_init_weights_starts_from_an_earlier_model(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    data = Fixed(tiny_data)
    first, model = train(TINY, data, str(tmp_path / "a"), _options(), progress=False)
    # lr 0: parameters stay those of the earlier model
    _, again = train(TINY, data, str(tmp_path / "b"), _options(lr=0.0), progress=False, init_weights=first["weights"])
    for (name, p), p2 in zip(model.named_parameters(), again.parameters()):
        assert torch.equal(p, p2), name
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"junk")
        train(TINY, data, str(tmp_path / "c"), _options(), progress=False, init_weights=str(bad))


def test_invalid_instances_and_samples_are_skipped_and_counted(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    image, target = tiny_data[0]
    n = len(target["labels"])
    bad_labels = dict(target, labels=torch.full((n,), 9))  # 5 classes: 9 is out of range
    zero_box = dict(target, boxes=torch.zeros(n, 4))
    empty = dict(target, masks=torch.zeros_like(target["masks"]))
    malformed = dict(target, masks=target["masks"][:, :10])  # masks do not match the image
    samples = [
        (image, bad_labels),
        (image, zero_box),
        (image, empty),
        (image, malformed),
        tiny_data[1],
        (image, target, 1),
        (image, [target]),
        (image.float(), target),
        (image[:, :0], dict(target, masks=target["masks"][:, :0])),
        "junk",
        ValueError("bad file"),
        OSError("gone"),
    ]
    summary, _ = train(
        TINY, Raising(samples), str(tmp_path), _options(batch_size=12, augment=Augment()), progress=False
    )
    assert summary["steps"] == 1
    assert summary["skipped"] == {
        "label_out_of_range": n,
        "zero_area_box": n,
        "empty_mask": n,
        "bad_sample": 6,
        "unreadable_image": 2,
    }


class Raising(Fixed):
    """Samples, where an exception in the list is raised by ``__getitem__``."""

    def __getitem__(self, i):
        if isinstance(self.samples[i], Exception):
            raise self.samples[i]
        return self.samples[i]


def test_oversized_image_files_are_skipped_and_counted(tmp_path, tiny_data, monkeypatch):
    from inputs import png_claiming_size

    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    root = tmp_path / "data"
    json_path = write_coco(tiny_data, str(root), configs.SHAPE_CLASSES)
    names = [image["file_name"] for image in json.load(open(json_path))["images"]]
    png_claiming_size(root / "images" / names[0], 20000, 20000)  # above PIL's own error limit
    png_claiming_size(root / "images" / names[1], 9000, 9000)  # below it, above MAX_IMAGE_PIXELS
    dataset = CocoDataset(str(root / "images"), json_path)
    assert dataset.load(0) is None and dataset.load(1) is None
    summary, _ = train(TINY, dataset, str(tmp_path / "out"), _options(batch_size=4), progress=False)
    assert summary["skipped"] == {"unreadable_image": 2} and summary["steps"] == 1


@pytest.mark.parametrize(
    "field,value,error",
    [
        ("batch_size", 0, ValueError),
        ("epochs", 0, ValueError),
        ("lr", float("nan"), ValueError),
        ("num_workers", -1, ValueError),
        ("checkpoint_every", 0, ValueError),
        ("batch_size", 2.5, TypeError),
    ],
)
def test_bad_train_options_are_refused(field, value, error):
    with pytest.raises(error, match=f"TrainOptions.{field} must be"):
        TrainOptions(**{field: value})


def test_checkpoint_writes_replace_planted_links_and_keep_the_old_file_on_failure(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(configs, "NAMED_CONFIGS", dict(configs.NAMED_CONFIGS, yolact_demo=TINY))
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    for name in ("model.pt", "last.pt", "summary.json"):
        (out / name).symlink_to(victim)
    train(TINY, Fixed(tiny_data), str(out), _options(), progress=False)
    assert victim.read_text() == "keep me"
    assert not any((out / name).is_symlink() for name in ("model.pt", "last.pt", "summary.json"))
    yf.load(str(out / "model.pt"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    (out / "loss_log.jsonl").unlink()
    (out / "loss_log.jsonl").symlink_to(victim)  # a log is appended to, never through a link
    with pytest.raises(OSError, match="cannot append to .*loss_log.jsonl' \\(it is a symbolic link"):
        train(TINY, Fixed(tiny_data), str(out), _options(), progress=False)
    assert victim.read_text() == "keep me"


SIZE_LIMITED_SAVE = """
import resource, signal, sys, torch
sys.path.insert(0, {root!r})
from yolact_fast.model import Yolact
from yolact_fast.model.checkpoint import save_weights
from yolact_fast import configs
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
save_weights(Yolact(configs.yolact_demo), sys.argv[1])
"""


def test_a_failed_checkpoint_write_names_the_path_and_keeps_the_previous_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "model.pt"
    path.write_bytes(b"previous good file")
    script = SIZE_LIMITED_SAVE.format(root=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"cannot write checkpoint {str(path)!r}" in result.stderr and "File too large" in result.stderr
    assert path.read_bytes() == b"previous good file"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
