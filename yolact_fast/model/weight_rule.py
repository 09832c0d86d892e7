"""The deterministic weight rule of the golden data (docs/golden-data.md).

Random but reproducible official-layout weights: every key gets its own PCG64 generator seeded
with ``[seed, crc32(key)]``, so the values do not depend on the key order. Used by the parity
tests and by ``yolact-fast demo`` (clearly random weights, not a trained model).
"""

from __future__ import annotations

import math
import zlib
from typing import Dict, Iterable, List, Mapping, Tuple

import numpy as np
import torch

GAIN = 1.0
#: Gain of ``prediction_layers.0.conf_layer.weight`` per named config (keeps the class logits
#: at std ~1 on the synthetic images, see the golden README).
GAIN_CONF = {
    "yolact_base": 0.5,
    "yolact_im700": 0.5,
    "yolact_resnet50": 2.0,
    "yolact_darknet53": 0.12,
    "yolact_plus_base": 0.5,
    "yolact_plus_resnet50": 2.0,
}
#: Gain of the YOLACT++ mask-IoU network's conv weights (golden README, "YOLACT++").
GAIN_MASKIOU = 0.5
_MASKIOU_PREFIX = "maskiou_net."

_BN_LEAVES = {
    "weight": "bn_weight",
    "bias": "bn_bias",
    "running_mean": "bn_mean",
    "running_var": "bn_var",
    "num_batches_tracked": "bn_count",
}

Manifest = List[Tuple[str, Tuple[int, ...], str]]


def manifest_of(state_dict: Mapping[str, torch.Tensor]) -> Manifest:
    """(name, shape, dtype name) of each entry, in order."""
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state_dict.items()]


def _last_maskiou_weight(names: List[str]) -> str:
    """The weight of the mask-IoU network's last conv (highest layer index), or None."""
    weights = [n for n in names if n.startswith(_MASKIOU_PREFIX) and n.endswith(".weight")]
    return max(weights, key=lambda n: int(n.split(".")[-2]), default=None)


def weight_roles(names: Iterable[str]) -> List[str]:
    """Role of each key: conv_weight, conf_weight, bias, bn_{weight,bias,mean,var,count}, or
    for the YOLACT++ mask-IoU network maskiou_weight, maskiou_last_weight, maskiou_bias."""
    names = list(names)
    name_set = set(names)
    last_maskiou_weight = _last_maskiou_weight(names)
    roles = []
    for name in names:
        prefix, _, leaf = name.rpartition(".")
        if name.startswith(_MASKIOU_PREFIX) and leaf in ("weight", "bias"):
            roles.append(
                "maskiou_bias"
                if leaf == "bias"
                else "maskiou_last_weight"
                if name == last_maskiou_weight
                else "maskiou_weight"
            )
        elif prefix + ".running_mean" in name_set:
            roles.append(_BN_LEAVES[leaf])
        elif leaf == "weight":
            roles.append("conf_weight" if prefix.endswith("conf_layer") else "conv_weight")
        elif leaf == "bias":
            roles.append("bias")
        else:
            raise ValueError(f"no weight-rule role for key {name!r}")
    return roles


def rule_tensor(name: str, shape: Tuple[int, ...], role: str, seed: int, gain_conf: float) -> np.ndarray:
    """The value of one key under the rule (float32, or int64 zeros for bn_count)."""
    if role == "bn_count":
        return np.zeros(shape, np.int64)
    generator = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    z = generator.standard_normal(shape).astype(np.float32)
    if role in ("conv_weight", "conf_weight"):
        fan_in = int(np.prod(shape[1:]))
        gain = GAIN if role == "conv_weight" else gain_conf
        return z * np.float32(gain * math.sqrt(1.0 / fan_in))
    if role in ("maskiou_weight", "maskiou_last_weight"):
        fan_in = int(np.prod(shape[1:]))
        z = z if role == "maskiou_weight" else np.abs(z)
        return z * np.float32(GAIN_MASKIOU * math.sqrt(1.0 / fan_in))
    if role == "maskiou_bias":
        return np.float32(0.1) * np.abs(z)
    if role == "bias":
        return z * np.float32(0.01)
    if role == "bn_weight":
        return np.float32(1.0) + np.float32(0.1) * z
    if role in ("bn_bias", "bn_mean"):
        return np.float32(0.1) * z
    if role == "bn_var":
        return np.float32(1.0) + np.float32(0.1) * np.abs(z)
    raise ValueError(f"unknown weight-rule role {role!r}")


def rule_state_dict(manifest: Manifest, seed: int, gain_conf: float) -> Dict[str, torch.Tensor]:
    """State dict for ``manifest`` (name, shape, dtype) under the weight rule."""
    roles = weight_roles(name for name, _, _ in manifest)
    return {
        name: torch.from_numpy(rule_tensor(name, tuple(shape), role, seed, gain_conf))
        for (name, shape, _), role in zip(manifest, roles)
    }


def gain_conf_for(config_name: str) -> float:
    try:
        return GAIN_CONF[config_name]
    except KeyError:
        raise ValueError(
            f"no GAIN_CONF for config {config_name!r}; pass gain_conf (known: {sorted(GAIN_CONF)})"
        ) from None


def rule_weights(config, seed: int = 0, gain_conf: float = None) -> Dict[str, torch.Tensor]:
    """Official-layout state dict for ``config`` (a YolactConfig or a named config)."""
    from ..configs import get_config
    from .yolact import Yolact

    if isinstance(config, str):
        config = get_config(config)
    if gain_conf is None:
        gain_conf = gain_conf_for(config.name)
    with torch.device("meta"):
        manifest = manifest_of(Yolact(config).state_dict())
    return rule_state_dict(manifest, seed, gain_conf)
