"""Testing aids: :mod:`yolact_fast.testing.emulated_cuda` runs the CUDA implementations of
the ops on CPU tensors under a host emulation of CUDA blocks."""

from . import emulated_cuda  # noqa: F401
