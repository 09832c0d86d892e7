"""The YOLACT network, official checkpoint loading and the deterministic weight rule."""

from .checkpoint import check_state_dict, filter_official_keys, infer_config, load, read_state_dict
from .yolact import Yolact, YolactOutput

__all__ = [
    "Yolact",
    "YolactOutput",
    "load",
    "read_state_dict",
    "infer_config",
    "filter_official_keys",
    "check_state_dict",
]
