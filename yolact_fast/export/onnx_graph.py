"""ONNX graphs of :func:`yolact_fast.segment` (preprocessing, network, decode, softmax, candidate
selection, per-class top-k, NMS, mask assembly, crop, resize, threshold) as standard ONNX
operators, or of the network alone. The post-network graph follows
:mod:`yolact_fast.reference` operation by operation (same float32 arithmetic, same tie-breaking:
ONNX ``TopK`` puts the lower index first among equal values, as a stable sort does)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .. import ops as _ops
from ..configs import IMAGENET_MEAN_BGR, IMAGENET_STD_BGR, YolactConfig, proto_size
from ..files import atomic_output
from ..model import Yolact
from ..model.fuse import inference_copy
from ..model.resolve import resolve_model
from ..ops._args import image_size_arg
from ..segment import SegmentOptions
from ._optional import refuse_rescoring, require

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(17, 21)
#: Names of the graph outputs: with post-processing, and of the network alone (official names).
SEGMENT_OUTPUTS = ("boxes", "scores", "labels", "masks")
NETWORK_OUTPUTS = ("loc", "conf", "mask", "proto", "priors")
#: Tensor names of the exported network's outputs inside the graphs (YolactOutput's fields).
RAW_OUTPUTS = ("raw_loc", "raw_conf_logits", "raw_mask_coeffs", "raw_proto")


def onnx(
    model,
    path,
    image_size: Optional[Tuple[int, int]] = None,
    postprocess: bool = True,
    nms: str = "fast",
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    opset: int = DEFAULT_OPSET,
    batched_input: bool = False,
) -> str:
    """Write ``model`` (a :class:`Yolact`, a checkpoint path or "demo") as an ONNX file.

    ``postprocess=True``: input ``image`` uint8 RGB [3,H,W] ([1,3,H,W] with
    ``batched_input=True``); outputs ``boxes`` float32 [N,4] (pixels, as
    :func:`yolact_fast.segment`), ``scores`` float32 [N] (descending), ``labels`` int64 [N],
    ``masks`` bool [N,H,W], N <= ``max_detections``. H and W are dynamic unless
    ``image_size`` = (H, W) fixes them. ``nms``: "fast" (Fast NMS: IoU matrix, upper
    triangle, max) or "cluster" (greedy NMS, ONNX ``NonMaxSuppression``).

    ``postprocess=False``: the network alone. Input ``images`` float32 [B,3,S,S], preprocessed
    (S = ``config.max_size``, see :func:`yolact_fast.preprocess.preprocess`); outputs as the
    official network's: ``loc`` [B,P,4], ``conf`` [B,P,C] (softmax, background first), ``mask``
    [B,P,k] (coefficients), ``proto`` [B,ph,pw,k], ``priors`` [P,4] (cx, cy, w, h relative).

    The class names and options are stored in the model's metadata. Returns ``path``.
    """
    proto = onnx_model(
        model, image_size, postprocess, nms, score_threshold, iou_threshold, top_k, max_detections, opset, batched_input
    )
    with atomic_output(os.fspath(path)) as file:
        file.write(proto.SerializeToString())
    return os.fspath(path)


def onnx_model(
    model,
    image_size=None,
    postprocess=True,
    nms="fast",
    score_threshold=0.05,
    iou_threshold=0.5,
    top_k=200,
    max_detections=100,
    opset=DEFAULT_OPSET,
    batched_input=False,
):
    """:func:`onnx` without the file: the checked ``onnx.ModelProto``."""
    onnx_lib = require("onnx")
    model = resolve_model(model)
    _check_exportable(model, opset)
    options = SegmentOptions(score_threshold, iou_threshold, top_k, max_detections, nms)
    if postprocess:
        refuse_rescoring(model)
    if image_size is not None:
        if not postprocess:
            raise ValueError(
                "image_size applies to postprocess=True graphs; the network alone "
                f"takes [B,3,{model.config.max_size},{model.config.max_size}]"
            )
        image_size = image_size_arg(image_size)
    network = _network_graph(model, opset, dynamic_batch=not postprocess)
    builder = _GraphBuilder(network, opset)
    if postprocess:
        _add_segment_graph(
            builder,
            model.config,
            image_size,
            batched_input,
            options.nms,
            options.score_threshold,
            options.iou_threshold,
            options.top_k,
            options.max_detections,
        )
    else:
        _add_network_outputs(builder, model.config)
    graph_model = builder.model
    metadata = {
        "yolact_fast.config": model.config.name,
        "yolact_fast.class_names": json.dumps(list(model.config.class_names)),
        "yolact_fast.postprocess": json.dumps(postprocess),
        "yolact_fast.options": json.dumps(dataclasses.asdict(options)),
    }
    onnx_lib.helper.set_model_props(graph_model, metadata)
    onnx_lib.checker.check_model(graph_model)
    return graph_model


def _check_exportable(model: Yolact, opset) -> None:
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise TypeError(f"export takes float32 models, this one is {dtype}: call model.float()")
    if isinstance(opset, bool) or opset not in SUPPORTED_OPSETS:
        raise ValueError(f"opset must be one of {list(SUPPORTED_OPSETS)}, got {opset!r}")


def network_onnx(model, opset: int = DEFAULT_OPSET):
    """The network alone as an ``onnx.ModelProto`` with its raw outputs, for runtimes that run
    the network while :mod:`yolact_fast.ops` post-processes (the inference engine): input
    ``images`` float32 [B,3,S,S] preprocessed, outputs ``raw_loc`` [B,P,4], ``raw_conf_logits``
    [B,P,C], ``raw_mask_coeffs`` [B,P,k], ``raw_proto`` [B,ph,pw,k] (YolactOutput's fields)."""
    model = resolve_model(model)
    _check_exportable(model, opset)
    return _network_graph(model, opset, dynamic_batch=True)


def _network_graph(model: Yolact, opset: int, dynamic_batch: bool):
    """The network [B,3,S,S] -> (loc, conf_logits, mask_coeffs, proto) as an ONNX ModelProto.

    Exported from the BatchNorm-folded copy (no oneDNN packing, NCHW) by the TorchScript-based
    exporter, which handles this static network without the onnxscript dependency.
    """
    onnx_lib = require("onnx")
    network = inference_copy(model, channels_last=False, pack_cpu=False)
    size = model.config.max_size
    example = torch.zeros(1, 3, size, size, device=model.device)
    axes = {name: {0: "batch"} for name in ["images", *RAW_OUTPUTS]} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):  # the legacy exporter's notices
            warnings.simplefilter("ignore", category)
        torch.onnx.export(
            network,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=list(RAW_OUTPUTS),
            dynamic_axes=axes,
        )
    return onnx_lib.load_from_string(buffer.getvalue())


class _GraphBuilder:
    """Appends nodes and constants to an exported network graph, with unique names."""

    def __init__(self, model, opset: int):
        self.onnx = require("onnx")
        self.model = model
        self.graph = model.graph
        self.opset = opset
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"yf/{hint}_{self.count}"

    def const(self, value, dtype=np.float32, hint: str = "const") -> str:
        name = self.name(hint)
        array = np.asarray(value, dtype=dtype)
        self.graph.initializer.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attributes):
        names = [self.name(op_type) for _ in range(outputs)]
        self.graph.node.append(self.onnx.helper.make_node(op_type, list(inputs), names, **attributes))
        return names[0] if outputs == 1 else tuple(names)

    # helpers that hide opset differences and keep the graph code short
    def reduce_max(self, x: str, axis: int, keepdims: int = 0) -> str:
        if self.opset >= 18:
            return self.op("ReduceMax", x, self.const([axis], np.int64), keepdims=keepdims)
        return self.op("ReduceMax", x, axes=[axis], keepdims=keepdims)

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        start, end, axis = (self.const([v], np.int64) for v in (start, end, axis))
        return self.op("Slice", x, start, end, axis)

    def unsqueeze(self, x: str, axis: int) -> str:
        return self.op("Unsqueeze", x, self.const([axis], np.int64))

    def squeeze(self, x: str, axis: int) -> str:
        return self.op("Squeeze", x, self.const([axis], np.int64))

    def resize_bilinear(self, x: str, sizes: str) -> str:
        """F.interpolate(mode="bilinear", align_corners=False, antialias=False) to ``sizes``."""
        return self.op("Resize", x, "", "", sizes, mode="linear", coordinate_transformation_mode="pytorch_half_pixel")

    def move_to_front(self, first: int) -> None:
        """Move the nodes from index ``first`` on before all others (topological order)."""
        nodes = list(self.graph.node)
        del self.graph.node[:]
        self.graph.node.extend(nodes[first:] + nodes[:first])

    def set_input(self, name: str, elem_type: int, shape) -> None:
        del self.graph.input[:]
        self.graph.input.append(self.onnx.helper.make_tensor_value_info(name, elem_type, shape))

    def set_outputs(self, outputs: Sequence[Tuple[str, str, int, list]]) -> None:
        """Rename tensors to the public output names: (tensor, name, elem_type, shape)."""
        del self.graph.output[:]
        for tensor, name, elem_type, shape in outputs:
            self.op_identity(tensor, name)
            self.graph.output.append(self.onnx.helper.make_tensor_value_info(name, elem_type, shape))

    def op_identity(self, tensor: str, name: str) -> None:
        self.graph.node.append(self.onnx.helper.make_node("Identity", [tensor], [name]))


def _add_network_outputs(g: _GraphBuilder, config: YolactConfig) -> None:
    """Network alone: official outputs (softmax conf) plus the constant priors."""
    t = g.onnx.TensorProto
    loc, conf_logits, mask_coeffs, proto = RAW_OUTPUTS
    conf = g.op("Softmax", conf_logits, axis=-1)
    priors = g.const(_ops.make_priors(config, (config.max_size,) * 2).numpy(), hint="priors")
    g.set_outputs(
        [
            (loc, "loc", t.FLOAT, ["batch", "priors", 4]),
            (conf, "conf", t.FLOAT, ["batch", "priors", config.num_classes]),
            (mask_coeffs, "mask", t.FLOAT, ["batch", "priors", config.mask_dim]),
            (proto, "proto", t.FLOAT, ["batch", *proto_size((config.max_size,) * 2), config.mask_dim]),
            (priors, "priors", t.FLOAT, ["priors", 4]),
        ]
    )


def _add_segment_graph(
    g: _GraphBuilder,
    config: YolactConfig,
    image_size,
    batched_input: bool,
    nms: str,
    score_threshold: float,
    iou_threshold: float,
    top_k: int,
    max_detections: int,
) -> None:
    """image -> preprocessing -> (the network's nodes) -> detections, as yf.segment."""
    t = g.onnx.TensorProto
    height, width = image_size if image_size is not None else ("height", "width")
    network_nodes = len(g.graph.node)
    # [3,H,W] or [1,3,H,W]: keep the last three dims.
    image = g.op("Reshape", "image", g.op("Shape", "image", start=-3))
    image_hw = g.op("Shape", image, start=1)  # int64 [2]
    g.op_identity(_preprocess(g, config, image), "images")
    g.move_to_front(first=network_nodes)  # the network's nodes consume "images"
    detections = _add_postprocess(g, config, image_hw, nms, score_threshold, iou_threshold, top_k, max_detections)
    g.set_input("image", t.UINT8, [1] * batched_input + [3, height, width])
    _set_detection_outputs(g, detections, height, width)


def _set_detection_outputs(g: _GraphBuilder, detections, height, width) -> None:
    t = g.onnx.TensorProto
    shapes = (
        [t.FLOAT, ["detections", 4]],
        [t.FLOAT, ["detections"]],
        [t.INT64, ["detections"]],
        [t.BOOL, ["detections", height, width]],
    )
    g.set_outputs([(tensor, name, *shape) for tensor, name, shape in zip(detections, SEGMENT_OUTPUTS, shapes)])


def _add_postprocess(
    g: _GraphBuilder,
    config: YolactConfig,
    image_hw: str,
    nms: str,
    score_threshold: float,
    iou_threshold: float,
    top_k: int,
    max_detections: int,
):
    """Raw outputs (loc, conf_logits, mask_coeffs, proto; batch of one) and the image size
    (int64 [2]) -> (boxes [N,4] pixels, scores [N], labels [N], masks bool [N,H,W])."""
    loc, conf_logits, coeffs, proto = (g.squeeze(name, 0) for name in RAW_OUTPUTS)
    boxes = _decode(g, config, loc)
    scores = g.op(
        "Transpose", g.slice(g.op("Softmax", conf_logits, axis=-1), 1, config.num_classes, axis=1), perm=[1, 0]
    )  # [C,P]
    det_boxes, det_coeffs, labels, det_scores = _per_class_nms(
        g, boxes, scores, coeffs, nms, score_threshold, iou_threshold, top_k, max_detections
    )
    masks = _paste_masks(g, config, proto, det_coeffs, det_boxes, image_hw)
    return _boxes_to_pixels(g, det_boxes, image_hw), det_scores, labels, masks


def postprocess_graph(
    config: YolactConfig,
    nms: str = "fast",
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
    opset: int = DEFAULT_OPSET,
):
    """The post-network graph alone (inputs: :data:`RAW_OUTPUTS` of one image, with a batch dim
    of one, and ``image_hw`` int64 [2]); lets tests drive it with arbitrary raw outputs."""
    onnx_lib = require("onnx")
    helper, t = onnx_lib.helper, onnx_lib.TensorProto
    ph, pw = proto_size((config.max_size,) * 2)
    shapes = (
        [1, "priors", 4],
        [1, "priors", config.num_classes],
        [1, "priors", config.mask_dim],
        [1, ph, pw, config.mask_dim],
    )
    inputs = [helper.make_tensor_value_info(name, t.FLOAT, shape) for name, shape in zip(RAW_OUTPUTS, shapes)]
    inputs.append(helper.make_tensor_value_info("image_hw", t.INT64, [2]))
    model = helper.make_model(
        helper.make_graph([], "yolact_postprocess", inputs, []), opset_imports=[helper.make_opsetid("", opset)]
    )
    g = _GraphBuilder(model, opset)
    detections = _add_postprocess(g, config, "image_hw", nms, score_threshold, iou_threshold, top_k, max_detections)
    _set_detection_outputs(g, detections, "height", "width")
    onnx_lib.checker.check_model(model)
    return model


def _preprocess(g: _GraphBuilder, config: YolactConfig, image: str) -> str:
    """uint8 [3,H,W] -> float [1,3,S,S] (preprocess.preprocess)."""
    batch = g.op("Cast", g.unsqueeze(image, 0), to=g.onnx.TensorProto.FLOAT)
    size = config.max_size
    resized = g.resize_bilinear(batch, g.const([1, 3, size, size], np.int64))
    if config.normalize == "unit":
        return g.op("Div", resized, g.const(255.0))
    mean = g.const(np.array(IMAGENET_MEAN_BGR[::-1]).reshape(1, 3, 1, 1))
    std = g.const(np.array(IMAGENET_STD_BGR[::-1]).reshape(1, 3, 1, 1))
    return g.op("Div", g.op("Sub", resized, mean), std)


def _decode(g: _GraphBuilder, config: YolactConfig, loc: str) -> str:
    """reference.decode_boxes with the priors of the config's input size as constants."""
    priors = _ops.make_priors(config, (config.max_size,) * 2).numpy()
    prior_xy, prior_wh = g.const(priors[:, :2], hint="prior_xy"), g.const(priors[:, 2:], hint="prior_wh")
    variance_xy, variance_wh = (g.const(v) for v in config.variances)
    loc_xy, loc_wh = g.slice(loc, 0, 2, axis=1), g.slice(loc, 2, 4, axis=1)
    centers = g.op("Add", prior_xy, g.op("Mul", g.op("Mul", loc_xy, variance_xy), prior_wh))
    sizes = g.op("Mul", prior_wh, g.op("Exp", g.op("Mul", loc_wh, variance_wh)))
    top_left = g.op("Sub", centers, g.op("Div", sizes, g.const(2.0)))
    return g.op("Concat", top_left, g.op("Add", sizes, top_left), axis=1)


def _per_class_nms(g: _GraphBuilder, boxes, scores, coeffs, nms, score_threshold, iou_threshold, top_k, max_detections):
    """reference._per_class_nms: candidates, per-class top-k, survivors, class-major flatten,
    sort, cut. Returns (boxes [N,4] relative, coeffs [N,k], labels [N], scores [N])."""
    int64 = np.int64
    # Candidates: best class score > threshold and a finite box.
    nonfinite = g.op("Or", g.op("IsNaN", boxes), g.op("IsInf", boxes))
    any_nonfinite = g.reduce_max(g.op("Cast", nonfinite, to=g.onnx.TensorProto.FLOAT), axis=1)
    candidate = g.op(
        "And",
        g.op("Greater", g.reduce_max(scores, axis=0), g.const(score_threshold)),
        g.op("Not", g.op("Cast", any_nonfinite, to=g.onnx.TensorProto.BOOL)),
    )
    index = g.squeeze(g.op("NonZero", candidate), 0)
    boxes, coeffs = g.op("Gather", boxes, index, axis=0), g.op("Gather", coeffs, index, axis=0)
    scores = g.op("Gather", scores, index, axis=1)  # [C, Pc]

    # Per class, the top_k best (ties: lower index first, as a stable sort).
    k = g.op("Min", g.const([top_k], int64), g.slice(g.op("Shape", scores), 1, 2, axis=0))
    top_scores, top_index = g.op("TopK", scores, k, axis=1, largest=1, sorted=1, outputs=2)
    class_boxes = g.op("Gather", boxes, top_index, axis=0)  # [C, K, 4]
    if nms == "fast":
        keep = _fast_survivors(g, class_boxes, iou_threshold)
    else:
        keep = _greedy_survivors(g, class_boxes, top_scores, k, iou_threshold)

    # Flatten class-major, sort by score (stable), keep max_detections.
    kept = g.squeeze(g.op("NonZero", g.op("Reshape", keep, g.const([-1], int64))), 0)
    kept_scores = g.op("Gather", g.op("Reshape", top_scores, g.const([-1], int64)), kept, axis=0)
    n = g.op("Min", g.const([max_detections], int64), g.op("Shape", kept_scores))
    det_scores, order = g.op("TopK", kept_scores, n, axis=0, largest=1, sorted=1, outputs=2)
    flat = g.op("Gather", kept, order, axis=0)  # indices into the [C*K] ranking
    labels = g.op("Div", flat, g.op("Max", k, g.const([1], int64)))  # k = 0: nothing to divide
    det_boxes = g.op("Gather", g.op("Reshape", class_boxes, g.const([-1, 4], int64)), flat, axis=0)
    prior = g.op("Gather", g.op("Reshape", top_index, g.const([-1], int64)), flat, axis=0)
    det_coeffs = g.op("Gather", coeffs, prior, axis=0)
    return det_boxes, det_coeffs, labels, det_scores


def _box_iou_self(g: _GraphBuilder, boxes: str) -> str:
    """boxes.box_iou(boxes, boxes): [C,K,4] -> [C,K,K], same arithmetic order."""
    lo, hi = g.slice(boxes, 0, 2, axis=2), g.slice(boxes, 2, 4, axis=2)
    max_xy = g.op("Min", g.unsqueeze(hi, 2), g.unsqueeze(hi, 1))
    min_xy = g.op("Max", g.unsqueeze(lo, 2), g.unsqueeze(lo, 1))
    extent = g.op("Clip", g.op("Sub", max_xy, min_xy), g.const(0.0))
    inter = g.op("Mul", g.slice(extent, 0, 1, axis=3), g.slice(extent, 1, 2, axis=3))
    inter = g.squeeze(inter, 3)
    size = g.op("Sub", hi, lo)
    area = g.squeeze(g.op("Mul", g.slice(size, 0, 1, axis=2), g.slice(size, 1, 2, axis=2)), 2)
    union = g.op("Sub", g.op("Add", g.unsqueeze(area, 2), g.unsqueeze(area, 1)), inter)
    return g.op("Div", inter, union)


def _fast_survivors(g: _GraphBuilder, class_boxes: str, iou_threshold: float) -> str:
    """Fast NMS: max IoU with every higher-ranked box of the class (upper triangle) <= thr.

    A NaN IoU (two zero-area boxes) suppresses, as torch's NaN-propagating max makes it in
    the reference; ONNX ReduceMax leaves NaN handling open, so NaN becomes +inf first."""
    iou = g.op("Trilu", _box_iou_self(g, class_boxes), g.const(1, np.int64), upper=1)
    iou = g.op("Where", g.op("IsNaN", iou), g.const(np.inf), iou)
    return g.op("LessOrEqual", g.reduce_max(iou, axis=1), g.const(iou_threshold))


def _greedy_survivors(g: _GraphBuilder, class_boxes: str, top_scores: str, k: str, iou_threshold: float) -> str:
    """Greedy NMS per class by NonMaxSuppression: each class is one batch entry of K ranked
    boxes; the selected (class, box) pairs are scattered into a [C,K] keep mask."""
    selected = g.op(
        "NonMaxSuppression", class_boxes, g.unsqueeze(top_scores, 1), k, g.const([iou_threshold]), center_point_box=0
    )
    pairs = g.op("Gather", selected, g.const([0, 2], np.int64), axis=1)  # (class, box)
    empty = g.op(
        "ConstantOfShape",
        g.op("Shape", top_scores),
        value=g.onnx.helper.make_tensor("zero", g.onnx.TensorProto.FLOAT, [1], [0.0]),
    )
    ones = g.op("Expand", g.const([1.0]), g.slice(g.op("Shape", pairs), 0, 1, axis=0))
    keep = g.op("ScatterND", empty, pairs, ones)
    return g.op("Cast", keep, to=g.onnx.TensorProto.BOOL)


def _crop_bounds(g: _GraphBuilder, lo: str, hi: str, size: str, padding: float):
    """boxes.crop_bounds: scaled, ordered, padded, clamped to [0, size]."""
    lo, hi = g.op("Mul", lo, size), g.op("Mul", hi, size)
    lo, hi = g.op("Min", lo, hi), g.op("Max", lo, hi)
    lo = g.op("Clip", g.op("Sub", lo, g.const(padding)), g.const(0.0))
    hi = g.op("Min", g.op("Add", hi, g.const(padding)), size)
    return lo, hi


def _box_columns(g: _GraphBuilder, boxes: str):
    return [g.squeeze(g.slice(boxes, i, i + 1, axis=1), 1) for i in range(4)]


def _paste_masks(g: _GraphBuilder, config: YolactConfig, proto: str, coeffs: str, boxes: str, image_hw: str) -> str:
    """reference.paste_masks: sigmoid(proto @ coeffs.T), crop, bilinear resize, > 0.5."""
    ph, pw = proto_size((config.max_size,) * 2)
    masks = g.op("Sigmoid", g.op("MatMul", proto, g.op("Transpose", coeffs, perm=[1, 0])))
    x1, y1, x2, y2 = _box_columns(g, boxes)
    x1, x2 = _crop_bounds(g, x1, x2, g.const(float(pw)), 1.0)
    y1, y2 = _crop_bounds(g, y1, y2, g.const(float(ph)), 1.0)
    cols = g.const(np.arange(pw, dtype=np.float32).reshape(1, pw, 1))
    rows = g.const(np.arange(ph, dtype=np.float32).reshape(ph, 1, 1))
    inside = g.op(
        "And",
        g.op("And", g.op("GreaterOrEqual", cols, x1), g.op("Less", cols, x2)),
        g.op("And", g.op("GreaterOrEqual", rows, y1), g.op("Less", rows, y2)),
    )
    masks = g.op("Mul", masks, g.op("Cast", inside, to=g.onnx.TensorProto.FLOAT))  # [ph,pw,N]
    masks = g.unsqueeze(g.op("Transpose", masks, perm=[2, 0, 1]), 0)  # [1,N,ph,pw]
    sizes = g.op("Concat", g.slice(g.op("Shape", masks), 0, 2, axis=0), image_hw, axis=0)
    masks = g.squeeze(g.resize_bilinear(masks, sizes), 0)
    return g.op("Greater", masks, g.const(0.5))


def _boxes_to_pixels(g: _GraphBuilder, boxes: str, image_hw: str) -> str:
    """boxes.boxes_to_pixels, then truncation to integers (segment's ``.long().float()``)."""
    hw = g.op("Cast", image_hw, to=g.onnx.TensorProto.FLOAT)
    height, width = g.slice(hw, 0, 1, axis=0), g.slice(hw, 1, 2, axis=0)
    x1, y1, x2, y2 = _box_columns(g, boxes)
    x1, x2 = _crop_bounds(g, x1, x2, width, 0.0)
    y1, y2 = _crop_bounds(g, y1, y2, height, 0.0)
    stacked = g.op("Concat", *(g.unsqueeze(v, 1) for v in (x1, y1, x2, y2)), axis=1)
    truncated = g.op("Cast", stacked, to=g.onnx.TensorProto.INT64)  # toward zero, as .long()
    return g.op("Cast", truncated, to=g.onnx.TensorProto.FLOAT)
