"""One call from image(s) to :class:`Instances`.

``segment`` runs the fused inference copy of the model (BatchNorm folded, channels_last) and the
post-network ops from :mod:`yolact_fast.ops`. ``segment_eager`` is the official-equivalent path
(unfused model, :mod:`yolact_fast.reference` ops) used as the comparison baseline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import numbers
import os
import threading
import weakref
from types import ModuleType
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import ops as _ops
from . import reference as _reference
from .configs import IMAGENET_MEAN_BGR, IMAGENET_STD_BGR, YolactConfig
from .instances import Instances
from .io import as_image_list
from .model import Yolact, load
from .model.fuse import inference_copy, state_key
from .rescore import rescore_masks

WEIGHTS_ENV = "YOLACT_FAST_WEIGHTS"
NMS_KINDS = ("fast", "cluster")


def segment(
    images,
    model: Union[Yolact, str, os.PathLike, None] = None,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    nms: str = "fast",
) -> Union[Instances, List[Instances]]:
    """Instances in ``images`` (one image -> Instances; a list or [B,3,H,W] -> list).

    Images: uint8 [3,H,W] RGB or float [3,H,W] in [0,1] tensors, numpy HxWx3 uint8 RGB, PIL
    images or file paths; they run on the model's device, as one batch. ``model``: a
    :class:`Yolact`, a checkpoint path, or None for ``$YOLACT_FAST_WEIGHTS`` if set, else the
    embedded demo model (``yf.load("demo")``, five synthetic shape classes). Candidates are
    priors whose best class score is ``> score_threshold``; per-class NMS keeps ``iou <= iou_threshold`` among the ``top_k`` best
    of each class; at most ``max_detections`` are returned, by descending score.
    """
    model = resolve_model(model)
    return _segment(images, model, _inference_network(model), _ops, score_threshold,
                    iou_threshold, top_k, max_detections, nms)


def segment_eager(
    images,
    model: Yolact,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    nms: str = "fast",
) -> Union[Instances, List[Instances]]:
    """Like :func:`segment`, with the official-equivalent path: the unfused model and the
    pure-PyTorch reference ops (the benchmark baseline)."""
    model = resolve_model(model)
    return _segment(images, model, model, _reference, score_threshold, iou_threshold, top_k,
                    max_detections, nms)


def _segment(images, model, network, ops_module, score_threshold, iou_threshold, top_k,
             max_detections, nms):
    finish = postprocessor(model, ops_module, score_threshold, iou_threshold, top_k,
                           max_detections, nms)
    image_list, is_batch = as_image_list(images)
    with torch.inference_mode(), _eval_mode(network):
        results = finish(*run_network(image_list, model, network, ops_module))
    return results if is_batch else results[0]


def run_network(image_list: Sequence[torch.Tensor], model: Yolact, network: torch.nn.Module,
                ops_module: ModuleType = _ops):
    """Validated [3,H,W] images -> (raw outputs of one batched forward, priors [P,4], image
    sizes). ``network`` is ``model`` or its inference copy; the caller sets inference and
    eval mode. The second half of :func:`segment` is ``postprocessor(...)(*run_network(...))``."""
    device = model.device
    batch = preprocess(image_list, model.config, device)
    if network is not model:
        batch = batch.contiguous(memory_format=torch.channels_last)
    outputs = network(batch)
    priors = priors_for(model, tuple(batch.shape[-2:]), device, ops_module)
    return outputs, priors, [tuple(image.shape[-2:]) for image in image_list]


def postprocessor(model: Yolact, ops_module: ModuleType = _ops, score_threshold: float = 0.05,
                  iou_threshold: float = 0.5, top_k: int = 200, max_detections: int = 100,
                  nms: str = "fast"):
    """Checks the options; returns ``finish(outputs, priors, image_sizes) -> list[Instances]``,
    which post-processes what :func:`run_network` returns (callable from any thread; the
    caller sets inference mode)."""
    _check_options(score_threshold, iou_threshold, top_k, max_detections, nms)
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise TypeError(f"segment runs float32 models, this one is {dtype}: call model.float()")

    def finish(outputs, priors, image_sizes) -> List[Instances]:
        return [
            postprocess(
                outputs.loc[i], outputs.conf_logits[i], outputs.mask_coeffs[i], outputs.proto[i],
                priors, size, model.config, ops_module, nms,
                score_threshold, iou_threshold, top_k, max_detections,
                maskiou_net=getattr(model, "maskiou_net", None),
            )
            for i, size in enumerate(image_sizes)
        ]

    return finish


@contextlib.contextmanager
def _eval_mode(network: torch.nn.Module):
    """Run in eval mode (BatchNorm running stats), restoring the caller's mode afterwards."""
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)


def _check_options(score_threshold, iou_threshold, top_k, max_detections, nms) -> None:
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score_threshold must be in [0,1], got {score_threshold}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0,1], got {iou_threshold}")
    for name, value in (("top_k", top_k), ("max_detections", max_detections)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if nms not in NMS_KINDS:
        raise ValueError(f"nms must be one of {NMS_KINDS}, got {nms!r}")


def preprocess(images: Sequence[torch.Tensor], config: YolactConfig, device) -> torch.Tensor:
    """[3,H,W] images (uint8 RGB or float in [0,1]) -> network input [B,3,S,S] float32.

    Equals the official FastBaseTransform (which takes BGR 0..255): bilinear resize to SxS
    (align_corners=False, no antialias), then (x - mean) / std per channel (or x / 255).
    Resizing and normalizing act per channel, so doing them in RGB order with the constants
    reordered gives the same bits as the official BGR path followed by its channel flip.
    """
    size = (config.max_size, config.max_size)
    resized = [
        F.interpolate(_to_255(image.to(device))[None], size, mode="bilinear", align_corners=False)
        for image in images
    ]
    batch = torch.cat(resized)
    if config.normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN_BGR[::-1], dtype=torch.float32, device=device)
        std = torch.tensor(IMAGENET_STD_BGR[::-1], dtype=torch.float32, device=device)
        return (batch - mean[None, :, None, None]) / std[None, :, None, None]
    if config.normalize == "unit":
        return batch / 255
    raise ValueError(f"unknown normalize mode {config.normalize!r}; expected 'imagenet' or 'unit'")


def _to_255(image: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 0..255; float in [0,1] -> times 255."""
    return image.float() if image.dtype == torch.uint8 else image.float() * 255


def priors_for(model: Yolact, input_size: Tuple[int, int], device, ops_module=_ops) -> torch.Tensor:
    """Priors [P,4] for a network input size, cached per model."""
    state = _state_of(model)
    key = (input_size, str(device), ops_module.__name__, model.config)
    with state.lock:
        if key not in state.priors:
            state.priors[key] = ops_module.make_priors(model.config, input_size).to(device)
        return state.priors[key]


def postprocess(loc, conf_logits, mask_coeffs, proto, priors, image_size, config, ops_module,
                nms, score_threshold, iou_threshold, top_k, max_detections,
                maskiou_net=None) -> Instances:
    """Raw outputs of one image (loc [P,4], conf_logits [P,C+1], mask_coeffs [P,k],
    proto [ph,pw,k]) -> Instances at ``image_size`` (H, W). ``nms``: "fast" or "cluster"
    (the reference path runs the plain greedy loop, which Cluster-NMS equals). With a
    ``maskiou_net`` (YOLACT++), masks are re-scored (:func:`yolact_fast.rescore.rescore_masks`)."""
    det_boxes, det_coeffs, labels, det_scores = ops_module.detect(
        loc, conf_logits, mask_coeffs, priors, config.variances, iou_threshold, top_k,
        score_threshold, max_detections, method=nms,
    )
    masks = ops_module.paste_masks(proto, det_coeffs, det_boxes, size=image_size)
    # Official boxes are truncated to integers (.long()); keep them as float32 pixels.
    pixel_boxes = _reference.boxes_to_pixels(det_boxes, image_size).long().float()
    instances = Instances(pixel_boxes, det_scores.float(), labels.long(), masks, config.class_names)
    if maskiou_net is not None:
        instances = rescore_masks(instances, maskiou_net, proto, det_coeffs, det_boxes, ops_module)
    return instances


@dataclasses.dataclass
class _ModelState:
    """What segment() keeps per model: the fused copy (with the weights' state key it was
    built from) and priors. Kept outside the module, so the model itself stays copyable
    and picklable (the fused copy holds oneDNN-packed weights, which are neither)."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    fused: Optional[Tuple[tuple, torch.nn.Module]] = None
    priors: dict = dataclasses.field(default_factory=dict)


_MODEL_STATES: "weakref.WeakKeyDictionary[Yolact, _ModelState]" = weakref.WeakKeyDictionary()
_MODEL_STATES_LOCK = threading.Lock()


def _state_of(model: Yolact) -> _ModelState:
    with _MODEL_STATES_LOCK:
        state = _MODEL_STATES.get(model)
        if state is None:
            state = _MODEL_STATES[model] = _ModelState()
        return state


def _inference_network(model: Yolact) -> torch.nn.Module:
    """The fused inference copy of ``model``, rebuilt whenever its weights change."""
    state = _state_of(model)
    key = state_key(model)
    with state.lock:
        if state.fused is None or state.fused[0] != key:
            state.fused = None  # release the old copy first
            state.fused = (key, inference_copy(model))
        return state.fused[1]


def resolve_model(model) -> Yolact:
    """A Yolact from ``model`` (Yolact, checkpoint path) or from ``$YOLACT_FAST_WEIGHTS``."""
    if isinstance(model, Yolact):
        return model
    if model is None:
        path = os.environ.get(WEIGHTS_ENV)
        if not path:
            return _load_demo()
        return _load_cached(os.path.abspath(path), *_file_stamp(path))
    if isinstance(model, (str, os.PathLike)):
        if os.fspath(model) == "demo":
            return _load_demo()
        return _load_cached(os.path.abspath(model), *_file_stamp(model))
    raise TypeError(f"model must be a Yolact, a checkpoint path or None, got {type(model).__name__}")


def _file_stamp(path) -> Tuple[float, int]:
    try:
        stat = os.stat(path)
    except OSError:
        raise FileNotFoundError(f"checkpoint not found: {os.fspath(path)!r}") from None
    return stat.st_mtime, stat.st_size


@functools.lru_cache(maxsize=1)
def _load_demo() -> Yolact:
    """The embedded demo model, loaded once."""
    return load("demo")


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float, size: int) -> Yolact:
    """A checkpoint given by path (argument or environment), loaded once per file version."""
    return load(path)
