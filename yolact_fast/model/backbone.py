"""Backbones with the official YOLACT module names (``backbone.*`` state-dict keys).

Both return every stage's output; the FPN picks ``config.backbone.selected_layers``.
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch
from torch import nn

from ..configs import BackboneConfig
from .deform import ModulatedDeformConv2d


class Bottleneck(nn.Module):
    """ResNet bottleneck with the stride on the 3x3 conv (as the official YOLACT); with
    ``deformable``, the 3x3 conv is a modulated deformable conv (YOLACT++)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module = None, deformable: bool = False
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        if deformable:
            self.conv2 = ModulatedDeformConv2d(planes, planes, kernel_size=3, stride=stride, padding=1)
        else:
            self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += residual
        return self.relu(out)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convs (stride on the first), identity or projected residual."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module = None, deformable: bool = False
    ):
        super().__init__()
        if deformable:
            raise ValueError("deformable convs need Bottleneck blocks (backbone kind 'resnet')")
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class ResNetBackbone(nn.Module):
    """ResNet stem + 4 stages; ``forward`` returns the 4 stage outputs (strides 4..32).

    ``block``: :class:`Bottleneck` (official) or :class:`BasicBlock`; ``width``: stem channels;
    ``uses_dcn(stage, block)``: whether that block's 3x3 conv is deformable.
    """

    def __init__(
        self,
        layers: Tuple[int, ...],
        block: type = Bottleneck,
        width: int = 64,
        uses_dcn: Callable[[int, int], bool] = lambda stage, block: False,
    ):
        super().__init__()
        # Registered first so that the state-dict order matches the official one.
        self.layers = nn.ModuleList()
        self.channels: List[int] = []
        self.block = block
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for index, num_blocks in enumerate(layers):
            deformable = [uses_dcn(index, i) for i in range(num_blocks)]
            self._make_layer(width * 2**index, num_blocks, stride=1 if index == 0 else 2, deformable=deformable)

    def _make_layer(self, planes: int, num_blocks: int, stride: int, deformable: List[bool]) -> None:
        block = self.block
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [block(self.inplanes, planes, stride, downsample, deformable=deformable[0])]
        self.inplanes = out_channels
        blocks += [block(self.inplanes, planes, deformable=deformable[i]) for i in range(1, num_blocks)]
        self.channels.append(out_channels)
        self.layers.append(nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """[B,3,H,W] -> per stage [B,C_i,H_i,W_i]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


def darknet_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """conv (no bias) -> BN -> LeakyReLU(0.1); keys ``.0`` conv, ``.1`` BN."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DarkNetBlock(nn.Module):
    """1x1 halving conv, 3x3 restoring conv, identity residual."""

    expansion = 2

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = darknet_conv(in_channels, channels, kernel_size=1)
        self.conv2 = darknet_conv(channels, channels * self.expansion, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class DarkNetBackbone(nn.Module):
    """DarkNet-53: a stride-1 stem, then stages that each start with a stride-2 conv."""

    def __init__(self, layers: Tuple[int, ...]):
        super().__init__()
        self.layers = nn.ModuleList()
        self.channels: List[int] = []
        self._preconv = darknet_conv(3, 32, kernel_size=3)
        in_channels = 32
        for index, num_blocks in enumerate(layers):
            channels = 32 * 2**index
            out_channels = channels * DarkNetBlock.expansion
            stage = [darknet_conv(in_channels, out_channels, kernel_size=3, stride=2)]
            stage += [DarkNetBlock(out_channels, channels) for _ in range(num_blocks)]
            self.layers.append(nn.Sequential(*stage))
            self.channels.append(out_channels)
            in_channels = out_channels

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """[B,3,H,W] -> per stage [B,C_i,H_i,W_i] (strides 2..32)."""
        x = self._preconv(x)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return tuple(outs)


def build_backbone(config: BackboneConfig) -> nn.Module:
    if config.dcn_layers and config.kind != "resnet":
        raise ValueError(f"dcn_layers need backbone kind 'resnet' (Bottleneck), got {config.kind!r}")
    if config.kind == "resnet":
        backbone = ResNetBackbone(config.layers, Bottleneck, config.width, config.uses_dcn)
    elif config.kind == "resnet_basic":
        backbone = ResNetBackbone(config.layers, BasicBlock, config.width)
    elif config.kind == "darknet":
        backbone = DarkNetBackbone(config.layers)
    else:
        raise ValueError(f"unknown backbone kind {config.kind!r}; expected 'resnet', 'resnet_basic' or 'darknet'")
    if tuple(backbone.channels) != tuple(config.channels):
        raise ValueError(
            f"backbone {config.kind} with layers {config.layers} has stage channels "
            f"{tuple(backbone.channels)}, but the config says {tuple(config.channels)}"
        )
    return backbone
