"""Protonet and the shared prediction head."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


class Interpolate(nn.Module):
    """Bilinear resize by ``scale_factor`` (official ``InterpolateModule``; no parameters)."""

    def __init__(self, scale_factor: float = 2.0):
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)


class ProtoNet(nn.Sequential):
    """P3 [B,256,h,w] -> prototypes [B,k,2h,2w] (before the final ReLU).

    Indices match the official ``proto_net.{0,2,4,8,10}`` keys.
    """

    def __init__(self, in_channels: int = 256, mask_dim: int = 32, width: int = 256):
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            Interpolate(2.0),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, mask_dim, 1),
        )


class PredictionHead(nn.Module):
    """Shared head for all FPN levels: 3x3 conv + ReLU, then box, class and coefficient convs.

    Channel layout of every output conv is ``anchor * C + c`` (official).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, mask_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.mask_dim = mask_dim
        self.upfeature = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.mask_layer = nn.Conv2d(in_channels, num_anchors * mask_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B,F,h,w] -> loc [B,h*w*A,4], conf logits [B,h*w*A,C], tanh coefficients [B,h*w*A,k]."""
        x = self.upfeature(x)
        loc = _flatten_anchors(self.bbox_layer(x), 4)
        conf = _flatten_anchors(self.conf_layer(x), self.num_classes)
        coeffs = torch.tanh(_flatten_anchors(self.mask_layer(x), self.mask_dim))
        return loc, conf, coeffs


def _flatten_anchors(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[B, A*C, h, w] -> [B, h*w*A, C] (row, column, anchor order)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, channels)


class MaskIoUNet(nn.Module):
    """YOLACT++ mask re-scoring: masks [n,1,h,w] (cropped, at proto resolution) -> predicted
    mask IoU per class [n,num_classes] (background excluded).

    3x3 stride-2 convs without padding + ReLU (``channels``), a 1x1 conv to ``num_classes`` +
    ReLU, then a global max pool (official ``FastMaskIoUNet``; keys ``maskiou_net.N``).
    """

    def __init__(self, channels: Tuple[int, ...], num_classes: int):
        super().__init__()
        layers, in_channels = [], 1
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2), nn.ReLU(inplace=True)]
            in_channels = out_channels
        layers += [nn.Conv2d(in_channels, num_classes, 1), nn.ReLU(inplace=True)]
        self.maskiou_net = nn.Sequential(*layers)
        self.min_size = 1
        for _ in channels:
            self.min_size = 2 * self.min_size + 1

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        if masks.ndim != 4 or masks.shape[1] != 1 or min(masks.shape[-2:]) < self.min_size:
            raise ValueError(f"masks must be [n,1,h,w] with h, w >= {self.min_size}, got {tuple(masks.shape)}")
        return self.maskiou_net(masks).amax(dim=(2, 3))
