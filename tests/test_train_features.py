"""Training options in one process: mixed precision, BatchNorm freezing, a
pretrained backbone, the global batch size, progress bars."""

import json
import re
import sys
from collections import Counter

import pytest
import torch
from torch import nn

import ddp_worker
from yolact_fast import cli, reference
from yolact_fast.model import Yolact
from yolact_fast.train import TrainOptions, read_checkpoint, train
from yolact_fast.data import synthetic_shapes
from yolact_fast.train.trainer import BatchCollator, TrainingNetwork, make_batch, sanitize, training_step

TINY = ddp_worker.TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def _options(**changes):
    base = dict(epochs=1, batch_size=4, lr=5e-3, warmup_steps=2, log_every=1, augment=None)
    base.update(changes)
    return TrainOptions(**base)


@pytest.fixture(scope="module")
def data():
    return ddp_worker.dataset()[:4]


# At 64 px the FPN downsamples a 1x1 map, where bfloat16 gradients are wrong on the CPU.
TINY_128 = TINY.replace(max_size=128)


def test_amp_autocasts_the_network_in_bfloat16_on_cpu(data):
    model = Yolact(TINY_128).train()
    images, targets = make_batch(data, TINY_128)
    priors = reference.make_priors(TINY_128, (128, 128))
    seen = []
    model.proto_net.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    full = training_step(model, images, targets, priors)
    mixed = training_step(model, images, targets, priors, amp=True)
    assert seen == [torch.float32, torch.bfloat16]
    assert all(v.dtype == torch.float32 for v in mixed.values())
    for term in ("box", "conf", "mask", "semantic", "total"):
        assert float(mixed[term].detach()) == pytest.approx(float(full[term].detach()), rel=0.05), term


def test_amp_training_runs_and_keeps_float32_weights(tmp_path, data):
    summary, model = train(TINY_128, data, str(tmp_path), _options(epochs=3, amp=True), progress=False, device="cpu")
    assert summary["steps"] == 3 and all(torch.isfinite(torch.tensor(list(summary["losses"].values()))))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert "scaler" not in read_checkpoint(str(tmp_path / "last.pt"))  # no GradScaler on the CPU


def test_amp_on_cpu_refuses_a_1x1_fpn_map(tmp_path, data):
    with pytest.raises(ValueError, match="amp on the CPU needs FPN maps larger than 1x1"):
        train(TINY, data, str(tmp_path), _options(amp=True), progress=False, device="cpu")


@pytest.mark.parametrize(
    "batch_size,freeze,frozen", [(4, None, True), (6, None, False), (4, False, False), (6, True, True)]
)
def test_batchnorm_frozen_below_six_images_per_process(tmp_path, data, batch_size, freeze, frozen, capsys):
    samples = (data * 2)[:batch_size]
    _, model = train(
        TINY, samples, str(tmp_path), _options(batch_size=batch_size, freeze_bn=freeze), progress=False, device="cpu"
    )
    # the automatic freeze is announced, as the official train.py does
    assert ("Disabling batch norm" in capsys.readouterr().err) is (frozen and freeze is None)
    bn = model.backbone.bn1
    assert bn.weight.requires_grad is not frozen
    # frozen: running statistics never updated (still the initial 0 / 1)
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)) is frozen


def test_global_batch_must_split_over_the_processes(tmp_path, data, monkeypatch):
    from yolact_fast.train import trainer
    from yolact_fast.train.distributed import Processes

    monkeypatch.setattr(trainer.Processes, "current", classmethod(lambda cls: Processes(0, 3)))
    with pytest.raises(ValueError, match="global batch.*multiple of the 3 processes"):
        train(TINY, data, str(tmp_path), _options(batch_size=4), progress=False, device="cpu")


def test_train_from_a_pretrained_backbone(tmp_path, data, capsys):
    torch.manual_seed(123)
    source = Yolact(TINY)  # other weights than train()'s seed gives
    source.backbone.bn1.running_var.uniform_(0.5, 1.5)
    state = {
        re.sub(r"^layers\.(\d)\.", lambda m: f"layer{int(m.group(1)) + 1}.", k): v
        for k, v in source.backbone.state_dict().items()
    }
    state["fc.weight"] = torch.zeros(3, 64)
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    # lr 0 and frozen BatchNorm: the backbone stays what the file holds
    _, model = train(
        TINY, data, str(tmp_path / "run"), _options(lr=0.0), progress=False, device="cpu", backbone_weights=str(path)
    )
    assert not torch.equal(model.backbone.layers[3][0].conv2.weight, Yolact(TINY).backbone.layers[3][0].conv2.weight)
    assert torch.equal(model.backbone.layers[3][0].conv2.weight, state["layer4.0.conv2.weight"])
    assert torch.equal(model.backbone.bn1.running_var, state["bn1.running_var"])
    err = capsys.readouterr().err
    assert "loaded" in err and "skipped fc.weight: not in the backbone" in err


def test_nonfinite_network_outputs_skip_the_step(tmp_path, data):
    with torch.no_grad():
        model = Yolact(TINY).train()
        model.proto_net[0].weight.fill_(float("inf"))
    images, targets = make_batch(data, TINY)
    counts = []
    losses = training_step(
        model,
        images,
        targets,
        reference.make_priors(TINY, (64, 64)),
        denominators=lambda c: counts.append(c) or c.clamp(min=1),
    )
    assert set(losses) == {"total"} and torch.isnan(losses["total"])
    # the process still joins the denominators collective the others make
    assert len(counts) == 1 and torch.equal(counts[0], torch.zeros(2))


def test_a_batch_without_usable_images_is_a_skipped_step(tmp_path):
    summary, _ = train(TINY, [None] * 4, str(tmp_path), _options(), progress=False, device="cpu")
    assert summary["steps"] == 0
    assert summary["skipped"] == {"unreadable_image": 4, "no_image_step": 1}


def test_resume_with_another_batch_size_is_refused(tmp_path, data):
    train(TINY, data, str(tmp_path), _options(batch_size=2), progress=False, device="cpu")
    with pytest.raises(ValueError, match="with batch_size 4: it was trained with batch_size 2"):
        train(
            TINY,
            data,
            str(tmp_path),
            _options(batch_size=4, epochs=2),
            resume=str(tmp_path / "last.pt"),
            progress=False,
            device="cpu",
        )


def test_every_parameter_gets_a_gradient_without_ground_truth(data):
    """DistributedDataParallel waits for every parameter's gradient in every process."""
    image, target = data[0]
    empty = dict(target, boxes=target["boxes"][:0], labels=target["labels"][:0], masks=target["masks"][:0])
    model = Yolact(TINY).train()
    images, targets = make_batch([(image, empty)], TINY)
    losses = training_step(model, images, targets, reference.make_priors(TINY, (64, 64)))
    assert float(losses["mask"]) == 0
    losses["total"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_training_network_is_one_forward(data):
    model = Yolact(TINY).train()
    images, _ = make_batch(data, TINY)
    outputs, semantic = TrainingNetwork(model)(images)
    assert semantic.shape == (4, 5, 8, 8) and outputs.proto.shape[1:3] == (16, 16)
    assert isinstance(TrainingNetwork(model), nn.Module)


def test_cli_train_flags_and_quiet_progress(tmp_path, capsys, monkeypatch):
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
        "--amp",
        "--no-freeze-bn",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["world_size"] == 1
    assert "epoch 1/1" not in captured.err
    assert [r["world_size"] for r in map(json.loads, (out / "loss_log.jsonl").read_text().splitlines())] == [1]

    parsed = cli.build_parser().parse_args(args[:-1])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.show_progress(parsed) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.show_progress(parsed) is False
    assert cli.show_progress(cli.build_parser().parse_args(args)) is False


def test_devices_and_process_groups_from_the_environment(monkeypatch, tmp_path, data):
    from yolact_fast.train import distributed

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.training_device("cuda") == torch.device("cuda", 1)  # one GPU per process
    assert distributed.training_device("cuda:0") == torch.device("cuda", 0)
    assert distributed.training_device("cpu") == torch.device("cpu")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_environment("cpu") is False
    assert distributed.Processes.current() == distributed.Processes(0, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun started us, but nobody joined the group
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2 but torch.distributed is not initialised"):
        train(TINY, data, str(tmp_path), _options(), progress=False, device="cpu")


def test_loader_workers_build_the_same_batches_as_the_main_process(data):
    """Targets are prepared in the DataLoader's collate_fn (its workers): the same tensors as
    make_batch in the training process, also for a non-square original image."""
    wide = next(iter(synthetic_shapes(1, seed=9, size=(48, 80), max_objects=3, min_size=0.3)))
    samples = [data[0], None, wide, data[1]]
    kept = [sanitize(s, len(TINY.class_names), Counter()) for s in samples if s is not None]
    images, targets = make_batch(kept, TINY)
    loader = torch.utils.data.DataLoader(samples, batch_size=4, num_workers=1, collate_fn=BatchCollator(TINY))
    batch = next(iter(loader))
    assert batch.size == 3 and +batch.skipped == Counter(unreadable_image=1)
    assert torch.equal(batch.images, images)
    assert len(batch.targets) == len(targets) == 3
    for got, expected in zip(batch.targets, targets):
        assert got.keys() == expected.keys()
        for key in expected:
            assert torch.equal(got[key], expected[key]), key
    assert targets[1]["masks"].shape[-2:] == (16, 16) and targets[1]["semantic_masks"].shape[-2:] == (8, 8)
