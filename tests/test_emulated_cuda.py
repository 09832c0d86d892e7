"""The CUDA launch logic and kernels, run on the CPU under the host emulation of CUDA blocks
(yolact_fast.testing.emulated_cuda): the golden data, equality with the CPU kernels, the
public module's signatures and launch log. The sweeps against the reference run on every
backend in test_ops_reference.py."""

import inspect
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from yolact_fast import _emulation, configs, ops, reference
from yolact_fast.testing import emulated_cuda as cuda
from inputs import (
    clustered_boxes,
    misaligned_copy,
    random_boxes,
    random_coeffs,
    random_head,
    random_proto,
    random_scores,
)
from comparisons import assert_detections_close, assert_nms_equal
from inputs import DTYPES, REDUCED_DTYPES, gen

from golden_data import golden_masks
from golden_data import assert_softmax_scores_close

SWEEP = settings(max_examples=25, deadline=None, derandomize=True)
ROOT = Path(__file__).resolve().parents[1]


def cached_equal_recomputed(loc, logits, coeffs, priors, cap, args):
    """detect's detections from `logits` (at most `cap` per row: detect_scores keeps their
    exps in shared memory) after checking that they equal, bit for bit, those from the same
    rows padded with -inf logits (exp 0) past the cap (exps recomputed)."""
    constants = _emulation.emulated_cuda.kernel_constants
    assert cap in (constants["cached_logits_float"], constants["cached_logits_double"])  # straddled here
    assert logits.shape[1] <= cap
    pad = torch.full((logits.shape[0], cap - logits.shape[1] + 1), -float("inf"), dtype=logits.dtype)
    cached = emulated_detect(loc, logits, coeffs, priors, *args)
    recomputed = emulated_detect(loc, torch.cat([logits, pad], 1), coeffs, priors, *args)
    assert len(cached[0]) > 10
    for a, b in zip(cached, recomputed):
        assert torch.equal(a, b)
    return cached


def class_nms_launch(log):
    """The class_nms launch of a launches() log."""
    return next(launch for launch in log if launch.kernel == "class_nms")


def emulated_nms(boxes, scores, coeffs, iou=0.5, top_k=200, score=0.05, max_det=100, method="fast"):
    *out, count = cuda._kernels.fast_nms(boxes, scores, coeffs, iou, top_k, score, max_det, method)
    n = int(count)
    assert all(not t[n:].any() for t in out), "padding rows must be zero"
    trimmed = tuple(t[:n] for t in out)
    public = cuda.fast_nms(boxes, scores, coeffs, iou, top_k, score, max_det, method)
    assert all(torch.equal(a, b) for a, b in zip(public, trimmed))
    return trimmed


@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_fast_nms_padded_outputs(method):
    """The padded op: rows past the count are zero, and the trimmed rows are the reference's."""
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    for seed in range(4):
        g = gen(seed)
        boxes, scores, coeffs = clustered_boxes(150, g), random_scores(3, 150, g), random_coeffs(150, 4, g)
        got = emulated_nms(boxes, scores, coeffs, top_k=[1, 64, 65, 200][seed], max_det=30, method=method)
        assert_nms_equal(got, twin(boxes, scores, coeffs, 0.5, [1, 64, 65, 200][seed], 0.05, 30))


def emulated_detect(
    loc, logits, coeffs, priors, iou=0.5, top_k=200, score=0.05, max_det=100, method="fast", variances=(0.1, 0.2)
):
    *out, count = cuda._kernels.detect(loc, logits, coeffs, priors, *variances, iou, top_k, score, max_det, method)
    n = int(count)
    assert all(not t[n:].any() for t in out), "padding rows must be zero"
    trimmed = tuple(t[:n] for t in out)
    public = cuda.detect(loc, logits, coeffs, priors, variances, iou, top_k, score, max_det, method)
    assert all(torch.equal(a, b) for a, b in zip(public, trimmed))
    return trimmed


@SWEEP
@given(
    seed=st.integers(0, 2**31),
    num_priors=st.integers(0, 300),
    num_classes=st.integers(0, 5),
    top_k=st.sampled_from([0, 1, 63, 64, 65, 200]),
    max_det=st.sampled_from([0, 3, 100]),
    clustered=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    method=st.sampled_from(["fast", "cluster"]),
)
def test_detect(seed, num_priors, num_classes, top_k, max_det, clustered, dtype, method):
    g = gen(seed)
    loc, logits, coeffs, priors = random_head(num_priors, num_classes, 3, g, dtype, clustered=clustered)
    got = emulated_detect(loc, logits, coeffs, priors, 0.5, top_k, 0.05, max_det, method)
    want = reference.detect(loc, logits, coeffs, priors, (0.1, 0.2), 0.5, top_k, 0.05, max_det, method)
    # libm exp here, ATen's in the reference: boxes may differ in the last bit too.
    assert_detections_close(got, want, rtol=2e-6, box_rtol=1e-6)


@pytest.mark.parametrize("dtype", REDUCED_DTYPES)
def test_reduced_precision(dtype):
    g = gen(31)
    loc, logits, coeffs, priors = (t.to(dtype) for t in random_head(300, 4, 3, g, clustered=True))
    got = emulated_detect(loc, logits, coeffs, priors)
    want = emulated_detect(loc.float(), logits.float(), coeffs.float(), priors.float())
    assert got[0].dtype == dtype and len(got[0]) > 0
    assert_nms_equal(got, tuple(t.to(dtype) if t.is_floating_point() else t for t in want))
    boxes = cuda.decode_boxes(loc, priors)
    assert boxes.dtype == dtype
    assert torch.equal(boxes, cuda.decode_boxes(loc.float(), priors.float()).to(dtype))


@pytest.mark.parametrize("dtype", REDUCED_DTYPES)
def test_reduced_precision_inputs_are_read_in_their_dtype(dtype):
    """float16/bfloat16 inputs go to the kernels as they are: the launches of float32 and no
    ATen cast (copy_) before or after them."""
    from torch.profiler import ProfilerActivity, profile

    loc, logits, coeffs, priors = (t.to(dtype) for t in random_head(300, 4, 3, gen(37), clustered=True))
    boxes, scores = loc.abs().cumsum(1), torch.rand(4, 300, generator=gen(38)).to(dtype)
    with cuda.launches() as log, profile(activities=[ProfilerActivity.CPU]) as prof:
        cuda._kernels.detect(loc, logits, coeffs, priors, 0.1, 0.2, 0.5, 200, 0.05, 100, "fast")
        cuda._kernels.fast_nms(boxes, scores, coeffs, 0.5, 200, 0.05, 100, "cluster")
        cuda._kernels.decode_boxes(loc, priors, 0.1, 0.2)
    assert [launch.kernel for launch in log] == (
        ["detect_scores"] + NMS_KERNELS + ["candidate_flags"] + NMS_KERNELS + ["decode"]
    )
    assert [e.name for e in prof.events() if e.name in ("aten::copy_", "aten::to", "aten::_to_copy")] == []


def test_golden_post_network_path(golden):
    h, w = golden["image"].shape[:2]
    scores = torch.softmax(golden["conf_logits"], -1).t()[1:]
    boxes = cuda.decode_boxes(golden["loc"], golden["priors"])
    torch.testing.assert_close(boxes, golden["decoded_boxes"], rtol=1e-6, atol=1e-7)
    boxes, coeffs, labels, det_scores = emulated_nms(golden["decoded_boxes"], scores, golden["mask_coeffs"])
    assert torch.equal(labels, golden["det_class"]) and torch.equal(boxes, golden["det_box"])
    assert_softmax_scores_close(det_scores, golden["det_score"])
    fused = emulated_detect(golden["loc"], golden["conf_logits"], golden["mask_coeffs"], golden["priors"])
    assert torch.equal(fused[2], golden["det_class"]) and torch.equal(fused[1], golden["det_mask_coeffs"])
    torch.testing.assert_close(fused[0], golden["det_box"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(fused[3], golden["det_score"], rtol=2e-6, atol=0)
    masks = cuda.paste_masks(golden["proto"], coeffs, boxes, (h, w))
    assert torch.equal(masks, golden_masks(golden))


def test_emulation_rejects_cuda_tensors_or_bad_args():
    with pytest.raises(ValueError, match="proto"):
        cuda.assemble_masks(torch.zeros(2, 2), torch.zeros(1, 2), torch.zeros(1, 4), 1.0)
    with pytest.raises(ValueError, match="emulated CUDA kernels take CPU tensors"):
        cuda.assemble_masks(*(torch.zeros(s, device="meta") for s in [(2, 2, 2), (1, 2), (1, 4)]))
    with pytest.raises(ValueError, match="coeffs must be on the device of proto"):
        cuda.assemble_masks(torch.zeros(2, 2, 2), torch.zeros(1, 2, device="meta"), torch.zeros(1, 4))


@pytest.mark.parametrize("name", [name for name in cuda.__all__ if name in ops.__all__])
def test_same_signatures_as_ops(name):
    assert inspect.signature(getattr(cuda, name)) == inspect.signature(getattr(ops, name))


def test_launches_are_recorded():
    g = gen(0)
    proto, coeffs, boxes = random_proto(9, 7, 3, g), random_coeffs(2, 3, g), random_boxes(2, g, hostile=False)
    with cuda.launches() as log:
        cuda.assemble_masks(proto, coeffs, boxes)
        cuda.make_priors(configs.yolact_base, (69, 69))
    assert [launch.kernel for launch in log][-5:] == ["priors_level"] * 5
    assert log[0].kernel == "assemble_masks" and all(len(launch.grid) == 3 for launch in log)


def test_masks_equal_the_cpu_kernels_on_odd_sizes():
    """Tiles, footprints and patches of the CUDA mask kernels against the CPU kernels (same
    float32 arithmetic, so equal bit for bit) on up- and downscales, 1-pixel outputs, odd
    widths (byte stores) and widths divisible by 4 (4-byte stores)."""
    g = gen(11)
    sizes = [1, 2, 3, 5, 8, 17, 64, 97, 130, 257]
    for case in range(24):
        pick = lambda options: options[int(torch.randint(len(options), (), generator=g))]
        h, w, k, n = pick([1, 2, 7, 23, 40]), pick([1, 3, 8, 29, 40]), pick([1, 3, 4, 32, 37]), pick([1, 3])
        proto, coeffs = random_proto(h, w, k, g), random_coeffs(n, k, g)
        boxes = random_boxes(n, g)
        size, padding = (pick(sizes), pick(sizes)), pick([0, 1, 2.5])
        assert torch.equal(
            cuda.assemble_masks(proto, coeffs, boxes, padding), ops.assemble_masks(proto, coeffs, boxes, padding)
        ), case
        assert torch.equal(
            cuda.paste_masks(proto, coeffs, boxes, size, 0.5, padding),
            ops.paste_masks(proto, coeffs, boxes, size, 0.5, padding),
        ), (case, size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_proto_staging_vector_and_scalar_loads(dtype):
    """The mask kernels stage proto through shared memory with 16-byte loads when k is a
    multiple of 8 and proto is 16-byte aligned, else element by element: both give the CPU
    kernels' masks bit for bit (k = 16: two runs of 8 channels; k = 13: a partial run), and
    the launch log shows which path ran (the emulation fails a misaligned vector load)."""
    g = gen(17)
    boxes = torch.tensor([[0.05, 0.1, 0.9, 0.8], [0.3, 0.0, 0.6, 1.0], [-0.2, 0.4, 1.3, 0.7]], dtype=dtype)
    for k in (16, 13):
        aligned = random_proto(37, 45, k, g, dtype)
        misaligned = misaligned_copy(aligned)
        assert misaligned.is_contiguous() and misaligned.data_ptr() % 16 != 0
        coeffs = random_coeffs(3, k, g, dtype)
        want_paste = ops.paste_masks(aligned, coeffs, boxes, (101, 96))
        want_assemble = ops.assemble_masks(aligned, coeffs, boxes)
        for proto, vector in ((aligned, k == 16), (misaligned, False)):
            with cuda.launches() as log:
                assert torch.equal(cuda.paste_masks(proto, coeffs, boxes, (101, 96)), want_paste), k
                assert torch.equal(cuda.assemble_masks(proto, coeffs, boxes), want_assemble), k
            loads = ("vector_loads",) if vector else ("element_loads",)
            assert [(launch.kernel, launch.paths) for launch in log] == [
                ("paste_masks", loads + ("quad_stores", "wide_stores")),
                ("assemble_masks", loads),
            ], (k, vector)


def test_paste_store_paths():
    """Tiles off a box's footprint are zeroed with 16-byte stores when the output width is a
    multiple of 16, footprint pixels go out 4 at a time when it is a multiple of 4, else
    every pixel is a byte store."""
    g = gen(19)
    proto, coeffs = random_proto(20, 24, 8, g), random_coeffs(2, 8, g)
    boxes = torch.tensor([[0.1, 0.2, 0.3, 0.4], [2.0, 2.0, 3.0, 3.0]])  # in the image; empty
    for width, stores in (
        (64, ("quad_stores", "wide_stores")),
        (68, ("quad_stores",)),
        (66, ("byte_stores",)),
        (3, ("byte_stores",)),
    ):
        with cuda.launches() as log:
            got = cuda.paste_masks(proto, coeffs, boxes, (30, width))
        assert torch.equal(got, ops.paste_masks(proto, coeffs, boxes, (30, width)))
        assert log[0].paths == ("vector_loads",) + stores, (width, log[0].paths)


@pytest.mark.parametrize("detections, blocks", [(1, 21), (3, 63), (150, 1021), (2000, 1021)])
def test_paste_blocks_share_the_tiles_of_all_detections(detections, blocks):
    """paste_masks runs at most 1,021 blocks: block b takes tiles b, b + blocks, ... of all
    detections (21 each here: 7 rows x 3 columns, the last 16 pixels wide), testing 32 of
    them at a time (a lane of warp 0 each, then a ballot). With 150 and 2,000 detections one
    block meets whole-image boxes (every tile on the footprint), tiny and empty ones (zero
    tiles, 16-byte stores, also in the narrow last column) and random ones in turn; 2,000 x
    21 tiles are over 32 x 1,021, so each block has a second round. Every pixel is written
    once (the emulation hands the kernel 0x01 bytes) with the CPU kernel's masks."""
    g = gen(29)
    proto, coeffs = random_proto(20, 24, 8, g), random_coeffs(detections, 8, g)
    boxes = random_boxes(detections, g, hostile=False)
    boxes[0::4] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # whole image
    boxes[1::4] = torch.tensor([0.4, 0.4, 0.41, 0.42])  # tiny
    boxes[2::4] = torch.tensor([1.5, 1.5, 2.0, 2.0])  # off the image
    size = (200, 272)  # tiles of 32 x 128: 7 x 3 per detection
    with cuda.launches() as log:
        got = cuda.paste_masks(proto, coeffs, boxes, size)
    assert [(launch.kernel, launch.grid) for launch in log] == [("paste_masks", (blocks, 1, 1))]
    zero_tiles = ("wide_stores",) if detections > 1 else ()  # detection 0: the whole image
    assert log[0].paths == ("vector_loads", "quad_stores") + zero_tiles
    assert torch.equal(got, ops.paste_masks(proto, coeffs, boxes, size))


@pytest.mark.parametrize("seed", [0, 1])
def test_paste_rounds_of_zero_tiles(seed):
    """Boxes off the image: every tile is a zero tile, so no barrier of a footprint tile
    separates one round of 32 tiles from the next; the barrier that closes a round must (warp
    0 rewrites the round's tiles in shared memory while the other warps may still read them;
    1,600 x 21 tiles: a second round for most blocks)."""
    g = gen(31)
    proto, coeffs = random_proto(20, 24, 8, g), random_coeffs(1600, 8, g)
    boxes = torch.tensor([[1.5, 1.5, 2.0, 2.0]]).expand(1600, 4)
    with cuda.schedule(seed=seed), cuda.launches() as log:
        got = cuda.paste_masks(proto, coeffs, boxes, (200, 272))
    assert log[0].paths == ("wide_stores",)
    assert got.shape == (1600, 200, 272) and not got.any()


def test_paste_writes_every_output_pixel():
    """No memset before the paste kernel: it zeroes every pixel off the footprint itself (the
    emulation hands it an output of 0x01 bytes, so a pixel left unwritten reads True)."""
    g = gen(19)
    proto, coeffs = random_proto(20, 30, 8, g), random_coeffs(3, 8, g)
    boxes = torch.tensor([[0.1, 0.1, 0.3, 0.2], [2.0, 2.0, 3.0, 3.0], [0.5, 0.5, 0.5, 0.5]])  # one in, two empty
    for size in ((97, 130), (64, 128)):  # byte stores, 4-byte stores
        with cuda.launches() as log:
            got = cuda.paste_masks(proto, coeffs, boxes, size)
        assert [launch.kernel for launch in log] == ["paste_masks"]
        assert torch.equal(got, ops.paste_masks(proto, coeffs, boxes, size))
        assert not got[1:].any() and got[0].any()


@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_detect_scores_tiles_of_priors_and_classes(method):
    """detect_scores works on 32 priors x 64 classes at a time: more classes than one pass
    and a partial last tile of priors, against the reference."""
    g = gen(23)
    loc, logits, coeffs, priors = random_head(75, 150, 3, g, clustered=True, concentration=1.0)
    got = emulated_detect(loc, logits, coeffs, priors, 0.5, 40, 0.009, 100, method)
    want = reference.detect(loc, logits, coeffs, priors, (0.1, 0.2), 0.5, 40, 0.009, 100, method)
    assert len(got[0]) > 20
    assert_detections_close(got, want, rtol=2e-6, box_rtol=1e-6)


@pytest.mark.parametrize("dtype,cap", [(torch.float32, 256), (torch.float64, 96), (torch.float16, 256)])
def test_detect_scores_cached_exps_equal_recomputed_ones(dtype, cap):
    """Rows of up to `cap` logits keep their exps in shared memory; longer rows recompute
    them. A head with C + 1 = cap logits (cached) and the same head with one more class whose
    logit is -inf (recomputed; its exp is 0, which changes no sum or probability) give the
    same detections bit for bit."""
    g = gen(61)
    loc, logits, coeffs, priors = random_head(90, cap - 1, 3, g, dtype=dtype, clustered=True, concentration=1.0)
    args = (0.5, 40, 0.004, 100)
    cached = cached_equal_recomputed(loc, logits, coeffs, priors, cap, args)
    if dtype == torch.float16:  # float arithmetic inside: the float32 reference is compared elsewhere
        return
    assert_detections_close(
        cached, reference.detect(loc, logits, coeffs, priors, (0.1, 0.2), *args, "fast"), rtol=2e-6, box_rtol=1e-6
    )


@pytest.mark.parametrize("dtype,cap", [(torch.float32, 256), (torch.float64, 96), (torch.float16, 256)])
@pytest.mark.parametrize("tail", [1, 2, 7])
def test_detect_scores_cached_tail_of_the_sum(dtype, cap, tail):
    """The softmax sum runs over whole runs of 8 exps, then a tail of (C + 1) % 8 in order.
    Rows whose logits are 0 or -inf have exps 1 or 0, so every sum and probability (1 / the
    number of zeros) is exact in any order: a row of C + 1 = cap - 8 + tail logits (cached,
    with a tail) and the same row padded with -inf to past the cap (recomputed) give the
    same detections bit for bit, and the reference's, whatever the summation order; a
    dropped or doubled tail exp changes them."""
    g = gen(67 + tail)
    width = cap - 8 + tail
    loc, _, coeffs, priors = random_head(90, width - 1, 3, g, dtype=dtype, clustered=True, concentration=1.0)
    zero = torch.rand(90, width, generator=g) < 0.08
    zero[:, width - tail :] |= torch.rand(90, tail, generator=g) < 0.5  # the tail's exps matter
    zero[:, 0] = True  # background: a finite maximum in every row
    logits = torch.where(zero, 0.0, -float("inf")).to(dtype)
    args = (0.5, 40, 0.004, 100)
    cached = cached_equal_recomputed(loc, logits, coeffs, priors, cap, args)
    if dtype != torch.float16:
        want = reference.detect(loc, logits, coeffs, priors, (0.1, 0.2), *args, "fast")
        for a, b in zip(cached, want):
            assert torch.equal(a, b)


@pytest.mark.parametrize("seed", [1, 2])
def test_masks_do_not_depend_on_the_schedule(seed):
    g = gen(5)
    proto, coeffs, boxes = random_proto(40, 40, 32, g), random_coeffs(4, 32, g), random_boxes(4, g)
    want = ops.paste_masks(proto, coeffs, boxes, (150, 120))
    with cuda.schedule(seed=seed):
        assert torch.equal(cuda.paste_masks(proto, coeffs, boxes, (150, 120)), want)
        assert torch.equal(cuda.assemble_masks(proto, coeffs, boxes), ops.assemble_masks(proto, coeffs, boxes))


# --- NMS kernels: launches, schedules, limits ------------------------------------------

NMS_KERNELS = ["class_nms"]


def test_nms_and_detect_launch_two_kernels():
    """decode + softmax + NMS in at most 8 launches (2 custom kernels: the merge runs in
    class_nms's last block; with contiguous float32 inputs no ATen kernel runs besides
    allocations). The classes go on grid.x (grid.y and grid.z are limited to 65535)."""
    g = gen(41)
    loc, logits, coeffs, priors = random_head(300, 4, 3, g, clustered=True)
    with cuda.launches() as log:
        cuda.detect(loc, logits, coeffs, priors)
    assert [launch.kernel for launch in log] == ["detect_scores"] + NMS_KERNELS
    boxes = ops.decode_boxes(loc, priors)
    scores = torch.softmax(logits, -1)[:, 1:].t().contiguous()
    with cuda.launches() as log:
        cuda.fast_nms(boxes, scores, coeffs, method="cluster")
    assert [launch.kernel for launch in log] == ["candidate_flags"] + NMS_KERNELS
    per_class = class_nms_launch(log)
    assert (per_class.grid, per_class.block) == ((4, 1, 1), (1024, 1, 1))  # a block per class


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_nms_under_shuffled_schedules(seed, method):
    """Race checking on (the default) and the threads' order shuffled by the seed."""
    g = gen(43 + seed)
    loc, logits, coeffs, priors = random_head(400, 3, 2, g, clustered=True)
    with cuda.schedule(seed=seed):
        got = emulated_detect(loc, logits, coeffs, priors, 0.5, 150, 0.05, 100, method)
    want = reference.detect(loc, logits, coeffs, priors, (0.1, 0.2), 0.5, 150, 0.05, 100, method)
    assert len(got[0]) > 10
    assert_detections_close(got, want, rtol=2e-6, box_rtol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_merge_runs_in_whichever_class_block_finishes_last(method, threads):
    """class_nms's last block to finish merges the survivors of every class. The blocks run
    in an order each seed shuffles (with one OS thread, the last to run is the last to
    finish): a merge in a fixed block, say the highest class, would miss classes under most
    seeds. Each call's first kernel zeroes the count of finished blocks, so calls in a row
    (fast_nms, then detect) each merge once, after all their classes."""
    g = gen(97)
    classes, p = 9, 300
    loc, logits, coeffs, priors = random_head(p, classes, 2, g, clustered=True)
    boxes = ops.decode_boxes(loc, priors)
    scores = torch.softmax(logits, -1)[:, 1:].t().contiguous()
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    want_nms = twin(boxes, scores, coeffs, 0.5, 50, 0.05, 60)
    want_detect = reference.detect(loc, logits, coeffs, priors, (0.1, 0.2), 0.5, 50, 0.05, 60, method)
    assert len(set(want_nms[2].tolist())) == classes, "every class has survivors"
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for seed in range(1, 6):
            with cuda.schedule(seed=seed):
                assert_nms_equal(emulated_nms(boxes, scores, coeffs, 0.5, 50, 0.05, 60, method), want_nms)
                got = emulated_detect(loc, logits, coeffs, priors, 0.5, 50, 0.05, 60, method)
                assert_detections_close(got, want_detect, rtol=2e-6, box_rtol=1e-6)
    finally:
        torch.set_num_threads(previous)


def test_nms_device_limits():
    g = gen(47)
    boxes, scores, coeffs = random_boxes(3000, g), random_scores(2, 3000, g), random_coeffs(3000, 2, g)
    with pytest.raises(ValueError, match="top_k on CUDA must be <= 2048"):
        cuda.fast_nms(boxes, scores, coeffs, top_k=2049)
    with pytest.raises(ValueError, match="max_detections on CUDA must be <= 2048"):
        cuda.fast_nms(boxes, scores, coeffs, top_k=2048, max_detections=4000)
    # The limits apply to what is ranked: min(top_k, P) and the padded output length.
    small = boxes[:100], scores[:, :100].contiguous(), coeffs[:100]
    assert len(cuda.fast_nms(*small, top_k=10**6, max_detections=10**6)[0]) > 0


# --- ties at zero, grid limits, 32-bit indices, barriers ------------------------------------

SEEDS = [0, 1, 2]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_negative_and_positive_zero_scores_tie_by_index(dtype, method):
    """-0.0 == +0.0: when top_k cuts through zero scores the lower prior indices win, as in
    the reference (the radix keys once ranked +0.0 above -0.0 and picked priors 1 and 3)."""
    boxes = torch.tensor([[10.0 * i, 0, 10.0 * i + 5, 5] for i in range(4)], dtype=dtype)
    scores = torch.tensor([[-0.0, 0.0, -0.0, 0.0]], dtype=dtype)
    coeffs = torch.arange(4, dtype=dtype)[:, None]
    args = dict(iou_threshold=0.5, top_k=2, score_threshold=-1.0, max_detections=3)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    want = twin(boxes, scores, coeffs, **args)
    assert want[1].flatten().tolist() == [0, 1]
    for seed in SEEDS:
        with cuda.schedule(seed=seed, check_races=True):
            got = emulated_nms(boxes, scores, coeffs, *args.values(), method)
        assert_nms_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("top_k", [1, 37, 64, 200, 650])
def test_radix_select_over_every_bucket_matches_cpu(seed, top_k):
    """Scores spread over all 256 first-byte buckets (both signs, exponents -120..120) and
    quantised so that many keys tie, cut at top_k anywhere: the warp scan that finds the k-th
    key's bucket (lane l owns buckets 255 - 8l .. 248 - 8l) must agree with the CPU's full
    sort, in class_nms's select and in its merge (max_detections)."""
    g = gen(300 + seed)
    p, c = 700, 3
    exponent = torch.randint(-120, 121, (c, p), generator=g).double()
    sign = torch.where(torch.rand(c, p, generator=g) < 0.3, -1.0, 1.0).double()
    scores = (sign * torch.pow(2.0, exponent) * torch.randint(1, 4, (c, p), generator=g)).float()
    boxes, coeffs = random_boxes(p, g), random_coeffs(p, 2, g)
    for max_det in (1, 64, 400):
        args = (0.5, top_k, -3e38, max_det)
        want = ops.fast_nms(boxes, scores, coeffs, *args)
        got = emulated_nms(boxes, scores, coeffs, *args)
        assert_nms_equal(got, want)


@pytest.mark.parametrize("seed", range(3))
def test_radix_pass_one_narrows_packed_keys_in_batches(seed):
    """Pass 1 of the radix select moves the keys of the k-th key's first-byte bucket to the
    front of the packed keys in place, 4 x 1,024 keys per batch, and selects the keys above
    that bucket at once: 15,000 priors (4 batches) whose class-0 scores crowd one bucket with
    150 keys above it spread over all batches, and class-1 scores whose keys above the
    bucket include -0.0 and +0.0 (the sign kept in the outputs), under shuffled schedules,
    equal the CPU kernel bit for bit."""
    g = gen(400 + seed)
    p = 15000
    scores = torch.empty(2, p)
    scores[0] = 0.5 + 0.5 * torch.rand(p, generator=g)  # first byte 0xBF: one crowded bucket
    scores[1] = -0.5 - 0.5 * torch.rand(p, generator=g)  # negative: one crowded bucket too
    above = torch.randperm(p, generator=g)[:150]
    scores[0, above] = 2.0 + torch.rand(150, generator=g)  # 0xC0: above the bucket
    scores[1, above] = torch.where(torch.rand(150, generator=g) < 0.5, -0.0, 0.0)
    boxes, coeffs = random_boxes(p, g, hostile=False), random_coeffs(p, 2, g)
    args = (0.5, 200, -3e38, 300)
    want = ops.fast_nms(boxes, scores, coeffs, *args)
    with cuda.schedule(seed=seed):
        got = emulated_nms(boxes, scores, coeffs, *args)
    assert_nms_equal(got, want)
    assert torch.equal(got[3].view(torch.int32), want[3].view(torch.int32))  # -0.0 kept
    assert (got[3] == 0).sum() > 100 and got[3].signbit().any()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("YF_SLOW_TESTS"), reason="75 s under the emulation: set YF_SLOW_TESTS=1")
def test_more_than_65535_classes():
    C, P = 65536 + 3, 2
    boxes = torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6]])
    scores = torch.rand(C, P, generator=gen(59))
    coeffs = torch.randn(P, 2, generator=gen(60))
    got = emulated_nms(boxes, scores, coeffs, 0.5, 1, 0.05, 100)
    assert_nms_equal(got, reference.fast_nms(boxes, scores, coeffs, 0.5, 1, 0.05, 100))


def test_nms_rejects_too_many_ranked_boxes():
    """The radix keys hold 32 bits of a box's index among the C x K ranked ones (expanded
    inputs: no memory behind them, rejected before any copy)."""
    boxes = torch.zeros(1, 4).expand(2048, 4)
    scores = torch.zeros(1, 1).expand(2**20, 2048)
    coeffs = torch.zeros(1, 1).expand(2048, 1)
    with pytest.raises(ValueError, match=r"scores on CUDA: classes x min\(top_k, priors\) must be < 2\^31"):
        cuda.fast_nms(boxes, scores, coeffs, top_k=2048, max_detections=10)


@pytest.mark.parametrize("op", ["assemble_masks", "paste_masks"])
def test_mask_kernels_reject_proto_planes_past_32_bit_indices(op):
    proto = torch.zeros(1, 1, 1).expand(2**16, 2**15, 1)  # H * W = 2^31, no memory behind it
    coeffs, boxes = torch.zeros(1, 1), torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    args = (proto, coeffs, boxes) if op == "assemble_masks" else (proto, coeffs, boxes, (4, 4))
    with pytest.raises(ValueError, match=r"on CUDA: proto \[H, W, k\] must have H \* W < 2\^31"):
        getattr(cuda, op)(*args)


@pytest.mark.parametrize("op", ["assemble_masks", "paste_masks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_mask_kernels_see_at_most_2_30_detections(op, dtype):
    """The mask kernels hold a detection's index in an int (its box's offset in 64 bits):
    the argument checks keep N at most 2^30, the boxes' 16 GiB allocation limit (counted in
    4-byte elements for every dtype)."""
    n = 2**30 + 1
    proto, coeffs = torch.zeros(2, 2, 0, dtype=dtype), torch.zeros(n, 0, dtype=dtype)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=dtype).expand(n, 4)  # no memory behind it
    args = (proto, coeffs, boxes) if op == "assemble_masks" else (proto, coeffs, boxes, (1, 1))
    with pytest.raises(ValueError, match=rf"boxes: {op} would allocate .* more than the limit"):
        getattr(cuda, op)(*args)


def test_mask_kernels_reject_coefficients_past_the_shared_memory_limit():
    k = 60_000  # 240,000 bytes of float32 coefficients > 227 KiB
    proto, coeffs, boxes = torch.zeros(2, 2, k), torch.zeros(1, k), torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"assemble_masks on CUDA stages .* proto's k is too large"):
        cuda.assemble_masks(proto, coeffs, boxes)


def test_decode_puts_images_on_grid_y():
    """No per-element division by P: priors along grid.x, images along grid.y."""
    g = gen(61)
    priors, loc = torch.rand(300, 4, generator=g), torch.randn(3, 300, 4, generator=g)
    for seed in SEEDS:
        with cuda.schedule(seed=seed), cuda.launches() as log:
            got = cuda.decode_boxes(loc, priors)
        assert [(launch.kernel, launch.grid) for launch in log] == [("decode", (2, 3, 1))]
        torch.testing.assert_close(got, reference.decode_boxes(loc, priors), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("num_priors, dtype", [(300, torch.float32), (300, torch.float64), (30000, torch.float32)])
def test_top_k_keys_in_shared_memory_or_global(num_priors, dtype):
    """class_nms's select and its merge pack the float keys of all items into dynamic shared
    memory (after the k_pad items) when they fit under the opt-in limit; float64 keys and
    float32 ones past the limit (30,000 priors: 240 kB) stay in global memory. Once the
    select is done, class_nms stages the ranked boxes and their areas where the keys were;
    the merge reuses the same memory. Both paths give the reference's detections."""
    g = gen(43)
    boxes, scores = clustered_boxes(num_priors, g, dtype), random_scores(2, num_priors, g, dtype)
    coeffs = random_coeffs(num_priors, 4, g, dtype)
    with cuda.launches() as log:
        got = emulated_nms(boxes, scores, coeffs)
    assert_nms_equal(got, reference.fast_nms(boxes, scores, coeffs, 0.5, 200, 0.05, 100))
    shared = {launch.kernel: launch.shared_bytes for launch in log}
    paths = {launch.kernel: launch.paths for launch in log}
    item, box = 16, 5 * dtype.itemsize  # (score, int64 index) for float32 and float64 alike; box, area
    packed = dtype == torch.float32 and num_priors * 8 <= 200 * 1024
    merge_packed = dtype == torch.float32
    survivors = 2 * 100  # C x min(max_detections, top_k)
    select = 256 * item + max(8 * num_priors if packed else 0, 200 * box)
    merge = 128 * item + (8 * survivors if merge_packed else 0)
    assert shared["class_nms"] == max(select, merge)
    assert paths["class_nms"] == (
        (("packed_keys",) if packed else ()) + ("staged_boxes",) + (("merge_packed_keys",) if merge_packed else ())
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_class_nms_reads_ranked_boxes_from_global_memory_on_small_devices(method, dtype):
    """With 64 KiB of opt-in shared memory per block (compute capability 7.5), 2,000 ranked
    boxes with their areas (39 or 78 KiB) do not fit beside the 2,048 padded ranked items
    (32 KiB): class_nms reads them through the items' indices from global memory (float32:
    its keys still packed in shared memory, where greedy's band of 64 bitmask rows then goes). 100 of the 2,000
    priors have no finite box, so 1,900 are ranked (a partial last tile), and more than
    max_detections = 50 survive per class. Both that and the boxes in shared memory
    (227 KiB) give the reference's detections, under shuffled schedules."""
    g = gen(71)
    p, top_k = 2000, 2000
    boxes, scores = clustered_boxes(p, g, dtype), random_scores(2, p, g, dtype)
    boxes[torch.randperm(p, generator=g)[:100], 2] = float("nan")
    coeffs = random_coeffs(p, 2, g, dtype)
    args = (0.5, top_k, 0.05, 50)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    want = twin(boxes, scores, coeffs, *args)
    assert len(want[0]) == 50
    launches = {}
    for limit, seed in ((64 * 1024, 1), (227 * 1024, 2)):
        with cuda.schedule(seed=seed, opt_in_shared_bytes=limit), cuda.launches() as log:
            got = emulated_nms(boxes, scores, coeffs, *args, method)
        assert_nms_equal(got, want)
        launches[limit] = class_nms_launch(log)
    items, band = 2048 * 16, 64 * 32 * 8 if method == "cluster" else 0
    keys, ranked_boxes = 8 * p, -(-5 * top_k * dtype.itemsize // 8) * 8  # boxes, then areas
    packed = ("packed_keys",) if dtype == torch.float32 else ()
    merge_packed = ("merge_packed_keys",) if packed else ()
    merge = 64 * 16 + (8 * 2 * 50 if packed else 0)  # m_pad items, C x max_detections keys
    small, large = launches[64 * 1024], launches[227 * 1024]
    assert small.shared_bytes == max(items + max(keys if packed else 0, band), merge)
    assert small.paths == packed + merge_packed
    assert large.paths == packed + ("staged_boxes",) + merge_packed
    assert large.shared_bytes == max(items + max(keys if packed else 0, ranked_boxes + band), merge)


@pytest.mark.parametrize("limit", [64 * 1024 - 1, 227 * 1024 + 1, True, 100_000.0])
def test_schedule_rejects_shared_memory_limits_of_no_device(limit):
    with pytest.raises(ValueError, match="opt_in_shared_bytes must be an int in"):
        with cuda.schedule(opt_in_shared_bytes=limit):
            pass


def lattice_boxes(n, g, dtype, ordered_share=0.8):
    """Boxes with corners on a small lattice (-0.0 and +0.0 among them): IoUs hit 1/2, 1/3,
    0 and 1 exactly; a 1 - ordered_share share keep their corners as drawn (zero-width or
    inverted boxes, zero or negative areas)."""
    lattice = torch.tensor([-0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0], dtype=dtype)
    boxes = lattice[torch.randint(0, len(lattice), (n, 4), generator=g)]
    ordered = torch.rand(n, generator=g) < ordered_share
    lo, hi = torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])
    boxes[ordered] = torch.cat([lo, hi], 1)[ordered]
    return boxes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["fast", "cluster"])
@pytest.mark.parametrize("iou_threshold", [0.5, 1 / 3, 0.0, 1.0])
def test_iou_ties_signed_zeros_and_degenerate_boxes(dtype, method, iou_threshold):
    """class_nms's pair test (column box in registers, min/max as FMNMX, areas staged)
    decides as the reference on lattice boxes whose IoUs hit the threshold exactly (1/2,
    1/3, 0, 1), corners of -0.0 and +0.0, zero-width and inverted boxes (zero or negative
    areas: a NaN IoU suppresses), across partial and whole 64-box tiles."""
    g = gen(83)
    boxes = lattice_boxes(150, g, dtype)
    scores = torch.rand(2, 150, generator=g, dtype=dtype) * 0.9 + 0.1
    coeffs = random_coeffs(150, 3, g, dtype)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    want = twin(boxes, scores, coeffs, iou_threshold, 200, 0.05, 300)
    assert 0 < len(want[0]) < 300
    with cuda.schedule(seed=5, check_races=True), cuda.launches() as log:
        got = emulated_nms(boxes, scores, coeffs, iou_threshold, 200, 0.05, 300, method)
    assert "staged_boxes" in class_nms_launch(log).paths
    assert_nms_equal(got, want)
    assert_nms_equal(ops.fast_nms(boxes, scores, coeffs, iou_threshold, 200, 0.05, 300, method), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["fast", "cluster"])
@pytest.mark.parametrize("iou_threshold", [0.5, 1 / 3])
def test_iou_ties_with_boxes_read_from_global_memory(dtype, method, iou_threshold):
    """The same ties when the 2,000 ranked boxes do not fit in a 64 KiB device's shared
    memory: class_nms reads them through the items' indices and computes each area as the
    staged path does (an area off by an ulp there passed every other test)."""
    g = gen(84)
    boxes = lattice_boxes(2000, g, dtype, ordered_share=1.0)
    scores = torch.rand(1, 2000, generator=g, dtype=dtype) * 0.9 + 0.1
    coeffs = random_coeffs(2000, 3, g, dtype)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    want = twin(boxes, scores, coeffs, iou_threshold, 2000, 0.05, 2000)
    with cuda.schedule(seed=5, opt_in_shared_bytes=64 * 1024), cuda.launches() as log:
        got = emulated_nms(boxes, scores, coeffs, iou_threshold, 2000, 0.05, 2000, method)
    assert "staged_boxes" not in class_nms_launch(log).paths
    assert_nms_equal(got, want)


@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_narrow_last_tiles_split_rows_between_lanes(method):
    """A column tile's half with c <= 16 ranked boxes gives each column 32 / c rounded down
    to a power of two (<= 16) lanes that split its rows (lanes_per_column): every width of
    the last half (1 to 32 columns, at the diagonal and right of full row tiles) decides as
    the reference, Fast NMS (removed bits ORed over a column's lanes) and greedy (each row's
    bits picked out of the ballot's groups)."""
    g = gen(91)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    for n in list(range(1, 34)) + [40, 48, 63, 64, 65, 72, 80, 95, 96, 97, 100, 112, 127, 129, 136, 144, 160, 161, 200]:
        boxes = clustered_boxes(n, g, torch.float32)
        scores = torch.rand(2, n, generator=g) * 0.9 + 0.1
        coeffs = random_coeffs(n, 2, g, torch.float32)
        want = twin(boxes, scores, coeffs, 0.5, n, 0.05, 2 * n)
        with cuda.schedule(seed=n % 4, check_races=True):
            got = emulated_nms(boxes, scores, coeffs, 0.5, n, 0.05, 2 * n, method)
        assert_nms_equal(got, want)


def copied_suppressors(n, copies, g, dtype=torch.float32):
    """n disjoint boxes ranked by index (one class, scores falling with the index), of which
    the `copies` columns each copy the box of one random earlier row: their only
    suppressors are that row and its other copies, so a lane group that skips its rows, or
    a flag that does not reach the column's bit, changes the detections."""
    boxes = torch.tensor([[10.0 * k, 0.0, 10.0 * k + 5, 5.0] for k in range(n)], dtype=dtype)
    for j in copies:
        boxes[j] = boxes[int(torch.randint(0, j, (1,), generator=g))]
    scores = (1 - torch.arange(n, dtype=dtype) / (n + 1))[None]
    return boxes, scores, random_coeffs(n, 2, g, dtype)


@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_each_lane_group_finds_a_columns_only_suppressor(method):
    """Every column of a narrow last half (1 to 16 columns, after one or two row tiles)
    copies one earlier row's box: whichever lane group holds that row must report it."""
    g = gen(92)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    for n in [64 * tiles + width for tiles in (1, 2) for width in range(1, 17)]:
        last_half = range(n - (n % 32 or 32), n)
        boxes, scores, coeffs = copied_suppressors(n, last_half, g)
        want = twin(boxes, scores, coeffs, 0.5, n, 0.05, n)
        assert len(want[0]) < n
        with cuda.schedule(seed=n % 3, check_races=True):
            got = emulated_nms(boxes, scores, coeffs, 0.5, n, 0.05, n, method)
        assert_nms_equal(got, want)


@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_lane_groups_with_boxes_read_from_global_memory(method):
    """The same with 1,985 / 1,987 / 1,992 ranked boxes on a 64 KiB device: the last half's
    1, 3 or 8 columns take 16, 8 or 4 lanes each, reading rows through the items' indices."""
    g = gen(93)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    for n in (1985, 1987, 1992):
        copies = list(range(n - n % 32, n)) + torch.randint(1, n, (200,), generator=g).tolist()
        boxes, scores, coeffs = copied_suppressors(n, sorted(set(copies)), g)
        want = twin(boxes, scores, coeffs, 0.5, n, 0.05, n)
        with cuda.schedule(seed=1, opt_in_shared_bytes=64 * 1024), cuda.launches() as log:
            got = emulated_nms(boxes, scores, coeffs, 0.5, n, 0.05, n, method)
        assert "staged_boxes" not in class_nms_launch(log).paths
        assert_nms_equal(got, want)
