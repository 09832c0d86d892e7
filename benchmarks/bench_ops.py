"""Kernel timings on the official shapes (19,248 priors, 80 foreground classes,
138x138x32 prototypes, 100 detections, 480x640 output), each op beside its
pure-PyTorch reference and, where one exists, a peer from torchvision.

Run: pytest benchmarks/bench_ops.py --benchmark-columns=median,min,rounds
"""

import pytest
import torch
import torchvision

from yolact_fast import ops, reference

from golden_data import load_golden  # tests/ is on sys.path (benchmarks/conftest.py)
from inputs import coco_like_detections

CASE = "golden_yolact_base_s0_480x640.npz"
SIZE = (480, 640)


@pytest.fixture(scope="module")
def golden():
    g = load_golden(CASE)
    g["scores"] = torch.softmax(g["conf_logits"], -1).t()[1:].contiguous()
    return g


@pytest.fixture(scope="module")
def coco_like():
    """100 detections with box sides log-uniform in [5%, 90%] of the image."""
    return coco_like_detections(100, torch.Generator().manual_seed(0))


# --- decode -----------------------------------------------------------------------


@pytest.mark.benchmark(group="decode_boxes 19248 priors")
def test_decode_reference(benchmark, golden):
    benchmark(reference.decode_boxes, golden["loc"], golden["priors"])


@pytest.mark.benchmark(group="decode_boxes 19248 priors")
def test_decode_kernel(benchmark, golden):
    benchmark(ops.decode_boxes, golden["loc"], golden["priors"])


# --- NMS --------------------------------------------------------------------------


def nms_args(golden):
    return golden["decoded_boxes"], golden["scores"], golden["mask_coeffs"]


@pytest.mark.benchmark(group="nms 19248 priors x 80 classes")
def test_nms_reference(benchmark, golden):
    benchmark(reference.fast_nms, *nms_args(golden))


@pytest.mark.benchmark(group="nms 19248 priors x 80 classes")
def test_nms_kernel_fast(benchmark, golden):
    benchmark(ops.fast_nms, *nms_args(golden))


@pytest.mark.benchmark(group="nms 19248 priors x 80 classes")
def test_nms_kernel_cluster(benchmark, golden):
    benchmark(ops.fast_nms, *nms_args(golden), method="cluster")


@pytest.mark.benchmark(group="nms 19248 priors x 80 classes")
def test_nms_torchvision_batched_nms(benchmark, golden):
    """Peer: torchvision's greedy batched_nms on the same per-class top-200 candidates
    (the candidate selection and top-k are done outside the timed call, in its favour)."""
    boxes, scores, _ = nms_args(golden)
    keep = reference.candidate_mask(boxes, scores, 0.05)
    cand_boxes, cand_scores = boxes[keep], scores[:, keep]
    top_scores, idx = cand_scores.topk(200, dim=1)
    flat_boxes = cand_boxes[idx.reshape(-1)]
    flat_scores = top_scores.reshape(-1)
    classes = torch.arange(80)[:, None].expand(80, 200).reshape(-1)

    def run():
        kept = torchvision.ops.batched_nms(flat_boxes, flat_scores, classes, 0.5)
        return kept[:100]

    benchmark(run)


# --- detect: decode + softmax + NMS from the raw head outputs ------------------------


def detect_args(golden):
    return golden["loc"], golden["conf_logits"], golden["mask_coeffs"], golden["priors"]


@pytest.mark.benchmark(group="detect (decode + softmax + NMS) 19248 priors x 81 classes")
def test_detect_reference(benchmark, golden):
    benchmark(reference.detect, *detect_args(golden))


@pytest.mark.benchmark(group="detect (decode + softmax + NMS) 19248 priors x 81 classes")
def test_detect_kernel_fast(benchmark, golden):
    benchmark(ops.detect, *detect_args(golden))


@pytest.mark.benchmark(group="detect (decode + softmax + NMS) 19248 priors x 81 classes")
def test_detect_kernel_cluster(benchmark, golden):
    benchmark(ops.detect, *detect_args(golden), method="cluster")


@pytest.mark.benchmark(group="detect (decode + softmax + NMS) 19248 priors x 81 classes")
def test_detect_torchvision_batched_nms(benchmark, golden):
    """Peer: the same sequence with torchvision's greedy batched_nms: our decode, torch
    softmax, candidate selection and per-class top-200, batched_nms, top 100."""
    loc, logits, coeffs, priors = detect_args(golden)

    def run():
        boxes = ops.decode_boxes(loc, priors)
        scores = torch.softmax(logits, -1)[:, 1:]
        keep = (scores.max(dim=1).values > 0.05) & torch.isfinite(boxes).all(dim=1)
        cand_boxes, cand_scores, cand_coeffs = boxes[keep], scores[keep].t(), coeffs[keep]
        top_scores, idx = cand_scores.topk(min(200, cand_scores.shape[1]), dim=1)
        classes = torch.arange(idx.shape[0])[:, None].expand_as(idx).reshape(-1)
        kept = torchvision.ops.batched_nms(cand_boxes[idx.reshape(-1)], top_scores.reshape(-1), classes, 0.5)[:100]
        prior = idx.reshape(-1)[kept]
        return cand_boxes[prior], cand_coeffs[prior], classes[kept], top_scores.reshape(-1)[kept]

    benchmark(run)


# --- masks ------------------------------------------------------------------------


@pytest.mark.benchmark(group="assemble_masks 100 dets (golden)")
def test_assemble_reference(benchmark, golden):
    benchmark(reference.assemble_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"])


@pytest.mark.benchmark(group="assemble_masks 100 dets (golden)")
def test_assemble_kernel(benchmark, golden):
    benchmark(ops.assemble_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"])


@pytest.mark.benchmark(group="paste_masks 100 dets -> 480x640 (golden boxes)")
def test_paste_reference_golden(benchmark, golden):
    benchmark(reference.paste_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"], SIZE)


@pytest.mark.benchmark(group="paste_masks 100 dets -> 480x640 (golden boxes)")
def test_paste_kernel_golden(benchmark, golden):
    benchmark(ops.paste_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"], SIZE)


@pytest.mark.benchmark(group="paste_masks 100 dets -> 480x640 (COCO-like boxes, 5-90% sides)")
def test_paste_reference_coco_like(benchmark, coco_like):
    benchmark(reference.paste_masks, *coco_like, SIZE)


@pytest.mark.benchmark(group="paste_masks 100 dets -> 480x640 (COCO-like boxes, 5-90% sides)")
def test_paste_kernel_coco_like(benchmark, coco_like):
    benchmark(ops.paste_masks, *coco_like, SIZE)


# --- the whole post-network path ----------------------------------------------------


def post_network_reference(golden):
    """The official sequence: decode, softmax, Fast NMS, masks pasted at full size."""
    boxes, coeffs, labels, scores = reference.detect(*detect_args(golden))
    return reference.paste_masks(golden["proto"], coeffs, boxes, SIZE), labels, scores


def post_network_kernels(golden):
    boxes, coeffs, labels, scores = ops.detect(*detect_args(golden))
    return ops.paste_masks(golden["proto"], coeffs, boxes, SIZE), labels, scores


@pytest.mark.benchmark(group="post-network path: detect + paste_masks (golden)")
def test_post_network_reference(benchmark, golden):
    benchmark(post_network_reference, golden)


@pytest.mark.benchmark(group="post-network path: detect + paste_masks (golden)")
def test_post_network_kernels(benchmark, golden):
    benchmark(post_network_kernels, golden)


# --- the fused copy's key: a checksum of every weight -----------------------------------


@pytest.fixture(scope="module")
def base_weights():
    """yolact_base's 660 parameters and buffers (50 M values), as segment checksums them."""
    import yolact_fast as yf
    from yolact_fast.model.weight_rule import rule_weights

    model = yf.load(rule_weights("yolact_base", 0), config="yolact_base")
    return list(model.parameters()) + list(model.buffers())


@pytest.mark.benchmark(group="bits_checksum of yolact_base's 660 weight tensors")
def test_checksum_reference(benchmark, base_weights):
    benchmark.pedantic(reference.bits_checksum, args=(base_weights,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="bits_checksum of yolact_base's 660 weight tensors")
def test_checksum_kernel(benchmark, base_weights):
    benchmark(ops.bits_checksum, base_weights)
