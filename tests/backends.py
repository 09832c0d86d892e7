"""The backends the op tests run on, each a namespace with the functions of yf.ops:
"cpu" (the CPU kernels), "emulated_cuda" (the CUDA launchers and kernels under the host
emulation, on CPU tensors) and, when a GPU and a CUDA build are present, "cuda" (inputs
moved to the GPU, outputs back)."""

import functools
import types

import torch

from yolact_fast import ops
from yolact_fast.testing import emulated_cuda

OPS = ("make_priors", "decode_boxes", "fast_nms", "cluster_nms", "assemble_masks", "paste_masks")


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value


def _on_cuda(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        args = [_to(a, "cuda") for a in args]
        kwargs = {k: _to(v, "cuda") for k, v in kwargs.items()}
        return _to(fn(*args, **kwargs), "cpu")

    return call


def _cuda_backend():
    namespace = types.SimpleNamespace(**{name: _on_cuda(getattr(ops, name)) for name in OPS})
    namespace.make_priors = lambda config, size: ops.make_priors(config, size, device="cuda").cpu()
    return namespace


def names():
    found = ["cpu", "emulated_cuda"]
    if torch.cuda.is_available() and ops.cuda_kernels_available():
        found.append("cuda")
    return found


def get(name):
    """The namespace of backend ``name``, with ``name`` and ``exact_exp`` (whether its exp is
    ATen's CPU exp, so that decode is bit-exact with the reference) added."""
    if name == "cpu":
        namespace = types.SimpleNamespace(**{op: getattr(ops, op) for op in OPS})
    elif name == "emulated_cuda":
        namespace = types.SimpleNamespace(**{op: getattr(emulated_cuda, op) for op in OPS})
    else:
        namespace = _cuda_backend()
    namespace.name = name
    namespace.exact_exp = name == "cpu"
    return namespace
