"""GPU timings on the official shapes (19,248 priors, 81 classes, 138x138x32 prototypes, 100
detections, 480x640 output): each CUDA op beside its pure-PyTorch reference on the same GPU
and, where one exists, a torchvision / torch.nn.functional peer; ``yf.segment`` end to end
beside the official-equivalent eager path. Every timed call ends with
``torch.cuda.synchronize()``, so a round is the device time of the call plus launch cost.

Run on a machine with a GPU and a CUDA build of the extension:
    pytest benchmarks/bench_cuda.py --benchmark-columns=median,min,rounds
Skipped without a GPU. tools/cuda_report.py gives the static (modelled) picture.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import yolact_fast as yf
from yolact_fast import ops, reference
from yolact_fast.configs import get_config
from inputs import coco_like_detections  # tests/ is on sys.path (benchmarks/conftest.py)

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.cuda_kernels_available()),
    reason="needs a CUDA GPU and the extension built with its CUDA kernels",
)

GOLDEN = Path(os.environ.get("YOLACT_FAST_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden"))
CASE = "golden_yolact_base_s0_480x640.npz"
SIZE = (480, 640)
CUDA = "cuda"


def synced(function, *args, **kwargs):
    out = function(*args, **kwargs)
    torch.cuda.synchronize()
    return out


def run(benchmark, function, *args, **kwargs):
    synced(function, *args, **kwargs)  # warm-up: allocator, cuBLAS/cub workspaces, lazy init
    return benchmark(synced, function, *args, **kwargs)


@pytest.fixture(scope="module")
def golden():
    data = np.load(GOLDEN / CASE)
    g = {k: torch.from_numpy(np.ascontiguousarray(data[k])).to(CUDA) for k in data.files if k not in ("meta", "image")}
    g["scores"] = torch.softmax(g["conf_logits"], -1).t()[1:].contiguous()
    return g


@pytest.fixture(scope="module")
def coco_like():
    """100 detections with box sides log-uniform in [5%, 90%] of the image."""
    return tuple(t.to(CUDA) for t in coco_like_detections(100, torch.Generator().manual_seed(0)))


# --- priors and decode -------------------------------------------------------------------------


@pytest.mark.benchmark(group="cuda make_priors yolact_base 550x550 (uncached)")
def test_cuda_make_priors_kernel(benchmark):
    device = torch.device(CUDA, torch.cuda.current_device())
    run(benchmark, lambda: ops.make_priors(get_config("yolact_base"), (550, 550), device, cached=False))


@pytest.mark.benchmark(group="cuda decode_boxes 19248 priors")
def test_cuda_decode_reference(benchmark, golden):
    run(benchmark, reference.decode_boxes, golden["loc"], golden["priors"])


@pytest.mark.benchmark(group="cuda decode_boxes 19248 priors")
def test_cuda_decode_kernel(benchmark, golden):
    run(benchmark, ops.decode_boxes, golden["loc"], golden["priors"])


# --- NMS ---------------------------------------------------------------------------------------


def nms_args(golden):
    return golden["decoded_boxes"], golden["scores"], golden["mask_coeffs"]


def padded_nms(*args, method="fast"):
    """The op with its padded outputs and count: no host synchronisation inside."""
    return torch.ops.yolact_fast.fast_nms(*args, 0.5, 200, 0.05, 100, method)


@pytest.mark.benchmark(group="cuda nms 19248 priors x 80 classes")
def test_cuda_nms_reference(benchmark, golden):
    run(benchmark, reference.fast_nms, *nms_args(golden))


@pytest.mark.benchmark(group="cuda nms 19248 priors x 80 classes")
def test_cuda_nms_kernel_fast(benchmark, golden):
    run(benchmark, padded_nms, *nms_args(golden))


@pytest.mark.benchmark(group="cuda nms 19248 priors x 80 classes")
def test_cuda_nms_kernel_cluster(benchmark, golden):
    run(benchmark, padded_nms, *nms_args(golden), method="cluster")


def batched_nms_candidates(golden):
    """(boxes, scores, class ids) of the per-class top-200 candidates, flattened: the input
    of the torchvision batched_nms peer, built outside the timed call (in its favour)."""
    boxes, scores, _ = nms_args(golden)
    keep = reference.candidate_mask(boxes, scores, 0.05)
    cand_boxes, cand_scores = boxes[keep], scores[:, keep]
    top_scores, idx = cand_scores.topk(200, dim=1)
    classes = torch.arange(scores.shape[0], device=scores.device)[:, None].expand(-1, 200).reshape(-1)
    return cand_boxes[idx.reshape(-1)], top_scores.reshape(-1), classes


@pytest.mark.benchmark(group="cuda nms 19248 priors x 80 classes")
def test_cuda_nms_torchvision_batched_nms(benchmark, golden):
    """Peer: torchvision's greedy batched_nms on the per-class top-200 candidates."""
    flat_boxes, flat_scores, classes = batched_nms_candidates(golden)
    run(benchmark, lambda: torchvision.ops.batched_nms(flat_boxes, flat_scores, classes, 0.5)[:100])


if hasattr(ops, "detect"):

    @pytest.mark.benchmark(group="cuda nms 19248 priors x 80 classes")
    def test_cuda_detect_kernel(benchmark, golden):
        """decode + softmax + candidate selection + Fast NMS from the raw head outputs."""
        run(benchmark, ops.detect, golden["loc"], golden["conf_logits"], golden["mask_coeffs"], golden["priors"])


# --- masks -------------------------------------------------------------------------------------


@pytest.mark.benchmark(group="cuda assemble_masks 100 dets (golden)")
def test_cuda_assemble_reference(benchmark, golden):
    run(benchmark, reference.assemble_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"])


@pytest.mark.benchmark(group="cuda assemble_masks 100 dets (golden)")
def test_cuda_assemble_kernel(benchmark, golden):
    run(benchmark, ops.assemble_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"])


def interpolate_gt(masks, size, threshold=0.5):
    """Peer: F.interpolate + threshold of already assembled masks (what the paste replaces)."""
    return F.interpolate(masks[None], size, mode="bilinear", align_corners=False)[0] > threshold


@pytest.mark.benchmark(group="cuda paste_masks 100 dets -> 480x640 (golden boxes)")
def test_cuda_paste_reference_golden(benchmark, golden):
    run(benchmark, reference.paste_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"], SIZE)


@pytest.mark.benchmark(group="cuda paste_masks 100 dets -> 480x640 (golden boxes)")
def test_cuda_paste_interpolate_peer_golden(benchmark, golden):
    masks = reference.assemble_masks(golden["proto"], golden["det_mask_coeffs"], golden["det_box"])
    run(benchmark, interpolate_gt, masks, SIZE)


@pytest.mark.benchmark(group="cuda paste_masks 100 dets -> 480x640 (golden boxes)")
def test_cuda_paste_kernel_golden(benchmark, golden):
    run(benchmark, ops.paste_masks, golden["proto"], golden["det_mask_coeffs"], golden["det_box"], SIZE)


@pytest.mark.benchmark(group="cuda paste_masks 100 dets -> 480x640 (COCO-like boxes)")
def test_cuda_paste_reference_coco_like(benchmark, coco_like):
    run(benchmark, reference.paste_masks, *coco_like, SIZE)


@pytest.mark.benchmark(group="cuda paste_masks 100 dets -> 480x640 (COCO-like boxes)")
def test_cuda_paste_kernel_coco_like(benchmark, coco_like):
    run(benchmark, ops.paste_masks, *coco_like, SIZE)


# --- post-network path and segment ----------------------------------------------------------------


def post_network_reference(golden):
    boxes = reference.decode_boxes(golden["loc"], golden["priors"])
    scores = torch.softmax(golden["conf_logits"], dim=-1)[:, 1:].t().contiguous()
    boxes, coeffs, labels, scores = reference.fast_nms(boxes, scores, golden["mask_coeffs"])
    return reference.paste_masks(golden["proto"], coeffs, boxes, SIZE), labels, scores


def post_network_kernels(golden):
    """As segment runs it on a GPU: padded NMS outputs, no host synchronisation."""
    if hasattr(ops, "detect"):
        boxes, coeffs, labels, scores = ops.detect(
            golden["loc"], golden["conf_logits"], golden["mask_coeffs"], golden["priors"]
        )
    else:
        boxes = ops.decode_boxes(golden["loc"], golden["priors"])
        scores = torch.softmax(golden["conf_logits"], dim=-1)[:, 1:].t().contiguous()
        boxes, coeffs, labels, scores, _ = padded_nms(boxes, scores, golden["mask_coeffs"])
    return ops.paste_masks(golden["proto"], coeffs, boxes, SIZE), labels, scores


@pytest.mark.benchmark(group="cuda post-network: decode + NMS + paste_masks (golden)")
def test_cuda_post_network_reference(benchmark, golden):
    run(benchmark, post_network_reference, golden)


@pytest.mark.benchmark(group="cuda post-network: decode + NMS + paste_masks (golden)")
def test_cuda_post_network_kernels(benchmark, golden):
    run(benchmark, post_network_kernels, golden)


@pytest.fixture(scope="module")
def model():
    from yolact_fast.model.weight_rule import rule_weights

    return yf.load(rule_weights("yolact_base", 0), config="yolact_base").to(CUDA)


@pytest.fixture(scope="module")
def image():
    from yolact_fast.data.synthetic import golden_image

    return golden_image(0, 480, 640).to(CUDA)


@pytest.mark.benchmark(group="cuda segment yolact_base 480x640 (end to end)")
def test_cuda_segment_eager_official_equivalent(benchmark, model, image):
    inst = run(benchmark, yf.segment_eager, image, model=model)
    assert len(inst) == 100


@pytest.mark.benchmark(group="cuda segment yolact_base 480x640 (end to end)")
def test_cuda_segment(benchmark, model, image):
    inst = run(benchmark, yf.segment, image, model=model)
    assert len(inst) == 100
