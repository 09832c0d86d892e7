"""Autograd for assemble_masks, so the fused kernel can be used in training.

out = crop(sigmoid(proto @ coeffs.T)), so d out / d logits = out * (1 - out) inside the
crop and 0 outside, where out is 0: the saved output alone gives the local gradient.
Boxes get no gradient (the crop is piecewise constant in them).
"""

import torch

from .. import _C  # noqa: F401  (defines the op schemas)


def _setup_context(ctx, inputs, output):
    proto, coeffs, _boxes, _padding = inputs
    ctx.save_for_backward(proto, coeffs, output)


def _backward(ctx, grad_output):
    proto, coeffs, output = ctx.saved_tensors
    grad_logits = grad_output * output * (1 - output)  # [N, H, W]
    grad_proto = grad_coeffs = None
    if ctx.needs_input_grad[0]:
        grad_proto = torch.einsum("nhw,nk->hwk", grad_logits, coeffs)
    if ctx.needs_input_grad[1]:
        grad_coeffs = torch.einsum("nhw,hwk->nk", grad_logits, proto)
    return grad_proto, grad_coeffs, None, None


torch.library.register_autograd("yolact_fast::assemble_masks", _backward, setup_context=_setup_context)
