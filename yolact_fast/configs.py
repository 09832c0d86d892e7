"""Model configurations as frozen dataclasses.

A config holds everything that shapes the network and its anchors. The named configs
reproduce the official YOLACT ones (dbolya/yolact ``data/config.py``); a new config is one
``dataclasses.replace`` away, and there is no global config state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Tuple

COCO_CLASSES: Tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

# FastBaseTransform constants, BGR order as in the official code.
IMAGENET_MEAN_BGR = (103.94, 116.78, 123.68)
IMAGENET_STD_BGR = (57.38, 57.12, 58.40)


@dataclass(frozen=True)
class BackboneConfig:
    """``kind``: "resnet" (Bottleneck, stride on the 3x3 conv), "resnet_basic" (BasicBlock,
    ResNet-18/34 style) or "darknet" (DarkNet-53).

    ``layers``: blocks per stage. ``selected_layers``: stage indices fed to the FPN.
    ``channels``: output channels of every stage. ``width``: channels of the ResNet stem
    (64 in the official networks; stage i has ``width * 2**i`` planes).
    ``dcn_layers``, ``dcn_interval`` (YOLACT++, Bottleneck ResNets only): per stage, how many
    of the last blocks may use a modulated deformable 3x3 conv, and every how many blocks one
    does (official rule, :meth:`uses_dcn`); empty: none.
    """

    kind: str
    layers: Tuple[int, ...]
    selected_layers: Tuple[int, ...]
    channels: Tuple[int, ...]
    width: int = 64
    dcn_layers: Tuple[int, ...] = ()
    dcn_interval: int = 1

    def __post_init__(self):
        _freeze_sequences(self, ("layers", "selected_layers", "channels", "dcn_layers"))
        if self.dcn_layers and len(self.dcn_layers) != len(self.layers):
            raise ValueError(f"dcn_layers needs one entry per stage ({len(self.layers)}), got {self.dcn_layers}")
        if not isinstance(self.dcn_interval, int) or self.dcn_interval < 1:
            raise ValueError(f"dcn_interval must be a positive int, got {self.dcn_interval!r}")

    def uses_dcn(self, stage: int, block: int) -> bool:
        """Whether block ``block`` of stage ``stage`` has a deformable 3x3 conv (official
        ``ResNetBackbone._make_layer``: the first block if the stage is all DCN, then block i
        if it is among the last ``dcn_layers`` and ``i % dcn_interval == 0``)."""
        if stage >= len(self.dcn_layers):
            return False
        dcn_layers, num_blocks = self.dcn_layers[stage], self.layers[stage]
        if block == 0:
            return dcn_layers >= num_blocks
        return block + dcn_layers >= num_blocks and block % self.dcn_interval == 0


def _freeze_sequences(config, names) -> None:
    """Lists given for tuple fields become (nested) tuples, so configs stay hashable."""

    def freeze(value):
        if isinstance(value, (list, tuple)):
            return tuple(freeze(v) for v in value)
        return value

    for name in names:
        object.__setattr__(config, name, freeze(getattr(config, name)))


NORMALIZE_MODES = ("imagenet", "unit")
MAX_CLASSES = 1 << 16  # classes of a YOLACT head, background included (65,536)


@dataclass(frozen=True)
class YolactConfig:
    """A YOLACT model. Anchors have width ``scale * sqrt(ar) / max_size`` and height
    ``scale / sqrt(ar) / max_size`` (relative), or the width as height if ``square_anchors``
    (YOLACT; YOLACT++ anchors are not square).

    ``pred_scales[l]`` and ``aspect_ratios[l]`` give the anchors of FPN level l (P3, P4, ...).
    ``maskiou_channels``: the mask re-scoring network of YOLACT++ (3x3 stride-2 convs with
    these output channels, then a 1x1 conv to one predicted IoU per class); empty: none.
    ``normalize``: "imagenet" ((x - mean) / std, BGR constants) or "unit" (x / 255, DarkNet).
    ``proto_width``: channels of the protonet's hidden convs (256 in the official networks).
    ``masks_to_train``: training only; at most this many positives per image train the mask
    loss (the official per-config loss setting: 100, 300 for yolact_im700).
    """

    name: str
    backbone: BackboneConfig
    max_size: int = 550
    class_names: Tuple[str, ...] = COCO_CLASSES
    pred_scales: Tuple[Tuple[float, ...], ...] = ((24,), (48,), (96,), (192,), (384,))
    aspect_ratios: Tuple[Tuple[float, ...], ...] = ((1, 0.5, 2),) * 5
    fpn_features: int = 256
    proto_width: int = 256
    fpn_num_downsample: int = 2
    mask_dim: int = 32
    normalize: str = "imagenet"
    variances: Tuple[float, float] = (0.1, 0.2)
    masks_to_train: int = 100
    square_anchors: bool = True
    maskiou_channels: Tuple[int, ...] = ()

    def __post_init__(self):
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        _freeze_sequences(self, ("class_names", "pred_scales", "aspect_ratios", "variances", "maskiou_channels"))
        if self.num_classes > MAX_CLASSES:
            raise ValueError(
                f"class_names has {len(self.class_names)} names; a YOLACT head has at most "
                f"MAX_CLASSES = {MAX_CLASSES} classes, background included"
            )

    @property
    def num_classes(self) -> int:
        """Classes including background (index 0 of the confidence head)."""
        return len(self.class_names) + 1

    @property
    def num_levels(self) -> int:
        return len(self.pred_scales)

    @property
    def anchors_per_location(self) -> Tuple[int, ...]:
        return tuple(len(s) * len(a) for s, a in zip(self.pred_scales, self.aspect_ratios))

    def replace(self, **changes) -> "YolactConfig":
        return dataclasses.replace(self, **changes)


_RESNET_CHANNELS = (256, 512, 1024, 2048)

yolact_base = YolactConfig(
    name="yolact_base",
    backbone=BackboneConfig("resnet", (3, 4, 23, 3), (1, 2, 3), _RESNET_CHANNELS),
)
yolact_resnet50 = yolact_base.replace(
    name="yolact_resnet50",
    backbone=BackboneConfig("resnet", (3, 4, 6, 3), (1, 2, 3), _RESNET_CHANNELS),
)
yolact_im700 = yolact_base.replace(
    name="yolact_im700",
    max_size=700,
    pred_scales=((30,), (61,), (122,), (244,), (488,)),
    masks_to_train=300,
)
yolact_darknet53 = yolact_base.replace(
    name="yolact_darknet53",
    backbone=BackboneConfig("darknet", (1, 2, 8, 8, 4), (2, 3, 4), (64, 128, 256, 512, 1024)),
    normalize="unit",
)

# YOLACT++ (official ``yolact_plus_*_config``): deformable convs in the backbone, 3 scales x 3
# aspect ratios per cell with non-square anchors, and the mask re-scoring network.
_PLUS_SCALES = tuple(tuple(i * 2 ** (j / 3.0) for j in range(3)) for i in (24, 48, 96, 192, 384))
yolact_plus_base = yolact_base.replace(
    name="yolact_plus_base",
    backbone=BackboneConfig(
        "resnet", (3, 4, 23, 3), (1, 2, 3), _RESNET_CHANNELS, dcn_layers=(0, 4, 23, 3), dcn_interval=3
    ),
    pred_scales=_PLUS_SCALES,
    square_anchors=False,
    maskiou_channels=(8, 16, 32, 64, 128),
)
yolact_plus_resnet50 = yolact_plus_base.replace(
    name="yolact_plus_resnet50",
    backbone=BackboneConfig(
        "resnet", (3, 4, 6, 3), (1, 2, 3), _RESNET_CHANNELS, dcn_layers=(0, 4, 6, 3), dcn_interval=1
    ),
)

SHAPE_CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")

# The embedded demo model (``yf.load("demo")``): a half-width ResNet-18 at 256 px, trained from
# scratch on synthetic shapes on a CPU (scripts/train_demo.sh). Shapes are near-square, so
# square anchors at two scales per level replace the three aspect ratios.
yolact_demo = yolact_base.replace(
    name="yolact_demo",
    backbone=BackboneConfig("resnet_basic", (2, 2, 2, 2), (1, 2, 3), (32, 64, 128, 256), width=32),
    max_size=256,
    class_names=SHAPE_CLASSES,
    pred_scales=((16, 23), (32, 45), (64, 90), (128, 181), (256, 362)),
    aspect_ratios=((1,),) * 5,
    fpn_features=128,
    proto_width=64,
)

NAMED_CONFIGS = {
    c.name: c
    for c in (
        yolact_base,
        yolact_resnet50,
        yolact_im700,
        yolact_darknet53,
        yolact_plus_base,
        yolact_plus_resnet50,
        yolact_demo,
    )
}


def get_config(name: str) -> YolactConfig:
    """The named config; raises ValueError listing the known names."""
    try:
        return NAMED_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown config {name!r}; expected one of {sorted(NAMED_CONFIGS)}") from None


def feature_sizes(image_size: Tuple[int, int], num_levels: int = 5) -> Tuple[Tuple[int, int], ...]:
    """(h, w) of FPN levels P3.. for a network input of ``image_size`` = (H, W).

    Every stride-2 layer of the backbones and the FPN (3x3 pad 1, 7x7 pad 3, 1x1 pad 0,
    max-pool 3x3 pad 1) maps s to ceil(s / 2); P3 is three such steps down.
    """
    h, w = image_size
    sizes = []
    for level in range(2 + num_levels):
        h, w = -(-h // 2), -(-w // 2)
        if level >= 2:
            sizes.append((h, w))
    return tuple(sizes)


def anchor_sizes(config: YolactConfig) -> list:
    """Per level, the relative (w, h) of each anchor in the official order, float64."""
    levels = []
    for scales, ars in zip(config.pred_scales, config.aspect_ratios):
        sizes = []
        for scale in scales:
            for ar in ars:
                ar = math.sqrt(ar)
                w = scale * ar / config.max_size
                h = w if config.square_anchors else scale / ar / config.max_size
                sizes.append((w, h))
        levels.append(sizes)
    return levels


def proto_size(image_size: Tuple[int, int]) -> Tuple[int, int]:
    """Prototype resolution: P3 upsampled x2 (138x138 at 550)."""
    h, w = feature_sizes(image_size, 1)[0]
    return 2 * h, 2 * w
