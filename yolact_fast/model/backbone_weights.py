"""Pretrained backbone weights for training: torchvision ResNet state dicts
(``resnet50-*.pth``, ``resnet101-63fe2227.pth``, ...) and the files the official YOLACT starts
from (``resnet101_reducedfc.pth`` and ``resnet50-19c8e357.pth``, torchvision layout;
``darknet53.pth``, the layout of the official ``DarkNetBackbone``). Nothing is downloaded.

Keys are mapped as the official ``init_backbone`` does (``layer1..4.*`` -> ``layers.0..3.*``);
a ``module.`` (DataParallel) or ``backbone.`` (a whole YOLACT checkpoint) prefix is removed.
Keys the backbone lacks (``fc.*``) or whose shape differs are skipped and reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List


from .checkpoint import Source, read_state_dict
from .yolact import Yolact

_RESNET_STAGE = re.compile(r"^layer([1-9])\.")


@dataclass
class BackboneLoadReport:
    """What :func:`load_backbone_weights` did: ``loaded`` backbone keys, ``skipped`` file keys
    (key -> reason) and ``missing`` backbone keys the file did not set (``num_batches_tracked``
    counters aside)."""

    source: str
    loaded: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"backbone weights {self.source}: loaded {len(self.loaded)} tensors, "
            f"skipped {len(self.skipped)}, not in the file {len(self.missing)}"
        ]
        lines += [f"  skipped {key}: {reason}" for key, reason in self.skipped.items()]
        lines += [f"  not in the file: {key}" for key in self.missing]
        return "\n".join(lines)


def backbone_key(key: str) -> str:
    """A file's key -> the backbone module's name for it."""
    for prefix in ("module.", "backbone."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return _RESNET_STAGE.sub(lambda m: f"layers.{int(m.group(1)) - 1}.", key)


def load_backbone_weights(model: Yolact, source: Source) -> BackboneLoadReport:
    """Copy the matching tensors of ``source`` (a path or a state dict) into ``model.backbone``.

    Raises FileNotFoundError / RuntimeError for a missing or unreadable file, and RuntimeError
    when no tensor matches (a file for another backbone).
    """
    state_dict, file_name = read_state_dict(source)
    report = BackboneLoadReport(file_name or "state dict")
    expected = model.backbone.state_dict()
    matched = {}
    for key, value in state_dict.items():
        name = backbone_key(key)
        if name not in expected:
            report.skipped[key] = "not in the backbone"
        elif value.shape != expected[name].shape:
            report.skipped[key] = (
                f"shape {tuple(value.shape)}, the {model.config.backbone.kind} "
                f"backbone has {tuple(expected[name].shape)}"
            )
        else:
            matched[name] = value
    if not matched:
        raise RuntimeError(
            f"no tensor of {report.source} fits the {model.config.backbone.kind} backbone of "
            f"{model.config.name} (expected a torchvision ResNet state dict, resnet101_reducedfc.pth, "
            f"resnet50-19c8e357.pth or darknet53.pth); first keys: {list(state_dict)[:5]}"
        )
    model.backbone.load_state_dict(matched, strict=False)
    report.loaded = list(matched)
    report.missing = [k for k in expected if k not in matched and not k.endswith("num_batches_tracked")]
    return report
