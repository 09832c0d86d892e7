"""One call from image(s) to :class:`Instances`.

``segment`` runs the model's inference engine (:mod:`yolact_fast.engine`: a fused copy of the
network in the precision and runtime asked for, built once) and the post-network ops from
:mod:`yolact_fast.ops`. ``segment_eager`` is the official-equivalent path (unfused model,
:mod:`yolact_fast.reference` ops) used as the comparison baseline. Both are the same
orchestration: :func:`run_network`, then :func:`postprocess` per image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from types import ModuleType
from typing import List, Sequence, Tuple, Union

import torch

from . import ops as _ops
from .ops import _args
from .ops import reference as _reference
from .ops.boxes import boxes_to_pixels
from .configs import YolactConfig
from .instances import Instances
from .io import as_image_list
from .model import Yolact, YolactOutput
from .engine import check_unchanged, get_engine
from .model.resolve import resolve_model
from .preprocess import preprocess
from .rescore import rescore_masks


@dataclasses.dataclass(frozen=True)
class SegmentOptions:
    """Detection options of :func:`segment`, checked once (:func:`yolact_fast.ops.check_nms_options`).

    Candidates are priors whose best class score is ``> score_threshold``; per-class NMS
    (``nms``: "fast" or "cluster") keeps ``iou <= iou_threshold`` among the ``top_k`` best of
    each class; at most ``max_detections`` are returned, by descending score.
    """

    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    top_k: int = 200
    max_detections: int = 100
    nms: str = "fast"

    def __post_init__(self):
        _ops.check_nms_options(self.score_threshold, self.iou_threshold, self.top_k, self.max_detections, self.nms)
        for name, kind in (
            ("score_threshold", float),
            ("iou_threshold", float),
            ("top_k", int),
            ("max_detections", int),
        ):  # numpy scalars pass the check: store Python numbers
            object.__setattr__(self, name, kind(getattr(self, name)))


def segment(
    images,
    model: Union[Yolact, str, os.PathLike, None] = None,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    nms: str = "fast",
    precision: str = "fp32",
    runtime: str = "torch",
) -> Union[Instances, List[Instances]]:
    """Instances in ``images`` (one image -> Instances; a list or [B,3,H,W] -> list).

    Images: uint8 [3,H,W] RGB or float [3,H,W] in [0,1] tensors, numpy HxWx3 uint8 RGB, PIL
    images or file paths; they run on the model's device, as one batch. ``model``: a
    :class:`Yolact`, a checkpoint path, or None for ``$YOLACT_FAST_WEIGHTS`` if set, else the
    embedded demo model (``yf.load("demo")``, five synthetic shape classes). The detection
    options are those of :class:`SegmentOptions`.

    ``precision`` ("fp32", "bf16", "fp16", "auto") and ``runtime`` ("torch", "onnxruntime",
    "openvino", "auto") choose the network's engine (:mod:`yolact_fast.engine`), built on the
    first call and reused while the model's weights are unchanged;
    :func:`yolact_fast.engine_info` says what it runs. fp32 with the torch runtime is the
    official-parity default.
    """
    options = SegmentOptions(score_threshold, iou_threshold, top_k, max_detections, nms)
    model = resolve_model(model)
    engine = get_engine(model, precision, runtime)
    with engine.scope():
        results = _segment(images, model, engine.network, _ops, options)
    check_unchanged(model, engine.identity)
    return results


def segment_eager(
    images,
    model: Union[Yolact, str, os.PathLike, None],
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    nms: str = "fast",
) -> Union[Instances, List[Instances]]:
    """Like :func:`segment`, with the official-equivalent path: the unfused model and the
    pure-PyTorch reference ops (the benchmark baseline)."""
    options = SegmentOptions(score_threshold, iou_threshold, top_k, max_detections, nms)
    model = resolve_model(model)
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise TypeError(f"segment_eager runs float32 models, this one is {dtype}: call model.float()")
    return _segment(images, model, model, _reference, options)


def _segment(images, model: Yolact, network: torch.nn.Module, backend: ModuleType, options: SegmentOptions):
    finish = postprocessor(model, backend, options)
    image_list, is_batch = as_image_list(images)
    with torch.inference_mode(), network_mode(model, network):
        results = finish(*run_network(image_list, model, network, backend))
    return results if is_batch else results[0]


def run_network(
    image_list: Sequence[torch.Tensor], model: Yolact, network: torch.nn.Module, backend: ModuleType = _ops
):
    """Validated [3,H,W] images -> (raw outputs of one batched forward, priors [P,4], image
    sizes). ``network`` is ``model`` or its inference copy; the caller sets inference and
    eval mode. The second half of :func:`segment` is ``postprocessor(...)(*run_network(...))``."""
    device = model.device
    batch = preprocess(image_list, model.config, device)
    batch = batch.contiguous(memory_format=getattr(network, "input_memory_format", torch.contiguous_format))
    outputs = network(batch)
    priors = backend.make_priors(model.config, tuple(batch.shape[-2:]), device)
    return outputs, priors, [tuple(image.shape[-2:]) for image in image_list]


def postprocessor(model: Yolact, backend: ModuleType = _ops, options: SegmentOptions = SegmentOptions()):
    """``finish(outputs, priors, image_sizes) -> list[Instances]``, which post-processes what
    :func:`run_network` returns with ``backend`` (:mod:`yolact_fast.ops` or
    :mod:`yolact_fast.reference`); callable from any thread, the caller sets inference mode."""
    if not isinstance(options, SegmentOptions):
        raise TypeError(f"options must be a SegmentOptions, got {type(options).__name__}")
    maskiou_net = getattr(model, "maskiou_net", None)

    def finish(outputs: YolactOutput, priors, image_sizes) -> List[Instances]:
        images = [YolactOutput(*(t[i] for t in outputs)) for i in range(len(image_sizes))]
        detections = detect_images(images, priors, options, backend, model.config)
        return [
            instances_of(image, detection, size, backend, model.config, maskiou_net)
            for image, detection, size in zip(images, detections, image_sizes)
        ]

    return finish


def detect_images(
    images: Sequence[YolactOutput],
    priors: torch.Tensor,
    options: SegmentOptions,
    backend: ModuleType,
    config: YolactConfig,
) -> list:
    """``backend.detect`` of each image's raw outputs: (boxes, coeffs, labels, scores). With
    :mod:`yolact_fast.ops` and several images, the padded op per image and one read-back of
    all their counts: on a GPU one synchronization per batch instead of one per image."""

    def arguments(image: YolactOutput) -> tuple:
        return (
            image.loc,
            image.conf_logits,
            image.mask_coeffs,
            priors,
            config.variances,
            options.iou_threshold,
            options.top_k,
            options.score_threshold,
            options.max_detections,
            options.nms,
        )

    if backend is not _ops or len(images) < 2:
        return [backend.detect(*arguments(image)) for image in images]
    padded = [torch.ops.yolact_fast.detect(*_args.detect_args(*arguments(image))) for image in images]
    counts = torch.stack([outputs[-1] for outputs in padded]).tolist()
    return [tuple(t[:n] for t in outputs[:-1]) for outputs, n in zip(padded, counts)]


def postprocess(
    outputs: YolactOutput,
    priors: torch.Tensor,
    image_size: Tuple[int, int],
    options: SegmentOptions,
    backend: ModuleType,
    config: YolactConfig,
    maskiou_net=None,
) -> Instances:
    """Raw outputs of one image (loc [P,4], conf_logits [P,C+1], mask_coeffs [P,k],
    proto [ph,pw,k]) -> Instances at ``image_size`` (H, W), with ``backend``'s ops. With a
    ``maskiou_net`` (YOLACT++), masks are re-scored (:func:`yolact_fast.rescore.rescore_masks`)."""
    detections = detect_images([outputs], priors, options, backend, config)[0]
    return instances_of(outputs, detections, image_size, backend, config, maskiou_net)


def instances_of(
    outputs: YolactOutput,
    detections: tuple,
    image_size: Tuple[int, int],
    backend: ModuleType,
    config: YolactConfig,
    maskiou_net=None,
) -> Instances:
    """One image's detections (boxes, coeffs, labels, scores of ``backend.detect``) ->
    Instances at ``image_size``: masks pasted from its prototypes, boxes in pixels."""
    det_boxes, det_coeffs, labels, det_scores = detections
    masks = backend.paste_masks(outputs.proto, det_coeffs, det_boxes, size=image_size)
    # Official boxes are truncated to integers (.long()); keep them as float32 pixels.
    pixel_boxes = boxes_to_pixels(det_boxes, image_size).long().float()
    instances = Instances(pixel_boxes, det_scores.float(), labels.long(), masks, config.class_names)
    if maskiou_net is not None:
        instances = rescore_masks(instances, maskiou_net, outputs.proto, det_coeffs, det_boxes, backend)
    return instances


def network_mode(model: Yolact, network):
    """:func:`eval_mode` for ``model`` itself; nothing for an engine's network, whose copy of
    the model is made in eval mode and never put back in training (walking ~300 modules twice
    per call would cost ~1 ms on a CPU)."""
    return eval_mode(network) if network is model else contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(network: torch.nn.Module):
    """Run in eval mode (BatchNorm running stats), restoring the caller's mode afterwards."""
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)
