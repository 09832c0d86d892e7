"""The extensions as built: every op has its CPU kernel, and the CUDA kernels when the
build included them (CI builds with FORCE_CUDA=1 and sets YOLACT_FAST_EXPECT_CUDA=1)."""

import os

import pytest
import torch

from yolact_fast import _C, ops

OPS = ["make_priors", "decode_boxes", "fast_nms", "assemble_masks", "paste_masks"]


def registrations(name):
    return torch._C._dispatch_dump(f"yolact_fast::{name}")


@pytest.mark.parametrize("name", OPS)
def test_cpu_kernel_registered(name):
    assert "\nCPU: registered" in registrations(name)


@pytest.mark.parametrize("name", OPS)
def test_cuda_kernel_registered_when_built(name):
    if os.environ.get("YOLACT_FAST_EXPECT_CUDA") == "1":
        assert _C.built_with_cuda(), "expected a CUDA build (FORCE_CUDA=1)"
    assert ("\nCUDA: registered" in registrations(name)) == _C.built_with_cuda()
    assert ops.cuda_kernels_available() == _C.built_with_cuda()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_kernels_match_cpu():
    from inputs import gen
    from inputs import random_boxes, random_coeffs, random_proto, random_scores

    g = gen(0)
    boxes, scores, coeffs = random_boxes(2000, g), random_scores(20, 2000, g), random_coeffs(2000, 32, g)
    cpu = ops.fast_nms(boxes, scores, coeffs)
    gpu = ops.fast_nms(boxes.cuda(), scores.cuda(), coeffs.cuda())
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())
    proto = random_proto(138, 138, 32, g)
    masks_cpu = ops.paste_masks(proto, cpu[1], cpu[0], (480, 640))
    masks_gpu = ops.paste_masks(proto.cuda(), cpu[1].cuda(), cpu[0].cuda(), (480, 640))
    assert (masks_cpu != masks_gpu.cpu()).float().mean() < 1e-4


def test_gpu_session_script_parses_and_refuses_unknown_stages(tmp_path):
    """scripts/gpu_session.sh runs only where a GPU is present, so its syntax and its refusal
    of a misspelt stage (rather than skipping it silently) are checked here."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    result = subprocess.run(
        ["bash", str(script), "no_such_stage"], capture_output=True, text=True, env={**os.environ, "OUT": str(tmp_path)}
    )
    assert result.returncode == 2 and "unknown stage no_such_stage" in result.stdout
    bare = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env={**os.environ, "OUT": str(tmp_path)}
    )
    assert bare.returncode == 2 and "usage:" in bare.stdout  # no stage named: nothing runs silently


def test_emulation_is_a_module_of_its_own():
    """The shipped _C holds the ops only; the emulated CUDA kernels and the planted-bug
    self-test kernels are in yolact_fast._emulation (for yolact_fast.testing and tests)."""
    from yolact_fast import _emulation

    assert not {"emulated_cuda", "emulation", "selftest"} & set(dir(_C))
    assert {"emulated_cuda", "selftest", "options", "begin_recording"} <= set(dir(_emulation))
