"""Loading official YOLACT checkpoints: config inference, key quirks, strict checking."""

from __future__ import annotations

import io
import os
import re
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from ..configs import MAX_CLASSES, NAMED_CONFIGS, YolactConfig, get_config
from .yolact import Yolact

DEMO_NAME = "demo"
DEMO_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "demo.pt")

Source = Union[str, os.PathLike, Mapping[str, torch.Tensor], io.IOBase]


def load(
    source: Source,
    config: Union[str, YolactConfig, None] = None,
    device: Union[str, torch.device, None] = None,
) -> Yolact:
    """A :class:`Yolact` with weights from an official checkpoint.

    ``source``: a path, an open binary file or an official-layout state dict. ``config``: a
    named config, a :class:`YolactConfig`, or None to infer it from the keys (and from the file
    name for ``im700``). Raises FileNotFoundError, ValueError (unknown config, nothing to infer
    from, a tensor whose shape claims more data than the file stores, an absurd head size, a
    NaN or infinite weight, a bool, integer or complex tensor where the model holds floats) or
    RuntimeError (not a torch checkpoint, not a state dict, keys or shapes that do not match
    the config: checked on a meta-device model before any weight is allocated).

    ``"demo"`` is the embedded demo model (``yolact_demo``, synthetic shapes). Files written by
    the trainer (``{"state_dict", "config", "class_names"}``) name their config themselves.
    """
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) == DEMO_NAME:
        if not os.path.isfile(DEMO_PATH):
            raise RuntimeError(f"the embedded demo model is missing from the installation ({DEMO_PATH})")
        source = DEMO_PATH
    state_dict, file_name, saved = _read_with_meta(source)
    if config is None:
        config = saved if saved is not None else infer_config(state_dict, file_name)
    elif isinstance(config, str):
        config = get_config(config)
    elif not isinstance(config, YolactConfig):
        raise TypeError(f"config must be a config name or a YolactConfig, got {type(config).__name__}")
    state_dict = filter_official_keys(state_dict, config)
    with torch.device("meta"):  # shapes checked before any weight is allocated
        skeleton = Yolact(config)
    try:
        check_state_dict(skeleton, state_dict, what=file_name or "state dict")
    except RuntimeError as error:
        raise RuntimeError(f"{error}{_implied_config_hint(state_dict, file_name, config)}") from None
    check_state_values(skeleton, state_dict, what=_describe(file_name))
    model = Yolact(config)
    model.load_state_dict(state_dict, strict=True)
    if device is not None:
        model.to(device)
    return model.eval()


def read_state_dict(source: Source) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """(state dict on the CPU, file name or None). Loads with ``weights_only=True``."""
    state_dict, file_name, _ = _read_with_meta(source)
    return state_dict, file_name


def _saved_config(obj) -> Optional[YolactConfig]:
    """The config named by a yolact_fast weights file ({"state_dict", "config", "class_names"})."""
    if not (isinstance(obj, Mapping) and isinstance(obj.get("config"), str) and "state_dict" in obj):
        return None
    config = get_config(obj["config"])
    names = obj.get("class_names")
    if (
        isinstance(names, (list, tuple))
        and all(isinstance(n, str) for n in names)
        and tuple(names) != config.class_names
    ):
        config = config.replace(class_names=tuple(names))
    return config


def _read_with_meta(source: Source) -> Tuple[Dict[str, torch.Tensor], Optional[str], Optional[YolactConfig]]:
    """(state dict, file name, config named in the file or None)."""
    file_name = None
    if isinstance(source, Mapping):
        state_dict = source
    elif isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
        if isinstance(source, (str, os.PathLike)):
            file_name = os.fspath(source)
            if os.path.isdir(file_name):
                raise IsADirectoryError(f"checkpoint {file_name!r} is a directory, not a checkpoint file")
            if not os.path.isfile(file_name):
                raise FileNotFoundError(f"checkpoint not found: {file_name!r}")
        else:
            file_name = getattr(source, "name", None)
            file_name = file_name if isinstance(file_name, str) else None
        state_dict = torch_load(source, file_name)
    else:
        raise TypeError(f"checkpoint source must be a path, an open file or a state dict, got {type(source).__name__}")
    saved = _saved_config(state_dict)
    state_dict = _unwrap(state_dict)
    what = _describe(file_name)
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise RuntimeError(
            f"{what} does not hold a state dict (str -> tensor), got {_kind_of(state_dict)}: not a YOLACT state dict"
        )
    if not isinstance(source, Mapping):  # a file's shapes may lie; a caller's dict is theirs
        check_stored_tensors(state_dict, what)
    return dict(state_dict), file_name, saved


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_2_UP = b"\x80"


def torch_load(source, file_name: Optional[str]):
    """``torch.load(weights_only=True)``; a file it cannot read is reported by what it is
    not (torch's own message would advise ``weights_only=False``, wrong and unsafe here)."""
    name = file_name if file_name is not None else getattr(source, "name", None)
    what = _describe(name) if isinstance(name, str) else "from an unnamed file"
    head = _peek(source, 4)
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors all mean "not a checkpoint"
        if head is None:
            reason = "a stream that is not seekable, as torch.load needs"
        elif head == b"":
            reason = "the file is empty"
        elif head.startswith(_ZIP_MAGIC):
            reason = "a zip archive, but not one written by torch.save"
        elif head.startswith(_PICKLE_PROTOCOL_2_UP):
            reason = (
                "a Python pickle holding objects other than tensors and plain containers; "
                "checkpoints are read as weights only, and pickled code is never run"
            )
        else:
            reason = "neither a zip archive nor a pickle, as torch.save writes"
        raise RuntimeError(
            f"cannot read checkpoint {what}: not a torch checkpoint ({reason}; {type(error).__name__})"
        ) from None


def _peek(source, size: int) -> Optional[bytes]:
    """The first ``size`` bytes of a path or a seekable file (position kept), else None."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as file:
                return file.read(size)
        if source.seekable():
            position = source.tell()
            head = source.read(size)
            source.seek(position)
            return head
    except (OSError, AttributeError, ValueError):
        pass
    return None


def _describe(file_name) -> str:
    return repr(file_name) if isinstance(file_name, str) else "the state dict"


def _kind_of(obj) -> str:
    if isinstance(obj, Mapping):
        tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
        return f"a {type(obj).__name__} of {len(obj)} entries, {tensors} of them tensors"
    return type(obj).__name__


def check_stored_tensors(obj, what: str, key: str = "") -> None:
    """ValueError unless every tensor in ``obj`` (nested dicts, lists, tuples) has all its
    elements stored in the file (see :func:`_check_stored_tensor`)."""
    if isinstance(obj, torch.Tensor):
        _check_stored_tensor(obj, key, what)
    elif isinstance(obj, Mapping):
        for name, value in obj.items():
            check_stored_tensors(value, what, f"{key}.{name}" if key else str(name))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            check_stored_tensors(value, what, f"{key}.{index}" if key else str(index))


def _check_stored_tensor(tensor: torch.Tensor, key: str, what: str) -> None:
    """ValueError unless ``tensor`` is a dense CPU tensor whose elements are all stored in
    the file: a shape may not claim more data than the file holds (stride-0 or meta tensors
    would otherwise size a model that allocates without bound)."""
    if tensor.device.type == "meta" or tensor.layout != torch.strided:
        raise ValueError(f"{what}: {key} is a {tensor.layout} tensor on {tensor.device}, not a dense tensor with data")
    needed = tensor.numel() * tensor.element_size()
    stored = tensor.untyped_storage().nbytes()
    if needed > stored:
        raise ValueError(
            f"{what}: {key} claims shape {tuple(tensor.shape)} ({needed} bytes) "
            f"but the file stores {stored} bytes for it"
        )


def _unwrap(obj):
    """Accept ``{"state_dict": sd}`` / ``{"model": sd}`` wrappers around a state dict."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                return obj[key]
    return obj


def filter_official_keys(state_dict: Mapping[str, torch.Tensor], config: YolactConfig) -> Dict[str, torch.Tensor]:
    """Drop what the official ``Yolact.load_weights`` drops.

    Pre-rename ``backbone.layer1..4`` keys, and ``fpn.downsample_layers.N`` for
    N >= ``config.fpn_num_downsample`` (v1.0 checkpoints carried extra ones).
    """
    kept = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
            continue
        if key.startswith("fpn.downsample_layers."):
            index = key.split(".")[2]
            if index.isdigit() and int(index) >= config.fpn_num_downsample:
                continue
        kept[key] = value
    return kept


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "state dict") -> None:
    """RuntimeError listing missing, unexpected and mis-shaped keys, if there are any."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or misshaped):
        return
    parts = [f"{what} does not match {model.config.name} ({len(expected)} keys):"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
            parts.append(f"{label} ({len(items)}): {shown}")
    raise RuntimeError("\n  ".join(parts))


def check_state_values(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "the state dict"
) -> None:
    """ValueError naming the first key whose tensor cannot be the model's: a bool, integer or
    complex tensor where the model holds floats (an integer tensor such as BatchNorm's
    ``num_batches_tracked`` must stay an integer one), or a NaN or infinity in a float tensor."""
    for key, expected in model.state_dict().items():
        tensor = state_dict[key]
        if expected.dtype.is_floating_point:
            if not tensor.dtype.is_floating_point:
                raise ValueError(
                    f"{what}: {key} is a {tensor.dtype} tensor; the model's is {expected.dtype} "
                    "(weights must be floating point)"
                )
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{what}: {key} holds NaN or infinite values")
        elif tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
            raise ValueError(f"{what}: {key} is a {tensor.dtype} tensor; the model's is {expected.dtype}")


def _implied_config_hint(state_dict, file_name, config: YolactConfig) -> str:
    """For a load error: which named config the keys imply, if one and not ``config``."""
    try:
        implied = infer_config(state_dict, file_name)
    except ValueError:
        return ""
    if implied.name == config.name:
        return ""
    return f"\n  the checkpoint's keys are those of {implied.name}: pass config={implied.name!r} or leave config out"


def infer_config(state_dict: Mapping[str, torch.Tensor], file_name: Optional[str] = None) -> YolactConfig:
    """The named config whose layout matches the keys: backbone blocks, deformable convs
    (``conv2.conv_offset_mask`` keys), anchors per location (prior count) and the mask-IoU
    network (``maskiou_net.*``, YOLACT++).

    ``yolact_im700`` and ``yolact_base`` have identical keys; the file name decides
    ("yolact_im700_54_800000.pth"). A class count other than COCO's gives generic class names.
    """
    kind, layers = _backbone_layout(state_dict, file_name)
    stem = state_dict.get("backbone.conv1.weight")
    deformable = _deformable_blocks(state_dict)
    has_maskiou = any(k.startswith("maskiou_net.") for k in state_dict)
    num_anchors = _anchors_per_location(state_dict)
    candidates = [
        c
        for c in NAMED_CONFIGS.values()
        if c.backbone.kind == kind
        and tuple(c.backbone.layers) == layers
        and (stem is None or stem.shape[0] == getattr(c.backbone, "width", 64))
        and _deformable_blocks_of(c) == deformable
        and bool(c.maskiou_channels) == has_maskiou
        and (num_anchors is None or c.anchors_per_location[0] == num_anchors)
    ]
    if not candidates:
        raise ValueError(
            f"cannot infer the config: backbone {kind} with blocks per stage {layers}, "
            f"{len(deformable)} deformable convs, {num_anchors} anchors per location and "
            f"{'a' if has_maskiou else 'no'} mask-IoU network matches no named config "
            f"({sorted(NAMED_CONFIGS)}); pass config="
        )
    base_name = os.path.basename(file_name or "")
    by_name = [c for c in candidates if c.name.replace("yolact_", "") in base_name]
    config = (by_name or sorted(candidates, key=lambda c: c.max_size))[0]
    return _with_head_sizes(config, state_dict, file_name)


def _deformable_blocks(state_dict: Mapping[str, torch.Tensor]) -> frozenset:
    """{(stage, block)} of the ResNet blocks whose 3x3 conv is deformable."""
    blocks = set()
    for key in state_dict:
        match = re.match(r"backbone\.layers\.(\d+)\.(\d+)\.conv2\.conv_offset_mask\.weight$", key)
        if match:
            blocks.add((int(match.group(1)), int(match.group(2))))
    return frozenset(blocks)


def _deformable_blocks_of(config: YolactConfig) -> frozenset:
    backbone = config.backbone
    return frozenset(
        (stage, block)
        for stage, num_blocks in enumerate(backbone.layers)
        for block in range(num_blocks)
        if backbone.uses_dcn(stage, block)
    )


def _anchors_per_location(state_dict: Mapping[str, torch.Tensor]) -> Optional[int]:
    weight = state_dict.get("prediction_layers.0.bbox_layer.weight")
    return None if weight is None or weight.ndim == 0 else weight.shape[0] // 4


def _backbone_layout(
    state_dict: Mapping[str, torch.Tensor], file_name: Optional[str] = None
) -> Tuple[str, Tuple[int, ...]]:
    """("resnet" | "darknet", blocks per stage) from ``backbone.layers.<stage>.<block>`` keys."""
    blocks: Dict[int, int] = {}
    for key in state_dict:
        match = re.match(r"backbone\.layers\.(\d+)\.(\d+)\.", key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise ValueError(
            f"{_describe(file_name)} is not a YOLACT state dict: missing keys "
            "backbone.layers.<stage>.<block>.* (cannot infer the config; pass config= for "
            "another layout)"
        )
    if "backbone._preconv.0.weight" in state_dict:
        # Each DarkNet stage starts with its stride-2 conv, which is not a residual block.
        return "darknet", tuple(blocks[s] - 1 for s in sorted(blocks))
    layers = tuple(blocks[s] for s in sorted(blocks))
    if "backbone.layers.0.0.conv3.weight" not in state_dict:
        return "resnet_basic", layers  # ResNet-18/34 blocks have two convs
    return "resnet", layers


MAX_MASK_DIM = 1 << 12


def _with_head_sizes(
    config: YolactConfig, state_dict: Mapping[str, torch.Tensor], file_name: Optional[str] = None
) -> YolactConfig:
    """Adapt the class count and mask dimension to the head's weights, if they differ and
    are within sane bounds (ValueError naming the key otherwise)."""
    try:
        num_anchors = state_dict["prediction_layers.0.bbox_layer.weight"].shape[0] // 4
        num_classes = state_dict["prediction_layers.0.conf_layer.weight"].shape[0] // num_anchors
        mask_dim = state_dict["prediction_layers.0.mask_layer.weight"].shape[0] // num_anchors
    except (KeyError, IndexError, ZeroDivisionError):
        return config  # the strict check reports what is missing
    for key, value, limit, what in (
        ("conf_layer", num_classes, MAX_CLASSES, "classes"),
        ("mask_layer", mask_dim, MAX_MASK_DIM, "mask prototypes"),
    ):
        if value > limit:
            raise ValueError(
                f"{_describe(file_name)}: prediction_layers.0.{key}.weight claims {value} {what} "
                f"({num_anchors} anchors per location), more than the {limit} a YOLACT head may have"
            )
    changes = {}
    if num_classes != config.num_classes and num_classes >= 2:
        changes["class_names"] = tuple(f"class_{i}" for i in range(1, num_classes))
    if mask_dim != config.mask_dim and mask_dim >= 1:
        changes["mask_dim"] = mask_dim
    return config.replace(**changes) if changes else config


def save_weights(model: Yolact, path: Union[str, os.PathLike], half: bool = False) -> None:
    """Weights only ({"state_dict", "config", "class_names"}), loadable by ``yf.load(path)``;
    ``half``: floating-point tensors as float16. Written atomically (see :func:`save_file`)."""
    state = {k: (v.half() if half and v.is_floating_point() else v.clone()) for k, v in model.state_dict().items()}
    save_file({"state_dict": state, "config": model.config.name, "class_names": list(model.config.class_names)}, path)


def save_file(obj, path: Union[str, os.PathLike]) -> None:
    """``torch.save(obj)`` to ``path`` atomically: the file is written beside it under a new name,
    then renamed over it, so a failed write (disk full, size limit, interrupt) leaves the
    previous file intact and a link planted at ``path`` is replaced, never followed. OSError
    naming ``path`` if the write fails."""
    from ..files import atomic_output

    path = os.fspath(path)
    try:
        with atomic_output(path) as file:
            torch.save(obj, file)
    except (OSError, RuntimeError) as error:  # torch reports a failed write as a RuntimeError
        raise OSError(
            f"cannot write checkpoint {path!r} (the previous file, if any, is unchanged): {_write_error(error)}"
        ) from error


def _write_error(error: BaseException) -> str:
    """The OS's reason for a failed write (e.g. "No space left on device"), else the error's text."""
    cause = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    return (cause.strerror or str(cause)) if cause is not None else str(error)
