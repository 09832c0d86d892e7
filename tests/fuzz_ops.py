"""Fuzzing of every op (CPU kernels and the host-emulated CUDA kernels) against
yolact_fast.reference, on seeded random cases with hostile values: sizes from 0, boxes
anywhere (inverted, zero-area, outside the image, NaN, +-Inf, 1e30), extreme prototypes and
coefficients, thresholds at their edges.

    python tests/fuzz_ops.py --cases 10000          # every op, 10,000 cases each
    python tests/fuzz_ops.py --cases 500 --op paste_masks --seed 7

Exact agreement is required wherever both sides do the same float operations (priors,
NMS, decode except the last bit of exp in the emulation); masks must agree except at
pixels within float rounding of the threshold. With extreme mask inputs the dot product's
summation order legitimately changes the result, so there only invariants are checked
(shape, dtype, values in [0, 1] or NaN, nothing outside the box's footprint).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inputs import (
    clustered_boxes,
    random_boxes,
    random_coeffs,
    random_head,
    random_proto,  # noqa: E402
    random_scores,
)
from yolact_fast import _emulation, ops, reference  # noqa: E402

EMULATED = _emulation.emulated_cuda
DTYPES = (torch.float32, torch.float64)
SPECIALS = (math.nan, math.inf, -math.inf, 1e30, -1e30, 0.0, -0.0)


class Case:
    """Random choices for one case, from one seed."""

    def __init__(self, seed: int):
        self.seed = seed
        self.g = torch.Generator().manual_seed(seed)

    def int(self, low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (), generator=self.g))

    def pick(self, options):
        return options[self.int(0, len(options) - 1)]

    def chance(self, p: float) -> bool:
        return float(torch.rand((), generator=self.g)) < p

    def sprinkle(self, t: torch.Tensor, p: float, values=SPECIALS) -> torch.Tensor:
        """Replace a fraction p of the entries by special values."""
        if t.numel() == 0 or p == 0:
            return t
        t = t.clone()
        hit = torch.rand(t.shape, generator=self.g) < p
        choice = torch.randint(0, len(values), t.shape, generator=self.g)
        specials = torch.tensor(values, dtype=t.dtype)[choice]
        return torch.where(hit, specials, t)


def equal_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def fail(op: str, case: Case, message: str):
    raise AssertionError(f"{op}: seed {case.seed}: {message}")


# --- one case per op ------------------------------------------------------------------


def fuzz_decode_boxes(case: Case):
    dtype = case.pick(DTYPES)
    P = case.int(0, 60)
    priors = case.sprinkle(torch.rand(P, 4, generator=case.g, dtype=dtype), case.pick([0, 0.05]))
    loc = torch.randn(case.int(1, 2), P, 4, generator=case.g, dtype=dtype) * case.pick([0.1, 1.0, 100.0])
    loc = case.sprinkle(loc, case.pick([0, 0.05, 0.3]))
    variances = case.pick([(0.1, 0.2), (1.0, 1.0), (0.0, 0.0), (1e-3, 5.0)])
    want = reference.decode_boxes(loc, priors, variances)
    if not equal_nan(ops.decode_boxes(loc, priors, variances), want):
        fail("decode_boxes", case, "CPU kernel differs from the reference")
    got = EMULATED.decode_boxes(loc, priors, *variances)
    # libm exp vs ATen exp: last-bit differences in w, h, which x1 = c - w / 2 may
    # cancel down to; so the tolerance scales with the box's largest coordinate.
    scale = torch.nan_to_num(want.abs(), nan=0.0, posinf=0.0).amax(-1, keepdim=True)
    close = ((got - want).abs() <= 1e-6 * scale) | (got == want) | (torch.isnan(got) & torch.isnan(want))
    if not bool(close.all()):
        fail("decode_boxes", case, "emulated CUDA kernel differs from the reference")


def nms_inputs(case: Case):
    dtype = case.pick(DTYPES)
    P, C, k = case.int(0, 250), case.int(1, 5), case.int(1, 4)
    boxes = clustered_boxes(P, case.g, dtype) if case.chance(0.5) else random_boxes(P, case.g, dtype)
    boxes = case.sprinkle(boxes, case.pick([0, 0.01, 0.1]))
    scores = random_scores(C, P, case.g, dtype, concentration=case.pick([0.5, 4.0, 20.0]))
    scores = case.sprinkle(scores, case.pick([0, 0.01]), (math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0))
    if case.chance(0.2):  # many exact score ties
        scores = (scores * 4).round() / 4
    coeffs = case.sprinkle(random_coeffs(P, k, case.g, dtype), case.pick([0, 0.05]))
    args = dict(
        iou_threshold=case.pick([0.0, 1e-7, 0.3, 0.5, 1.0, 1.5, math.inf]),
        top_k=case.pick([0, 1, 5, 64, 65, 200, 2**63 - 1]),
        score_threshold=case.pick([-math.inf, 0.0, 0.05, 0.5, 1.0, math.inf]),
        max_detections=case.pick([0, 1, 10, 100, 10**6, 2**63 - 1]),
    )
    return boxes, scores, coeffs, args


def fuzz_fast_nms(case: Case):
    boxes, scores, coeffs, args = nms_inputs(case)
    method = case.pick(["fast", "cluster"])
    twin = reference.fast_nms if method == "fast" else reference.cluster_nms
    want = twin(boxes, scores, coeffs, **args)
    got = ops.fast_nms(boxes, scores, coeffs, **args, method=method)
    if not all(equal_nan(g, w) for g, w in zip(got, want)):
        fail("fast_nms", case, f"CPU kernel ({method}) differs from the reference")
    *padded, count = EMULATED.fast_nms(
        boxes,
        scores,
        coeffs,
        args["iou_threshold"],
        args["top_k"],
        args["score_threshold"],
        args["max_detections"],
        method,
    )
    n = int(count)
    if not all(equal_nan(p[:n], w) for p, w in zip(padded, want)):
        fail("fast_nms", case, f"emulated CUDA kernel ({method}) differs from the reference")
    if any(bool(p[n:].ne(0).any()) for p in padded):
        fail("fast_nms", case, "padding rows are not zero")


def same_boxes(a: torch.Tensor, b: torch.Tensor, rtol: float) -> torch.Tensor:
    """Rows of a and b ([..., 4]) equal, or within rtol of the row's largest coordinate."""
    if rtol == 0:
        return (a == b).all(-1)
    scale = torch.maximum(a.abs(), b.abs()).amax(-1, keepdim=True)
    return ((a - b).abs() <= rtol * scale).all(-1)


def detections_mismatch(got, want, rtol=2e-6, box_rtol=0.0):
    """Why detect's detections differ from the reference's, or None: scores must agree to
    ``rtol`` (the fused softmax's exp may differ by ulps), coeffs and labels exactly, boxes
    exactly (or to ``box_rtol`` where decode's exp differs too), except that rows with
    scores within ``rtol`` of each other may swap (near-ties)."""
    for name, g, w in zip(("boxes", "coeffs", "labels", "scores"), got, want):
        if g.shape != w.shape or g.dtype != w.dtype:
            return f"{name}: {tuple(g.shape)} {g.dtype} vs {tuple(w.shape)} {w.dtype}"
    (gb, gc, gl, gs), (wb, wc, wl, ws) = got, want
    if not torch.allclose(gs, ws, rtol=rtol, atol=1e-37):
        return "scores differ"
    for i in range(len(gs)):
        if bool(same_boxes(gb[i], wb[i], box_rtol)) and equal_nan(gc[i], wc[i]) and gl[i] == wl[i]:
            continue
        tied = (ws - gs[i]).abs() <= rtol * gs[i].abs()
        twin = tied & (wl == gl[i]) & same_boxes(wb, gb[i][None], box_rtol)
        twin &= ((wc == gc[i]) | (torch.isnan(wc) & torch.isnan(gc[i]))).all(1)
        if not bool(twin.any()):
            return f"row {i} (score {float(gs[i])}, label {int(gl[i])}) has no near-tied twin"
    return None


def fuzz_detect(case: Case):
    dtype = case.pick(DTYPES)
    P, C, k = case.int(0, 250), case.int(0, 5), case.int(1, 4)
    loc, logits, coeffs, priors = random_head(
        P, C, k, case.g, dtype, concentration=case.pick([0.5, 4.0, 20.0]), clustered=case.chance(0.5)
    )
    loc = case.sprinkle(loc, case.pick([0, 0.01, 0.1]))
    logits = case.sprinkle(logits, case.pick([0, 0.01]), (math.nan, math.inf, -math.inf, 0.0, 1e30))
    if case.chance(0.2):  # many exact logit ties
        logits = logits.round()
    coeffs = case.sprinkle(coeffs, case.pick([0, 0.05]))
    _, _, _, args = nms_inputs(case)
    args["method"] = case.pick(["fast", "cluster"])
    variances = case.pick([(0.1, 0.2), (1.0, 1.0)])
    want = reference.detect(loc, logits, coeffs, priors, variances, **args)
    problem = detections_mismatch(ops.detect(loc, logits, coeffs, priors, variances, **args), want)
    if problem:
        fail("detect", case, f"CPU kernel: {problem}")
    *padded, count = EMULATED.detect(
        loc,
        logits,
        coeffs,
        priors,
        *variances,
        args["iou_threshold"],
        args["top_k"],
        args["score_threshold"],
        args["max_detections"],
        args["method"],
    )
    n = int(count)
    problem = detections_mismatch(tuple(t[:n] for t in padded), want, box_rtol=1e-6)
    if problem:
        fail("detect", case, f"emulated CUDA kernel: {problem}")
    if any(bool(p[n:].ne(0).any()) for p in padded):
        fail("detect", case, "padding rows are not zero")


def mask_inputs(case: Case, extreme: bool):
    dtype = case.pick(DTYPES)
    H, W, k, N = case.int(1, 24), case.int(1, 24), case.int(1, 8), case.int(0, 8)
    proto = random_proto(H, W, k, case.g, dtype)
    coeffs = random_coeffs(N, k, case.g, dtype)
    boxes = case.sprinkle(random_boxes(N, case.g, dtype), case.pick([0, 0.05, 0.2]))
    if extreme:
        proto = case.sprinkle(proto * case.pick([1.0, 1e20]), 0.1)
        coeffs = case.sprinkle(coeffs * case.pick([1.0, 1e10]), 0.1)
    padding = case.pick([0, 1, 2.5, 1e6])
    return proto, coeffs, boxes, padding


def footprint_violations(masks: torch.Tensor, boxes: torch.Tensor, proto_hw, padding) -> bool:
    """Whether any True pixel lies where the reference's crop is all zero."""
    H, W = proto_hw
    if masks.numel() == 0:
        return False
    support = reference.crop(torch.ones(H, W, boxes.shape[0], dtype=boxes.dtype), boxes, padding)
    support = F.interpolate(support.permute(2, 0, 1)[None], masks.shape[-2:], mode="bilinear", align_corners=False)[0]
    return bool((masks & ~(support > 0)).any())


def fuzz_assemble_masks(case: Case):
    extreme = case.chance(0.3)
    proto, coeffs, boxes, padding = mask_inputs(case, extreme)
    want = reference.assemble_masks(proto, coeffs, boxes, padding)
    for name, got in (
        ("CPU", ops.assemble_masks(proto, coeffs, boxes, padding)),
        ("emulated CUDA", EMULATED.assemble_masks(proto, coeffs, boxes, padding)),
    ):
        if got.shape != want.shape or got.dtype != want.dtype:
            fail("assemble_masks", case, f"{name}: shape/dtype {got.shape} {got.dtype}")
        outside = (want == 0) & (got != 0) & ~torch.isnan(got)
        inside_range = torch.isnan(got) | ((got >= 0) & (got <= 1))
        if bool(outside.any()) and not extreme or not bool(inside_range.all()):
            fail("assemble_masks", case, f"{name}: values outside [0, 1] or outside the crop")
        if not extreme and not torch.allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True):
            fail("assemble_masks", case, f"{name} kernel differs from the reference")


def fuzz_paste_masks(case: Case):
    extreme = case.chance(0.3)
    proto, coeffs, boxes, padding = mask_inputs(case, extreme)
    size = (case.pick([1, 2, 7, 31, 64]), case.pick([1, 3, 17, 48]))
    threshold = case.pick([0.0, 0.5, 0.999, 1.0])
    want = reference.paste_masks(proto, coeffs, boxes, size, threshold, padding)
    values = None
    for name, got in (
        ("CPU", ops.paste_masks(proto, coeffs, boxes, size, threshold, padding)),
        ("emulated CUDA", EMULATED.paste_masks(proto, coeffs, boxes, list(size), threshold, padding)),
    ):
        if got.shape != want.shape or got.dtype != torch.bool:
            fail("paste_masks", case, f"{name}: shape/dtype {got.shape} {got.dtype}")
        if footprint_violations(got, boxes, proto.shape[:2], padding):
            fail("paste_masks", case, f"{name}: True pixels outside the box's footprint")
        if extreme or want.numel() == 0:
            continue
        if values is None:
            masks = reference.assemble_masks(proto, coeffs, boxes, padding)
            values = F.interpolate(masks[None], size, mode="bilinear", align_corners=False)[0]
        differ = (got != want) & ((values - threshold).abs() > 1e-5)
        if bool(differ.any()):
            fail("paste_masks", case, f"{name}: {int(differ.sum())} pixels differ away from the threshold")


def fuzz_make_priors(case: Case):
    levels = case.int(0, 4)
    feature_sizes = [case.int(0, 9) for _ in range(2 * levels)]
    anchors = [case.int(0, 3) for _ in range(levels)]
    anchor_wh = torch.rand(sum(anchors), 2, generator=case.g, dtype=torch.float64) * case.pick([1e-3, 1.0, 1e3])
    got = torch.ops.yolact_fast.make_priors(anchor_wh, feature_sizes, anchors)
    if not torch.equal(got, EMULATED.make_priors(anchor_wh, feature_sizes, anchors)):
        fail("make_priors", case, "CPU and emulated CUDA kernels differ")
    expected = []
    offset = 0
    for level, a in enumerate(anchors):
        h, w = feature_sizes[2 * level], feature_sizes[2 * level + 1]
        for j in range(h):
            for i in range(w):
                for n in range(a):
                    wa, ha = anchor_wh[offset + n].tolist()
                    expected.append([(i + 0.5) / w, (j + 0.5) / h, wa, ha])
        offset += a
    if not torch.equal(got, torch.tensor(expected, dtype=torch.float32).view(-1, 4)):
        fail("make_priors", case, "differs from the direct float64 computation")


FUZZERS = {
    "make_priors": fuzz_make_priors,
    "decode_boxes": fuzz_decode_boxes,
    "fast_nms": fuzz_fast_nms,
    "detect": fuzz_detect,
    "assemble_masks": fuzz_assemble_masks,
    "paste_masks": fuzz_paste_masks,
}


def run(op: str, cases: int, seed: int = 0) -> None:
    """Runs ``cases`` random cases of ``op``; raises AssertionError at the first mismatch."""
    for i in range(cases):
        FUZZERS[op](Case(seed * 1_000_003 + i))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="cases per op")
    parser.add_argument("--op", choices=sorted(FUZZERS), action="append", help="op(s) to fuzz (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    for op in args.op or list(FUZZERS):
        start = time.perf_counter()
        run(op, args.cases, args.seed)
        print(f"{op}: {args.cases} cases passed in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
