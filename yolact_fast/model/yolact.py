"""The YOLACT network: backbone -> FPN -> (protonet, shared prediction head)."""

from __future__ import annotations

from typing import List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import YolactConfig
from .backbone import build_backbone
from .fpn import FPN
from .heads import MaskIoUNet, PredictionHead, ProtoNet


class YolactOutput(NamedTuple):
    """Raw network outputs for a batch of B images (P priors, C classes incl. background).

    loc [B,P,4] box offsets, conf_logits [B,P,C] (softmax gives the official ``conf``),
    mask_coeffs [B,P,k] (tanh applied), proto [B,ph,pw,k] (NHWC, ReLU applied).
    """

    loc: torch.Tensor
    conf_logits: torch.Tensor
    mask_coeffs: torch.Tensor
    proto: torch.Tensor


class Yolact(nn.Module):
    """YOLACT with the official module names, so official checkpoints load with
    ``load_state_dict(strict=True)`` once the key quirks are filtered
    (:func:`yolact_fast.model.checkpoint.filter_official_keys`).

    ``forward`` takes the preprocessed batch [B,3,S,S] (S = ``config.max_size``; other sizes
    work too) and returns :class:`YolactOutput`. Post-processing lives in
    :mod:`yolact_fast.segment`.
    """

    def __init__(self, config: YolactConfig):
        super().__init__()
        if len(set(config.anchors_per_location)) != 1:
            raise ValueError(
                "the shared prediction head needs the same number of anchors on every level, got "
                f"{config.anchors_per_location}"
            )
        if len(config.backbone.selected_layers) + config.fpn_num_downsample != config.num_levels:
            raise ValueError(
                f"{len(config.backbone.selected_layers)} selected backbone layers + "
                f"{config.fpn_num_downsample} downsample layers != {config.num_levels} anchor levels"
            )
        self.config = config
        self.backbone = build_backbone(config.backbone)
        self.proto_net = ProtoNet(config.fpn_features, config.mask_dim, config.proto_width)
        # YOLACT++ mask re-scoring (run by segment's post-processing and the mask-IoU loss).
        self.maskiou_net = (
            MaskIoUNet(config.maskiou_channels, config.num_classes - 1) if config.maskiou_channels else None
        )
        in_channels = [config.backbone.channels[i] for i in config.backbone.selected_layers]
        self.fpn = FPN(in_channels, config.fpn_features, config.fpn_num_downsample)
        self.prediction_layers = nn.ModuleList(
            [PredictionHead(config.fpn_features, config.anchors_per_location[0], config.num_classes, config.mask_dim)]
        )
        # Only used by the training loss; kept so that official checkpoints load strictly.
        self.semantic_seg_conv = nn.Conv2d(config.fpn_features, config.num_classes - 1, kernel_size=1)
        self.eval()

    def features(self, images: torch.Tensor) -> Tuple[Tuple[torch.Tensor, ...], List[torch.Tensor]]:
        """[B,3,S,S] -> (all backbone stage outputs, FPN levels P3..P7), NCHW."""
        backbone_outs = self.backbone(images)
        pyramid = self.fpn([backbone_outs[i] for i in self.config.backbone.selected_layers])
        return backbone_outs, pyramid

    def forward(self, images: torch.Tensor) -> YolactOutput:
        _, pyramid = self.features(images)
        return self.heads(pyramid)

    def heads(self, pyramid: List[torch.Tensor]) -> YolactOutput:
        """FPN levels -> :class:`YolactOutput` (levels concatenated P3..P7)."""
        proto = F.relu(self.proto_net(pyramid[0]), inplace=True).permute(0, 2, 3, 1).contiguous()
        head = self.prediction_layers[0]
        loc, conf, coeffs = zip(*(head(level) for level in pyramid))
        return YolactOutput(torch.cat(loc, 1), torch.cat(conf, 1), torch.cat(coeffs, 1), proto)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def extra_repr(self) -> str:
        return f"config={self.config.name!r}"
