"""A modelled H100 time for the post-network ops: bytes / 3.35 TB/s + 3 us per launch, plus
a latency term for the kernels that run few warps per SM (one block per class or one block
in all): their dependent rounds of global loads x ~500 cycles at 1.755 GHz.

This is a model, not a measurement: every figure derived here is labelled "modelled".
Each launch reads its inputs and writes its outputs once from DRAM (data passed between
launches goes through DRAM, re-reads inside one kernel are assumed to hit the caches);
overlap of launches, occupancy and compute are ignored. It is a floor for bandwidth-bound
kernels and charges each launch its typical CPU-side cost. The latency term (see
``latency_us``) covers the block scans of class_nms's select and of the merge in its last
block (their instruction issue as a count per scanned item), its IoU tests (issue per
tested pair) and its serial greedy row walk; shared-atomic contention and barrier waits are
not modelled.

Two sides are modelled on the official shapes (19,248 priors, 81 classes, 138x138x32
prototypes, 100 detections, 480x640 output):
- ours: the custom kernels the CUDA launch code runs (recorded under the host emulation)
  plus the ATen ops it calls (recorded by the PyTorch profiler while it runs on CPU);
- official: the op sequence of the official YOLACT code (layers/box_utils.py decode and
  jaccard, layers/functions/detection.py Detect/fast_nms, layers/output_utils.py
  postprocess and crop), written down in ``official_steps``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence

H100_BYTES_PER_S = 3.35e12  # H100 SXM HBM3
LAUNCH_US = 3.0
SORT_PASSES = 4  # radix sort of 32-bit keys with 8-bit digits (modelled)
TOPK_PASSES = 2  # radix select reads (modelled)
CLOCK_HZ = 1.755e9  # H100 SXM sustained SM clock (boost is 1.98 GHz)
GLOBAL_LATENCY_CYCLES = 500  # a dependent global load served by L2
SELECT_SCANS = 4  # class_nms's select: 3 radix passes + the collection (golden data: most classes)
MERGE_SCANS = 3  # the merge: 2 radix passes + the collection (modelled)
# With the keys packed into shared memory, pass 1 narrows them to the k-th key's first-byte
# bucket (narrow_packed_keys), which the later passes and the collection scan: in full
# scans, 2 + the bucket's share x its scans (golden yolact_base data, a Python twin of the
# select: 42,682 key visits per class for 17,907 candidates; 12,307 in merge for 6,048
# survivors).
SELECT_SCANS_PACKED = 2.4
MERGE_SCANS_PACKED = 2.0
GREEDY_ROW_CYCLES = 60  # greedy walk: a shuffle, a shared load and a branch per row
SHARED_LATENCY_CYCLES = 30  # a dependent shared-memory load
SCAN_BATCH = 8  # items whose loads a scanning thread issues together (kScanBatch, nms_kernels.cuh)
# SASS instructions per scanned item: the select of class_nms<float> on sm_90 runs ~25 per
# eligible item (order bits, key byte, shared atomic) plus ~5 per prefix byte it compares.
# Kept when the first pass's loop went from 42 to 28 static instructions per item (32-bit
# indices, immediate load offsets, the digit known; tests/test_sass.py): not re-derived
# per pass, so the model does not credit that.
SCAN_INSTRUCTIONS = 35
ISSUE_LANES = 4 * 32  # per SM and cycle: 4 schedulers x 32 lanes
# SASS instructions per row a warp of class_nms<float>'s IoU tests steps (one pair per
# lane): Fast NMS's loop over a column's rows on sm_90 runs 32 (the row's box and staged
# area: LDS.128 + LDS, broadcast, and their two cursors; 6 FMNMX, 4 FADD, FMUL; the
# division: MUFU.RCP, FCHK, 5 FFMA, its slow-path branch and BSSY/BSYNC; the threshold
# reloaded after the slow path's call site, a register move, the compare and early exit;
# the loop), 34 in the SASS with the slow path's MOV + CALL (not taken for normal
# quotients). tests/test_sass.py holds the loop to this constant.
IOU_PAIR_INSTRUCTIONS = 32
IOU_SPLIT = 4  # row parts of a 64 x 64 tile, a warp each per half of its columns (kIouSplit)


@dataclasses.dataclass(frozen=True)
class Shapes:
    priors: int = 19248
    classes: int = 80  # foreground
    k: int = 32
    proto_h: int = 138
    proto_w: int = 138
    detections: int = 100
    top_k: int = 200
    out_h: int = 480
    out_w: int = 640
    levels: int = 5
    footprint: float = 1.0  # share of the N x out_h x out_w masks inside the crop boxes

    @property
    def words(self) -> int:
        return math.ceil(self.top_k / 64)


@dataclasses.dataclass(frozen=True)
class Step:
    """One device-side step: `launches` kernel launches moving `read` + `written` bytes."""

    name: str
    launches: int
    read: float
    written: float
    latency_us: float = 0.0  # dependent-latency time beyond the bandwidth term

    @property
    def modelled_us(self) -> float:
        return (self.read + self.written) / H100_BYTES_PER_S * 1e6 + LAUNCH_US * self.launches + self.latency_us


def total(steps: Iterable[Step]) -> Dict[str, float]:
    steps = list(steps)
    return {
        "launches": sum(s.launches for s in steps),
        "bytes": sum(s.read + s.written for s in steps),
        "modelled_us": sum(s.modelled_us for s in steps),
    }


# --- our custom kernels: bytes per launch ----------------------------------------------------

F32, I64 = 4, 8


def _threads(dims: Optional[Sequence[int]]) -> int:
    return math.prod(dims) if dims else 0


def _kernel_bytes(s: Shapes) -> Dict[str, Callable[[dict], tuple]]:
    """Kernel name -> function of a launch record ({"grid", "block", ...}) giving the
    (read, written) bytes of that launch on the shapes ``s``. The rule for every step,
    ATen's too: a launch reads its inputs once and writes its outputs once (data passed
    between launches goes through DRAM; re-reads inside one kernel hit the caches)."""
    P, C, K, k, M = s.priors, s.classes, s.top_k, s.k, s.detections
    proto = s.proto_h * s.proto_w * k * F32
    masks = M * s.proto_h * s.proto_w * F32
    out = M * s.out_h * s.out_w  # bool
    det = M * (4 * F32 + k * F32 + I64 + F32)  # boxes, coeffs, label, score
    L = min(M, K)  # survivors per class the merge ranks
    return {
        "priors_level": lambda r: (2 * 8 * 9, _threads(r.get("grid")) * _threads(r.get("block")) * 4 * F32),
        "decode": lambda r: (2 * P * 4 * F32, P * 4 * F32),
        "detect_scores": lambda r: (2 * P * 4 * F32 + P * (C + 1) * F32, P * 4 * F32 + C * P * F32 + P),
        "candidate_flags": lambda r: (C * P * F32 + P * 4 * F32, P),
        # one block per class: top K of the P scores, their boxes gathered, the first L
        # survivors (score, index, flag) written; then its last block: top M of the C x L
        # survivors, their rows gathered
        "class_nms": lambda r: (
            C * P * F32 + P + C * K * 4 * F32 + C * L * (F32 + 1) + M * I64 + det,
            C * L * (F32 + I64 + 1) + det + I64,
        ),
        # fused mask kernels: proto, coefficients and boxes in. assemble_masks writes only
        # each box's footprint (the rest is zeroed by an ATen memset, charged as its own
        # step); paste_masks writes every output byte once (zeros off the footprint).
        "assemble_masks": lambda r: (proto + M * (k + 4) * F32, masks * s.footprint),
        "paste_masks": lambda r: (proto + M * (k + 4) * F32, out),
    }


def _cycles_us(cycles: float) -> float:
    return cycles / CLOCK_HZ * 1e6


def _scan_cycles(n: int, threads: int, batch: int, packed: bool, scans: float) -> float:
    """A block scan of n items, ``scans`` times: the rounds of loads of the first from global
    memory, those of the later ones from global memory too or, with the keys packed into
    shared memory, from there; plus the issue of every scanned item."""
    first = math.ceil(n / (threads * batch)) * GLOBAL_LATENCY_CYCLES
    later = math.ceil(n / threads) * SHARED_LATENCY_CYCLES if packed else first
    return first + (scans - 1) * later + scans * n * SCAN_INSTRUCTIONS / ISSUE_LANES


def lanes_per_column(columns: int) -> int:
    """lanes_per_column of csrc/cuda/nms_kernels.cuh: lanes sharing a column of a warp whose
    half of a column tile holds ``columns`` ranked boxes (float32 kernels)."""
    lanes = 1
    while lanes < 64 // IOU_SPLIT and columns * 2 * lanes <= 32:
        lanes *= 2
    return lanes


def iou_warp_rows(n: int, greedy: bool = False) -> int:
    """Row steps that the warps of class_nms's IoU tests take for n ranked boxes, each
    IOU_PAIR_INSTRUCTIONS warp instructions however many of its 32 lanes hold a pair: per
    64 x 64 tile on or right of the diagonal, a warp per (part, half of the columns); lane
    group g of its lanes_per_column(c) groups walks the rows part + IOU_SPLIT (g + lanes m)
    of the row tile, with Fast NMS as far as the warp's last column needs (rows i < j;
    early exits not counted), greedy all 16 / lanes steps. Warps with no column < n are
    counted as none (in the kernel: a greedy step of empty ballots; the log2(lanes) shuffles
    of a narrow Fast NMS warp are not counted either: under a step per warp)."""
    tiles = math.ceil(n / 64)
    total = 0
    for row_tile in range(tiles):
        for col in range(row_tile, tiles):
            for part in range(IOU_SPLIT):
                for half in range(2):
                    first_column = 64 * col + 32 * half
                    if first_column >= n:
                        continue
                    lanes = lanes_per_column(n - first_column)
                    if greedy:
                        total += 64 // IOU_SPLIT // lanes
                        continue
                    last_column = min(first_column + 32 // lanes - 1, n - 1)
                    end = min(last_column, 64 * (row_tile + 1))  # rows i < j of the row tile
                    total += len(range(64 * row_tile + part, end, IOU_SPLIT * lanes))
    return total


def latency_us(record: dict, s: Shapes) -> float:
    """Modelled latency of one class_nms launch beyond its bytes (its blocks, one per class,
    and the merge in the last one cannot hide it with other warps): each thread of a block
    scan walks its items in rounds (one round = the loads of ``batch`` items issued
    together, then their use), so a scan costs ceil(n / (threads x batch)) x
    GLOBAL_LATENCY_CYCLES; when the first pass packed 8-byte keys of the n items into shared
    memory (the launch took the "packed_keys" path; the merge's: "merge_packed_keys"), the
    later scans read them there: ceil(n / threads) x SHARED_LATENCY_CYCLES, and there are
    fewer of them (SELECT_SCANS_PACKED: pass 1 narrows the keys). Plus the issue of
    SCAN_INSTRUCTIONS per item on the block's one SM (added, not overlapped: an upper side).
    A class's select scans n = the priors, then issues IOU_PAIR_INSTRUCTIONS per warp row of
    its IoU tests (iou_warp_rows: 4 warp instructions per cycle, idle lanes of diagonal and
    partial tiles included) and, for greedy (``record["greedy"]``), walks its top_k rows
    serially; the merge, after the last class, ranks n = classes x min(detections, top_k)
    slots."""
    threads = _threads(record.get("block"))
    if re.sub(r"<.*", "", record["name"]) != "class_nms" or not threads:
        return 0.0
    batch = record.get("scan_batch", SCAN_BATCH)
    paths = record.get("paths", ())
    packed, merge_packed = "packed_keys" in paths, "merge_packed_keys" in paths
    cycles = _scan_cycles(s.priors, threads, batch, packed, SELECT_SCANS_PACKED if packed else SELECT_SCANS)
    greedy = bool(record.get("greedy"))
    cycles += iou_warp_rows(s.top_k, greedy) * IOU_PAIR_INSTRUCTIONS / (ISSUE_LANES / 32)
    cycles += s.top_k * GREEDY_ROW_CYCLES if greedy else 0
    slots = s.classes * min(s.detections, s.top_k)
    cycles += _scan_cycles(slots, threads, batch, merge_packed, MERGE_SCANS_PACKED if merge_packed else MERGE_SCANS)
    return _cycles_us(cycles)


def kernel_step(record: dict, s: Shapes) -> Step:
    """Step of one custom-kernel launch record; bytes NaN when no formula knows its name."""
    base = re.sub(r"<.*", "", record["name"])
    formula = _kernel_bytes(s).get(base)
    read, written = formula(record) if formula else (math.nan, math.nan)
    return Step(f"kernel {base}", 1, read, written, latency_us(record, s))


def known_kernel(name: str) -> bool:
    return re.sub(r"<.*", "", name) in _kernel_bytes(Shapes())


# --- ATen ops recorded by the profiler -------------------------------------------------------

# no device work: allocations, views, metadata
_NO_LAUNCH = {
    "empty",
    "empty_like",
    "empty_strided",
    "narrow",
    "slice",
    "select",
    "view",
    "reshape",
    "_reshape_alias",
    "as_strided",
    "t",
    "transpose",
    "permute",
    "expand",
    "expand_as",
    "unsqueeze",
    "squeeze",
    "alias",
    "detach",
    "lift_fresh",
    "resize_",
    "unbind",
    "split",
    "chunk",
    "_unsafe_view",
    "numpy_T",
    "result_type",
    "promote_types",
    "detach_",
    "lift_fresh_copy",
    "is_nonzero",
    "size",
    "stride",
    "set_",
    "unfold",
    "view_as",
}
# ops whose own kernel(s) we model (their CPU-side children are ignored); value: launches
_LEAF_LAUNCHES = {"sort": SORT_PASSES + 2, "topk": 3, "nonzero": 2, "_local_scalar_dense": 1}
_ELEMENT_SIZE = {
    "float": 4,
    "double": 8,
    "c10::Half": 2,
    "c10::BFloat16": 2,
    "long int": 8,
    "int": 4,
    "bool": 1,
    "unsigned char": 1,
    "signed char": 1,
    "short int": 2,
}
# composite ops: the device work is their children's (copy_, fill_, ...)
_COMPOSITE = {
    "contiguous",
    "to",
    "_to_copy",
    "clone",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "new_zeros",
    "new_full",
    "new_empty",
    "reshape",
    "flatten",
    "item",
    "index_put_",
    "index_put",
    "repeat",
    "type_as",
    "linear",
    "matmul",
    "softmax",
    "einsum",
    "max_pool2d",
}


def _tensor_bytes(event) -> List[int]:
    sizes = []
    for shape, dtype in zip(event.input_shapes, event.input_dtypes):
        if dtype in _ELEMENT_SIZE and isinstance(shape, list) and all(isinstance(d, int) for d in shape):
            sizes.append(math.prod(shape) * _ELEMENT_SIZE[dtype] if shape else _ELEMENT_SIZE[dtype])
    return sizes


def _aten_step(event) -> Optional[Step]:
    name = event.name.split("::", 1)[1]
    base = name.split(".")[0]
    sizes = _tensor_bytes(event)
    read = float(sum(sizes))
    largest = float(max(sizes, default=0))
    if base in _LEAF_LAUNCHES:
        if base == "sort":
            numel = largest / 4
            traffic = numel * (4 + I64) * SORT_PASSES
            return Step(f"aten::{base}", _LEAF_LAUNCHES[base], traffic + largest, traffic + numel * (4 + I64))
        if base == "topk":
            return Step(f"aten::{base}", _LEAF_LAUNCHES[base], largest * TOPK_PASSES, 0.0)
        return Step(f"aten::{base}", _LEAF_LAUNCHES[base], read, largest)
    if base in ("fill_", "zero_"):
        return Step(f"aten::{base}", 1, 0.0, largest)
    if base == "copy_":  # (dst, src)
        return Step("aten::copy_", 1, sizes[1] if len(sizes) > 1 else largest, largest)
    if base in ("sum", "max", "min", "amax", "amin", "any", "all", "mean", "prod", "argmax"):
        return Step(f"aten::{base}", 1, read, 0.0)
    return Step(f"aten::{base}", 1, read, largest)  # element-wise-like


def aten_steps(events) -> List[Step]:
    """Device steps of the ATen ops in a profile: each op that launches work, outermost
    first (children of a modelled op are its CPU implementation, not counted)."""
    steps: List[Step] = []

    def visit(event):
        base = event.name.split("::", 1)[1].split(".")[0] if event.name.startswith("aten::") else None
        if base in _NO_LAUNCH:
            return
        if base is None or base in _COMPOSITE:  # not an ATen op, or one made of others
            for child in event.cpu_children:
                visit(child)
            return
        steps.append(_aten_step(event))
        if base == "index":  # a boolean mask index runs nonzero first
            for child in event.cpu_children:
                if child.name == "aten::nonzero":
                    visit(child)

    for event in events:
        if event.cpu_parent is None:
            visit(event)
    return steps


# --- the official op sequence ------------------------------------------------------------------


def official_steps(s: Shapes, candidates: Optional[int] = None) -> Dict[str, List[Step]]:
    """Per op, the device steps of the official YOLACT code (batch 1, eval), with their
    launches. ``candidates``: priors whose best class score passes 0.05 (default: all).
    A boolean-mask index is modelled as nonzero (2 launches, and a host sync) + index (1).

    decode (box_utils.decode): loc_xy*v0, *p_wh, +p_xy; loc_wh*v1, exp, *p_wh; cat;
      boxes[:, :2] -= boxes[:, 2:]/2 (div, sub_); boxes[:, 2:] += boxes[:, :2]: 10.
    softmax over 81 classes (in the head, eval): 1.
    Detect: conf.transpose(2, 1).contiguous(): 1 (not in the fast_nms row: our fast_nms takes
      [C, P] scores too); max over classes, > thresh: 2;
      scores[:, keep], boxes[keep], coeffs[keep]: 9.
    fast_nms: sort [80, n] descending; idx[:, :200].contiguous(), boxes[idx], coeffs[idx]: 3;
      jaccard on [80, 200, 200]: min, max of corners, sub, clamp, prod(3), two areas (3 each),
      add, sub, div: 14; triu_, max over dim 1, <= thr: 3; arange: 1;
      classes/boxes/coeffs/scores[keep]: 12; sort of <= 16,000 kept scores;
      classes/boxes/coeffs[idx[:100]]: 3.
    postprocess (output_utils.postprocess, crop_masks=True): proto @ coeffs.T: 1; sigmoid: 1;
      crop: sanitize_coordinates for x and y (mul, mul, min, max, sub, clamp, add, clamp: 16),
      two aranges, four compares, three products, .float(), masks * crop: 11;
      permute(2, 0, 1).contiguous(): 1; F.interpolate (bilinear) to 480x640: 1; gt_(0.5) in
      place on float: 1; boxes: sanitize_coordinates x, y with the column writes (20), .long(): 1.
    """
    P, C, K, k, N = s.priors, s.classes, s.top_k, s.k, s.detections
    n = P if candidates is None else candidates
    half = P * 2 * F32  # a [P, 2] float tensor
    decode = [
        Step("decode: loc_xy * v0 * p_wh + p_xy", 3, 5 * half, 3 * half),
        Step("decode: p_wh * exp(loc_wh * v1)", 3, 4 * half, 3 * half),
        Step("decode: cat", 1, 2 * half, 2 * half),
        Step("decode: xy -= wh / 2; wh += xy", 3, 5 * half, 3 * half),
    ]
    softmax = [Step("softmax [P, 81]", 1, P * (C + 1) * F32, P * (C + 1) * F32)]
    conf = P * C * F32
    transpose = [Step("conf.transpose(2, 1).contiguous()", 1, P * (C + 1) * F32, P * (C + 1) * F32)]
    select = [
        Step("max over classes, > thresh", 2, conf + P * F32, P * F32 + P),
        Step(
            "scores[:, keep], boxes[keep], coeffs[keep]",
            9,
            conf + P * (4 + k) * F32 + 3 * P,
            3 * n * I64 + C * n * F32 + n * (4 + k) * F32,
        ),
    ]
    pairs = C * n * (F32 + I64) * SORT_PASSES  # radix passes over (key, index)
    cube = C * K * K  # [80, 200, 200]
    kept = C * K
    nms = [
        Step("sort [80, n] descending", SORT_PASSES + 2, C * n * F32 + pairs, pairs + C * n * (F32 + I64)),
        Step(
            "idx[:, :200].contiguous(), boxes[idx], coeffs[idx]",
            3,
            3 * kept * I64 + kept * (4 + k) * F32,
            kept * I64 + kept * (4 + k) * F32,
        ),
        Step("jaccard: min/max corners, sub, clamp", 4, 3 * cube * 2 * F32, 4 * cube * 2 * F32),
        Step("jaccard: prod, areas, union, div", 10, cube * 2 * F32 + 4 * cube * F32, 4 * cube * F32),
        Step("triu_, max over dim 1, <= thr", 3, 2 * cube * F32 + kept * F32, cube * F32 + kept * (F32 + I64 + 1)),
        Step(
            "arange; classes/boxes/coeffs/scores[keep]",
            13,
            kept * (I64 + (4 + k) * F32 + F32 + 4),
            4 * kept * I64 + kept * (I64 + (4 + k) * F32 + F32),
        ),
        Step(
            "sort kept scores; classes/boxes/coeffs[idx[:100]]",
            SORT_PASSES + 2 + 3,
            kept * F32 + kept * (F32 + I64) * SORT_PASSES + N * (2 * I64 + (4 + k) * F32),
            kept * (F32 + I64) * SORT_PASSES + N * (I64 + (4 + k) * F32),
        ),
    ]
    hw = s.proto_h * s.proto_w
    masks = N * hw * F32
    flags = N * hw  # a [h, w, N] bool tensor
    image = N * s.out_h * s.out_w * F32
    assemble = [
        Step("proto @ coeffs.T", 1, hw * k * F32 + N * k * F32, masks),
        Step("sigmoid", 1, masks, masks),
        Step("crop: sanitize_coordinates x, y", 16, 10 * N * F32, 8 * N * F32),
        Step("crop: aranges, 4 compares, 3 products, float, mul", 11, 7 * flags + 2 * masks, 7 * flags + 2 * masks),
        Step("permute(2, 0, 1).contiguous()", 1, masks, masks),
    ]
    paste = [
        Step("F.interpolate bilinear -> 480x640", 1, masks, image),
        Step("gt_(0.5) in place", 1, image, image),
    ]
    boxes = [Step("boxes: sanitize_coordinates x, y; .long()", 21, 14 * N * F32, 12 * N * F32 + 4 * N * I64)]
    return {
        "make_priors": [],  # host-side Python loops, cached per input size
        "decode_boxes": decode,
        "fast_nms": select + nms,
        "detect": decode + softmax + transpose + select + nms,
        "assemble_masks": assemble,
        "paste_masks": assemble + paste,
        "post-network": decode + softmax + transpose + select + nms + assemble + paste,
        "post-network, padded": decode + softmax + transpose + select + nms + assemble + paste,
        "segment postprocess": decode + softmax + transpose + select + nms + assemble + paste + boxes,
    }
