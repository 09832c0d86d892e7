"""Every op against its pure-PyTorch twin in yolact_fast.reference on fresh random inputs:
sizes from 0, hostile boxes, both float dtypes, non-contiguous inputs; on every backend
(tests/backends.py: CPU kernels, CUDA kernels under the host emulation, a GPU if present).

Tolerances on the CUDA backends: exp (decode, the mask sigmoid) comes from libm under the
emulation and from the device's expf on a GPU, which may differ from ATen's in the last
bits, so decode is compared at rtol 1e-6 there, and a mask pixel within 1e-5 of the
threshold may flip (as on the CPU)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import backends
from yolact_fast import configs, ops, reference
from comparisons import assert_detections_close, assert_nms_equal
from inputs import (
    DTYPES,
    REDUCED_DTYPES,
    clustered_boxes,
    gen,
    random_boxes,
    random_coeffs,
    random_head,
    random_proto,
    random_scores,
)

SWEEP = settings(max_examples=40, deadline=None, derandomize=True)


@pytest.fixture(scope="module", params=backends.names())
def backend(request):
    return backends.get(request.param)


def mask_values_before_threshold(proto, coeffs, boxes, size, padding=1):
    masks = reference.assemble_masks(proto, coeffs, boxes, padding)
    return F.interpolate(masks[None], size, mode="bilinear", align_corners=False)[0]


def assert_masks_match(got, proto, coeffs, boxes, size, threshold=0.5, padding=1, tie=1e-5):
    """Bool masks equal the reference except where its value lies within ``tie`` of the
    threshold (float rounding of the matmul and sigmoid)."""
    want = reference.paste_masks(proto, coeffs, boxes, size, threshold, padding)
    assert got.shape == want.shape and got.dtype == torch.bool
    if want.numel() == 0:
        return
    values = mask_values_before_threshold(proto, coeffs, boxes, size, padding)
    differ = got != want
    assert not (differ & ((values - threshold).abs() > tie)).any(), (
        f"{int(differ.sum())} mask pixels differ away from the threshold"
    )


# --- make_priors ------------------------------------------------------------------


@pytest.mark.parametrize("config", list(configs.NAMED_CONFIGS.values()), ids=lambda c: c.name)
@pytest.mark.parametrize("size", [(550, 550), (700, 700), (1, 1), (97, 301), (64, 48)])
def test_make_priors_matches_reference(backend, config, size):
    assert torch.equal(backend.make_priors(config, size), reference.make_priors(config, size))


def test_make_priors_multi_scale_config():
    config = configs.yolact_base.replace(
        pred_scales=((24, 32), (48,), (96, 120, 150), (192,), (384,)),
        aspect_ratios=((1, 0.5), (1,), (1, 2, 3), (1, 0.5, 2), (0.25,)),
    )
    assert torch.equal(ops.make_priors(config, (300, 200)), reference.make_priors(config, (300, 200)))


def test_make_priors_returns_a_copy():
    priors = ops.make_priors(configs.yolact_base, (550, 550))
    priors.zero_()
    assert ops.make_priors(configs.yolact_base, (550, 550)).abs().sum() > 0


def test_make_priors_uncached_computes_again(backend):
    """cached=False launches the kernels again and returns the same anchors, which the cache
    does not hold: zeroing them leaves later cached calls alone."""
    config = configs.yolact_resnet50
    cached = backend.make_priors(config, (97, 130))
    fresh = backend.make_priors(config, (97, 130), cached=False)
    assert torch.equal(fresh, cached) and fresh.data_ptr() != cached.data_ptr()
    fresh.zero_()
    assert torch.equal(backend.make_priors(config, (97, 130)), cached)
    assert torch.equal(backend.make_priors(config, (97, 130), cached=False), cached)


# --- decode_boxes -----------------------------------------------------------------


@SWEEP
@given(
    seed=st.integers(0, 2**31),
    num_priors=st.integers(0, 300),
    batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
)
def test_decode_boxes_matches_reference(backend, seed, num_priors, batch, dtype, scale):
    g = gen(seed)
    priors = torch.rand(num_priors, 4, generator=g, dtype=dtype)
    loc = torch.randn(*batch, num_priors, 4, generator=g, dtype=dtype) * scale
    variances = (0.1, 0.2) if seed % 2 else (0.13, 0.27)
    assert_decode_matches(
        backend, backend.decode_boxes(loc, priors, variances), reference.decode_boxes(loc, priors, variances)
    )


def assert_decode_matches(backend, got, want):
    """Bit-exact on the CPU; elsewhere exp may differ in the last bits."""
    if backend.exact_exp:
        assert torch.equal(got, want)
    else:
        # An ulp of exp in w/h moves x1 = c - w/2 by up to an ulp of w: absolute, not relative
        # (x1 may be near 0 after cancellation).
        finite = want[torch.isfinite(want)]
        magnitude = float(finite.abs().max()) if finite.numel() else 0.0
        atol = max(1e-7, 4 * torch.finfo(want.dtype).eps * magnitude)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=atol)


def test_decode_boxes_non_contiguous(backend):
    g = gen(1)
    loc = torch.randn(4, 50, generator=g).t()[:, :4]  # [50, 4], strided
    priors = torch.rand(8, 50, generator=g)[::2].t()
    assert not loc.is_contiguous() and not priors.is_contiguous()
    assert_decode_matches(backend, backend.decode_boxes(loc, priors), reference.decode_boxes(loc, priors))


# --- fast_nms ---------------------------------------------------------------------


@SWEEP
@given(
    seed=st.integers(0, 2**31),
    num_priors=st.integers(0, 400),
    num_classes=st.integers(1, 6),
    k=st.integers(1, 5),
    top_k=st.sampled_from([0, 1, 7, 200]),
    max_det=st.sampled_from([0, 1, 5, 100]),
    iou=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    score=st.sampled_from([0.0, 0.05, 0.3]),
    clustered=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    method=st.sampled_from(["fast", "cluster"]),
)
def test_nms_matches_reference(
    backend, seed, num_priors, num_classes, k, top_k, max_det, iou, score, clustered, dtype, method
):
    g = gen(seed)
    boxes = clustered_boxes(num_priors, g, dtype) if clustered else random_boxes(num_priors, g, dtype)
    scores = random_scores(num_classes, num_priors, g, dtype)
    coeffs = random_coeffs(num_priors, k, g, dtype)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    got = backend.fast_nms(boxes, scores, coeffs, iou, top_k, score, max_det, method=method)
    assert_nms_equal(got, twin(boxes, scores, coeffs, iou, top_k, score, max_det))


@pytest.mark.parametrize("delta", [-1e-5, 0.0, 1e-5])
@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_nms_iou_planted_at_threshold(backend, delta, method):
    # Pairs whose IoU is exactly s: a = [x, y, x + w, y + h], b = [x, y, x + s w, y + h].
    g = gen(7)
    n = 64
    xy = torch.rand(n, 2, generator=g) * 0.5
    wh = torch.rand(n, 2, generator=g) * 0.4 + 0.05
    a = torch.cat([xy, xy + wh], 1)
    b = torch.cat([xy, xy[:, :1] + wh[:, :1] * (0.5 + delta), xy[:, 1:] + wh[:, 1:]], 1)
    boxes = torch.cat([a, b])
    scores = torch.cat([torch.full((n,), 0.9), torch.full((n,), 0.8)])[None] - torch.arange(2 * n) * 1e-4
    coeffs = torch.randn(2 * n, 3, generator=g)
    got = backend.fast_nms(boxes, scores, coeffs, 0.5, 200, 0.05, 200, method=method)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    assert_nms_equal(got, twin(boxes, scores, coeffs, 0.5, 200, 0.05, 200))


def test_cluster_differs_from_fast_where_greedy_differs(backend):
    # A chain: 0 suppresses 1, 1 would suppress 2, but 1 is gone, so greedy keeps 2.
    boxes = torch.tensor([[0.0, 0, 1, 1], [0.4, 0, 1.4, 1], [0.8, 0, 1.8, 1]])
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    coeffs = torch.zeros(3, 1)
    fast = backend.fast_nms(boxes, scores, coeffs, iou_threshold=0.4)
    cluster = backend.cluster_nms(boxes, scores, coeffs, iou_threshold=0.4)
    assert fast[3].tolist() == pytest.approx([0.9])
    assert cluster[3].tolist() == pytest.approx([0.9, 0.7])


def test_nms_non_finite_inputs_are_never_selected(backend):
    g = gen(3)
    boxes = random_boxes(50, g, hostile=False)
    scores = random_scores(3, 50, g)
    boxes[0, 1] = float("nan")
    boxes[1, 2] = float("inf")
    scores[1, 2] = float("nan")
    coeffs = torch.randn(50, 2, generator=g)
    got = backend.fast_nms(boxes, scores, coeffs, score_threshold=0.0, max_detections=1000)
    assert_nms_equal(got, reference.fast_nms(boxes, scores, coeffs, score_threshold=0.0, max_detections=1000))
    assert torch.isfinite(got[0]).all() and torch.isfinite(got[3]).all()
    assert len(got[0]) > 0


@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_nms_ranks_signed_scores_and_zero_ties(backend, method):
    """Negative scores, and -0.0 tied with +0.0 (ranked by prior index), with a threshold
    that lets them all be candidates: the float top-k sorts packed keys whose order must
    equal the reference's."""
    g = gen(11)
    boxes = random_boxes(300, g, hostile=False)
    scores = torch.randn(3, 300, generator=g).round(decimals=1)  # many exact ties
    scores[0, ::3], scores[0, 1::3] = 0.0, -0.0
    coeffs = torch.randn(300, 2, generator=g)
    args = (0.5, 150, -math.inf, 1000)
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    got = backend.fast_nms(boxes, scores, coeffs, *args, method=method)
    assert_nms_equal(got, twin(boxes, scores, coeffs, *args))
    assert got[3].lt(0).any() and got[3].eq(0).any()


def test_nms_non_contiguous(backend):
    g = gen(5)
    boxes = random_boxes(120, g).t().contiguous().t()
    scores = random_scores(120, 4, g).t()  # [4, 120] as a transposed view
    coeffs = torch.randn(5, 120, generator=g).t()
    assert not scores.is_contiguous() and not coeffs.is_contiguous()
    assert_nms_equal(backend.fast_nms(boxes, scores, coeffs), reference.fast_nms(boxes, scores, coeffs))


def test_nms_padded_op_returns_count():
    g = gen(9)
    boxes, scores, coeffs = random_boxes(300, g), random_scores(5, 300, g), torch.randn(300, 4, generator=g)
    out = torch.ops.yolact_fast.fast_nms(boxes, scores, coeffs, 0.5, 200, 0.05, 100, "fast")
    n = int(out[4])
    assert out[0].shape == (100, 4) and 0 < n <= 100
    assert torch.equal(out[0][n:], torch.zeros(100 - n, 4))


# --- detect -----------------------------------------------------------------------


@SWEEP
@given(
    seed=st.integers(0, 2**31),
    num_priors=st.integers(0, 400),
    num_classes=st.integers(0, 6),
    k=st.integers(1, 5),
    top_k=st.sampled_from([0, 1, 7, 200]),
    max_det=st.sampled_from([0, 1, 5, 100]),
    iou=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    score=st.sampled_from([0.0, 0.05, 0.3]),
    concentration=st.sampled_from([0.5, 2.0, 8.0]),
    clustered=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    method=st.sampled_from(["fast", "cluster"]),
)
def test_detect_matches_reference(
    seed, num_priors, num_classes, k, top_k, max_det, iou, score, concentration, clustered, dtype, method
):
    g = gen(seed)
    loc, logits, coeffs, priors = random_head(num_priors, num_classes, k, g, dtype, concentration, clustered)
    variances = (0.1, 0.2) if seed % 2 else (0.13, 0.27)
    args = (variances, iou, top_k, score, max_det, method)
    got = ops.detect(loc, logits, coeffs, priors, *args)
    assert_detections_close(got, reference.detect(loc, logits, coeffs, priors, *args))


@pytest.mark.parametrize("P", [300, 5000])
def test_detect_equals_fast_nms_on_its_scores(P):
    """Same candidates, ranking and survivors as fast_nms given the same probabilities:
    with logits whose softmax is exact in float32 (one class at 0, the rest at -inf, or
    all equal), the two ops agree bit for bit, planted exact ties included (5000 priors:
    with the top-k bounds seeded from a sample of the priors)."""
    g = gen(21)
    C = 5
    loc, _, coeffs, priors = random_head(P, C, 3, g, clustered=True)
    logits = torch.full((P, C + 1), -math.inf)
    logits[torch.arange(P), torch.randint(0, C + 1, (P,), generator=g)] = 0.0
    logits[::7] = 1.0  # uniform rows: every class scores exactly 1 / (C + 1)
    for method in ("fast", "cluster"):
        got = ops.detect(loc, logits, coeffs, priors, method=method)
        scores = torch.softmax(logits, -1)[:, 1:].t()
        want = ops.fast_nms(ops.decode_boxes(loc, priors), scores, coeffs, method=method)
        assert_nms_equal(got, want)
        assert len(got[0]) == 100


@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_detect_many_priors(method):
    """Past ~32 top_k priors, detect seeds each class's top-k bound from every 32nd prior and
    skips the exps of rows whose best foreground logit is far below the row maximum. Planted:
    only the sampled priors score high for class 2, fewer than top_k of them, so its seeded
    bound is too high and the class is ranked again; background dominates most rows."""
    g = gen(31)
    loc, logits, coeffs, priors = random_head(6000, 4, 3, g, concentration=2.0, clustered=True)
    logits[:, 0] += 4.0
    logits[::32, 3] += 12.0  # 188 priors < top_k
    got = ops.detect(loc, logits, coeffs, priors, method=method, max_detections=1000)
    want = reference.detect(loc, logits, coeffs, priors, method=method, max_detections=1000)
    assert_detections_close(got, want)
    assert int((want[2] == 2).sum()) > 40  # the seeded bound alone would pass ~18


def test_detect_non_finite_and_non_contiguous():
    g = gen(23)
    loc, logits, coeffs, priors = random_head(200, 4, 3, g)
    loc[0, 2] = 1e4  # exp overflows: infinite box, never a candidate
    loc[1, 0] = math.nan
    logits[2, 3] = math.nan  # a NaN logit makes the whole row NaN
    logits[3, 0] = math.inf
    logits[4] = -math.inf
    logits[5, 1:] = -math.inf  # background only: all foreground scores 0
    loc, logits = loc.t().contiguous().t(), logits.t().contiguous().t()
    coeffs = coeffs.t().contiguous().t()
    assert not logits.is_contiguous() and not loc.is_contiguous()
    for score in (0.0, -math.inf):
        got = ops.detect(loc, logits, coeffs, priors, score_threshold=score, max_detections=1000)
        assert_detections_close(
            got, reference.detect(loc, logits, coeffs, priors, score_threshold=score, max_detections=1000)
        )
        assert torch.isfinite(got[0]).all() and not torch.isnan(got[3]).any()


def test_detect_padded_op_returns_count():
    g = gen(25)
    loc, logits, coeffs, priors = random_head(300, 5, 4, g)
    out = torch.ops.yolact_fast.detect(loc, logits, coeffs, priors, 0.1, 0.2, 0.5, 200, 0.05, 100, "fast")
    n = int(out[4])
    assert out[0].shape == (100, 4) and out[1].shape == (100, 4) and 0 < n <= 100
    assert all(not t[n:].any() for t in out[:4])


# --- float16 / bfloat16 ---------------------------------------------------------------


def rounded_like_float32(op, dtype, *tensors, **kwargs):
    """op on float32 copies of the reduced-precision inputs, outputs rounded to ``dtype``."""
    out = op(*(t.float() for t in tensors), **kwargs)
    if isinstance(out, torch.Tensor):
        return out.to(dtype)
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in out)


@pytest.mark.parametrize("dtype", REDUCED_DTYPES)
@pytest.mark.parametrize("method", ["fast", "cluster"])
def test_reduced_precision_is_float32_rounded_once(dtype, method):
    """float16/bfloat16 inputs: computed in float32, outputs rounded once, so they equal the
    float32 op on the same (upcast) inputs, rounded to the input dtype."""
    g = gen(27)
    loc, logits, coeffs, priors = (t.to(dtype) for t in random_head(400, 6, 4, g, clustered=True))
    assert torch.equal(ops.decode_boxes(loc, priors), rounded_like_float32(ops.decode_boxes, dtype, loc, priors))
    boxes = ops.decode_boxes(loc, priors)
    scores = torch.softmax(logits.float(), -1)[:, 1:].t().to(dtype)
    got = ops.fast_nms(boxes, scores, coeffs, method=method)
    assert got[0].dtype == dtype and len(got[0]) > 0
    assert_nms_equal(got, rounded_like_float32(ops.fast_nms, dtype, boxes, scores, coeffs, method=method))
    got = ops.detect(loc, logits, coeffs, priors, method=method)
    assert got[3].dtype == dtype and len(got[0]) > 0
    assert_nms_equal(got, rounded_like_float32(ops.detect, dtype, loc, logits, coeffs, priors, method=method))


# --- assemble_masks / paste_masks -------------------------------------------------


@SWEEP
@given(
    seed=st.integers(0, 2**31),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    k=st.integers(1, 9),
    n=st.integers(0, 12),
    padding=st.sampled_from([0, 1, 2.5]),
    dtype=st.sampled_from(DTYPES),
)
def test_assemble_masks_matches_reference(backend, seed, h, w, k, n, padding, dtype):
    g = gen(seed)
    proto, coeffs, boxes = random_proto(h, w, k, g, dtype), random_coeffs(n, k, g, dtype), random_boxes(n, g, dtype)
    got = backend.assemble_masks(proto, coeffs, boxes, padding)
    want = reference.assemble_masks(proto, coeffs, boxes, padding)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@SWEEP
@given(
    seed=st.integers(0, 2**31),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    k=st.integers(1, 9),
    n=st.integers(0, 12),
    out_h=st.integers(1, 120),
    out_w=st.integers(1, 120),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.9]),
    padding=st.sampled_from([0, 1, 2.5]),
    dtype=st.sampled_from(DTYPES),
)
def test_paste_masks_matches_reference(backend, seed, h, w, k, n, out_h, out_w, threshold, padding, dtype):
    g = gen(seed)
    proto, coeffs, boxes = random_proto(h, w, k, g, dtype), random_coeffs(n, k, g, dtype), random_boxes(n, g, dtype)
    got = backend.paste_masks(proto, coeffs, boxes, (out_h, out_w), threshold, padding)
    assert_masks_match(got, proto, coeffs, boxes, (out_h, out_w), threshold, padding)


@pytest.mark.parametrize("size", [(480, 640), (1, 1), (1, 640), (137, 139), (50, 50)])
def test_paste_masks_official_shapes(backend, size):
    g = gen(11)
    proto, coeffs = random_proto(138, 138, 32, g), random_coeffs(30, 32, g)
    boxes = random_boxes(30, g)
    assert_masks_match(backend.paste_masks(proto, coeffs, boxes, size), proto, coeffs, boxes, size)


def test_masks_non_contiguous_and_nan(backend):
    g = gen(13)
    proto = random_proto(32, 24, 8, g).permute(1, 0, 2).contiguous().permute(1, 0, 2)
    proto = torch.randn(8, 24, 32, generator=g).permute(2, 1, 0).relu()  # [32, 24, 8] strided
    coeffs = random_coeffs(8, 6, g).t()
    boxes = random_boxes(6, g)
    boxes[0] = float("nan")
    assert not proto.is_contiguous() and not coeffs.is_contiguous()
    got = backend.paste_masks(proto, coeffs, boxes, (70, 50))
    assert_masks_match(got, proto, coeffs, boxes, (70, 50))
    assert not got[0].any()
    torch.testing.assert_close(
        backend.assemble_masks(proto, coeffs, boxes),
        reference.assemble_masks(proto, coeffs, boxes),
        rtol=1e-5,
        atol=1e-6,
    )


# --- float16 / bfloat16 masks ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_masks_reduced_precision_equal_float32_of_the_same_values(backend, dtype):
    """Reduced-precision inputs are computed in float32: assemble_masks is the float32
    result of the upcast inputs rounded once to the dtype, paste_masks equals it."""
    backend_ops = backend
    g = gen(17)
    for h, w, k, n, size in [(23, 17, 32, 5, (97, 64)), (138, 138, 32, 3, (48, 64)), (5, 9, 3, 4, (1, 7))]:
        proto = random_proto(h, w, k, g).to(dtype)
        coeffs, boxes = random_coeffs(n, k, g).to(dtype), random_boxes(n, g).to(dtype)
        upcast = [t.float() for t in (proto, coeffs, boxes)]
        got = backend_ops.assemble_masks(proto, coeffs, boxes)
        assert got.dtype == dtype
        assert torch.equal(got, backend_ops.assemble_masks(*upcast).to(dtype))
        assert torch.equal(backend_ops.paste_masks(proto, coeffs, boxes, size), backend_ops.paste_masks(*upcast, size))
