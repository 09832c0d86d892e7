"""tests/gpu_exercise.py's sweep (every CUDA op against the CPU kernel) as tests: on a
machine with a GPU and a CUDA build only."""

import pytest
import torch

import gpu_exercise

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("cases", gpu_exercise.CASES, ids=lambda cases: cases.__name__)
def test_cuda_ops_equal_the_cpu_kernels(cases):
    gpu_exercise.FAILURES.clear()
    cases(quick=False)
    torch.cuda.synchronize()
    assert not gpu_exercise.FAILURES, "\n".join(gpu_exercise.FAILURES)
