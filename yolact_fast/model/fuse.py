"""An inference copy of a :class:`Yolact`: BatchNorm folded into the convolutions, the three
head convolutions merged into one, channels_last weights.

The copy computes the same function up to float rounding (differences ~1e-5 relative);
``Yolact`` itself keeps the official, unfused structure so checkpoints load strictly.
"""

from __future__ import annotations

import copy
from typing import Tuple

import torch
from torch import nn

from .heads import PredictionHead, _flatten_anchors
from .yolact import Yolact


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv equal to ``bn(conv(x))`` in eval mode (folded in float64, stored in conv's dtype)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean.double()) * scale + bn.bias.double())
    return fused


def _conv_partner(module: nn.Module, bn_name: str):
    """Name of the conv feeding BatchNorm ``bn_name`` in ``module``: bnN -> convN; in a
    Sequential, the previous entry."""
    if bn_name.startswith("bn"):
        return "conv" + bn_name[2:]
    if bn_name.isdigit() and int(bn_name) > 0:
        return str(int(bn_name) - 1)
    return None


def fold_all_batchnorms(root: nn.Module) -> int:
    """Fold every BatchNorm2d of ``root`` into its conv in place (BN -> Identity); returns the
    number folded. Raises if a BatchNorm has no conv partner."""
    folded = 0
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, nn.BatchNorm2d):
                continue
            conv_name = _conv_partner(module, name)
            conv = getattr(module, conv_name, None) if conv_name else None
            if not isinstance(conv, nn.Conv2d):
                raise RuntimeError(f"BatchNorm {name!r} in {type(module).__name__} follows no conv")
            setattr(module, conv_name, fold_batchnorm(conv, child))
            setattr(module, name, nn.Identity())
            folded += 1
    return folded


class MergedPredictionHead(nn.Module):
    """:class:`PredictionHead` with bbox, conf and mask convs as one conv (one larger GEMM)."""

    def __init__(self, head: PredictionHead):
        super().__init__()
        self.upfeature = head.upfeature
        self.num_classes = head.num_classes
        self.mask_dim = head.mask_dim
        layers = (head.bbox_layer, head.conf_layer, head.mask_layer)
        self.splits = tuple(layer.out_channels for layer in layers)
        first = layers[0]
        self.merged = nn.Conv2d(
            first.in_channels, sum(self.splits), first.kernel_size, padding=first.padding,
            device=first.weight.device, dtype=first.weight.dtype,
        )
        with torch.no_grad():
            self.merged.weight.copy_(torch.cat([layer.weight for layer in layers]))
            self.merged.bias.copy_(torch.cat([layer.bias for layer in layers]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.merged(self.upfeature(x))
        loc, conf, coeffs = out.split(self.splits, dim=1)
        return (
            _flatten_anchors(loc, 4),
            _flatten_anchors(conf, self.num_classes),
            torch.tanh(_flatten_anchors(coeffs, self.mask_dim)),
        )


def inference_copy(model: Yolact, channels_last: bool = True) -> Yolact:
    """A fused eval-mode copy of ``model`` for inference (see module docstring)."""
    cache = model.__dict__.pop("_inference_cache", None)  # never copy an older fused copy
    try:
        fused = copy.deepcopy(model).eval()
    finally:
        if cache is not None:
            model.__dict__["_inference_cache"] = cache
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    fold_all_batchnorms(fused.backbone)
    fused.prediction_layers[0] = MergedPredictionHead(fused.prediction_layers[0])
    del fused.semantic_seg_conv  # training only
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    return fused


def state_key(model: nn.Module) -> tuple:
    """Changes when any parameter or buffer is replaced, moved or modified in place."""
    return tuple(
        (t.data_ptr(), t._version, t.dtype, t.device)
        for t in list(model.parameters()) + list(model.buffers())
    )
