"""Modulated deformable convolution (DCNv2) with the official YOLACT++ parameters, computed by
``torchvision.ops.deform_conv2d`` (no compiled DCNv2 extension needed, CPU and CUDA)."""

from __future__ import annotations

import math

import torch
from torch import nn


def _deform_conv2d():
    try:
        from torchvision.ops import deform_conv2d
    except ImportError as error:
        raise ImportError(
            "YOLACT++ models (deformable convolutions) need torchvision: pip install torchvision (or yolact_fast[plus])"
        ) from error
    return deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 with the official ``dcn_v2.DCN`` keys: ``weight`` [out,in,k,k], ``bias`` [out] and
    ``conv_offset_mask`` (a k x k conv to 3*k*k channels).

    ``conv_offset_mask(x)`` is split in three along channels: ``offset = cat(o1, o2)`` (the
    ``2*k*k`` sampling offsets, in torchvision's layout) and ``mask = sigmoid(o3)``.
    [B,in,H,W] -> [B,out,H',W'] with H', W' those of a plain conv with the same geometry.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride, self.padding, self.dilation = (stride, stride), (padding, padding), (dilation, dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset_mask = nn.Conv2d(
            in_channels, 3 * kernel_size * kernel_size, kernel_size, stride, padding, dilation, bias=True
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation: weights as a plain conv, zero bias, and zero offsets with
        mask 0.5 (the offset/mask conv starts at zero)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def offset_and_mask(self, x: torch.Tensor):
        """x [B,in,H,W] -> (offset [B,2*k*k,H',W'], mask [B,k*k,H',W'] in (0,1))."""
        o1, o2, logits = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offset_and_mask(x)
        if x.dtype == torch.bfloat16 or (x.dtype == torch.float16 and x.device.type == "cpu"):
            # torchvision's deform_conv2d has no kernel for these: run it in float32.
            tensors = (x, offset, self.weight, self.bias, mask)
            x, offset, weight, bias, mask = (t if t is None else t.float() for t in tensors)
            out = _deform_conv2d()(x, offset, weight, bias, self.stride, self.padding, self.dilation, mask=mask)
            return out.to(tensors[0].dtype)
        return _deform_conv2d()(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask=mask)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
