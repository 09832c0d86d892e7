"""Training in 2 processes (torchrun, gloo, CPU) equals training in one with the same global
batch; rank 0 writes; a checkpoint resumes under another world size; a stalled rank ends the
run with an error, not a hang; a rank with bad data makes every rank skip the step."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ddp_worker
from yolact_fast.train import read_checkpoint, train

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def torchrun(*args, timeout=240):
    """``torchrun --standalone --nproc-per-node=2 ARGS`` from the repository root."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    started = time.time()
    result = torchrun(str(Path(__file__).with_name("ddp_worker.py")), str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, time.time() - started


def _single_process(out, resume=None):
    weights = []
    summary, _ = train(
        ddp_worker.TINY,
        ddp_worker.dataset(),
        str(out),
        ddp_worker.OPTIONS,
        resume=resume,
        progress=False,
        device="cpu",
        on_step=ddp_worker.recorder(weights, str(out), 0),
    )
    return summary, weights


def _log(out):
    return [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]


def _assert_close(a, b, **tolerance):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), **tolerance), key


def test_two_processes_train_as_one_with_the_global_batch(two_process_run, tmp_path):
    out, _ = two_process_run
    rank0 = torch.load(out / "weights_rank0.pt", weights_only=True)
    rank1 = torch.load(out / "weights_rank1.pt", weights_only=True)
    assert len(rank0) == len(rank1) == 4
    for step, (a, b) in enumerate(zip(rank0, rank1), 1):
        for key in a:
            assert torch.equal(a[key], b[key]), (step, key)

    _, single = _single_process(tmp_path)
    assert len(single) == 4
    # Adam divides by the gradient's size: float noise in tiny gradients moves a weight by
    # up to ~1e-3 of the learning rate (5e-3)
    for step, (a, b) in enumerate(zip(single, rank0), 1):
        _assert_close(a, b, rtol=1e-4, atol=2e-5)
    # the logged loss (the mean over processes) is the loss of the global batch
    for one, two in zip(_log(tmp_path), _log(out)):
        for term in ("box", "conf", "mask", "semantic", "total"):
            assert one[term] == pytest.approx(two[term], rel=1e-5), (one["step"], term)
    moved = max((single[-1][k].float() - single[0][k].float()).abs().max() for k in single[0])
    assert moved > 1e-3  # the weights did change: the comparison is not vacuous


def test_rank_zero_writes_checkpoints_and_logs_with_the_world_size(two_process_run):
    out, _ = two_process_run
    log = _log(out)
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # one writer
    assert all(r["world_size"] == 2 for r in log)
    state = read_checkpoint(str(out / "last.pt"))
    assert state["world_size"] == 2 and state["epoch"] == 2 and state["step"] == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4


def test_no_rank_returns_before_rank_zero_wrote_its_files(two_process_run):
    out, _ = two_process_run
    assert json.loads((out / "rank1.json").read_text())["model_pt_visible"]


def test_a_rank_with_nonfinite_outputs_or_no_image_makes_every_rank_skip_the_step(tmp_path):
    result = torchrun(str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path), "bad_rank", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text())["summary"] for r in (0, 1)]
    for summary in ranks:  # steps 1 (NaN on rank 1) and 3 (no image on rank 1) skipped, counted once
        assert summary["steps"] == 1
        assert summary["skipped"] == {"nonfinite_loss_step": 1, "no_image_step": 1, "unreadable_image": 2}
    rank0, rank1 = (torch.load(tmp_path / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(rank0) == len(rank1) == 1
    for key in rank0[0]:
        assert torch.equal(rank0[0][key], rank1[0][key]), key
    assert [r["step"] for r in _log(tmp_path)] == [1]


def test_resume_mid_epoch_under_another_world_size(two_process_run, tmp_path):
    out, _ = two_process_run
    state = read_checkpoint(str(out / "step3.pt"))
    assert state["world_size"] == 2 and state["epoch"] == 1 and state["samples_in_epoch"] == 4
    summary, weights = _single_process(tmp_path, resume=str(out / "step3.pt"))
    assert summary["steps"] == 4 and len(weights) == 1  # only step 4 is left
    final_two = torch.load(out / "weights_rank0.pt", weights_only=True)[-1]
    _assert_close(weights[0], final_two, rtol=1e-4, atol=1e-6)
    assert read_checkpoint(str(tmp_path / "last.pt"))["world_size"] == 1


def test_a_stalled_rank_ends_the_run_with_a_timeout(tmp_path):
    started = time.time()
    result = torchrun(str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path), "stall", timeout=120)
    assert result.returncode != 0
    assert time.time() - started < 100
    assert "timed out" in (result.stdout + result.stderr).lower()


def test_torchrun_cli(tmp_path):
    out = tmp_path / "run"
    result = torchrun(
        "-m",
        "yolact_fast",
        "train",
        "--config",
        "yolact_demo",
        "--data",
        "synthetic:4:0:64",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-augment",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # printed once, by rank 0
    assert summary["world_size"] == 2 and summary["steps"] == 1
    assert read_checkpoint(str(out / "last.pt"))["world_size"] == 2
    assert "\r" not in result.stderr  # no progress bar with --quiet
