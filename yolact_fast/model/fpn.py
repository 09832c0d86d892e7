"""Feature pyramid (official YOLACT layout: ``fpn.lat_layers.0`` is the deepest level)."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """C3..C5 -> P3..P7.

    Lateral 1x1 convs and 3x3 prediction convs (+ReLU) are stored in reversed order (index 0 =
    C5/P5), as in the official checkpoints. The top-down path upsamples bilinearly to the exact
    size of the next level. P6/P7 are stride-2 3x3 convs chained from the ReLU'd P5, without ReLU.
    """

    def __init__(self, in_channels: Sequence[int], num_features: int = 256, num_downsample: int = 2):
        super().__init__()
        self.lat_layers = nn.ModuleList([nn.Conv2d(c, num_features, kernel_size=1) for c in reversed(in_channels)])
        self.pred_layers = nn.ModuleList(
            [nn.Conv2d(num_features, num_features, kernel_size=3, padding=1) for _ in in_channels]
        )
        self.downsample_layers = nn.ModuleList(
            [nn.Conv2d(num_features, num_features, kernel_size=3, padding=1, stride=2) for _ in range(num_downsample)]
        )

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """[C3, C4, C5] ([B,C_i,H_i,W_i]) -> [P3, .., P7] ([B,F,h_l,w_l])."""
        num_inputs = len(features)
        outs: List[torch.Tensor] = [None] * num_inputs
        x = None
        for lat_layer, j in zip(self.lat_layers, reversed(range(num_inputs))):
            lateral = lat_layer(features[j])
            if x is None:
                x = lateral
            else:
                x = F.interpolate(x, size=features[j].shape[-2:], mode="bilinear", align_corners=False)
                x = x + lateral
            outs[j] = x
        for pred_layer, j in zip(self.pred_layers, reversed(range(num_inputs))):
            outs[j] = F.relu(pred_layer(outs[j]), inplace=True)
        for downsample_layer in self.downsample_layers:
            outs.append(downsample_layer(outs[-1]))
        return outs
