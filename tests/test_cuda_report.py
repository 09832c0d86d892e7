"""tools/cuda_report.py: SASS parsing on canned text, the roofline model, and (when nvcc
is installed) one kernel compiled and reported end to end."""

import math
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import cuda_report  # noqa: E402
import gpu_model  # noqa: E402
import sass  # noqa: E402

from yolact_fast import _emulation  # noqa: E402

KERNEL_CONSTANTS = _emulation.emulated_cuda.kernel_constants

MANGLED = "_ZN2yf7kernels12_GLOBAL__N_111paste_masksIfEEvPKT_Pb"

# A grid-stride loop (head .L_x_5, latch at 0x0200) whose body branches around a block;
# the taken side holds an FP64 conversion and a call to 64-bit division; a byte store on
# the join; the subroutine after the kernel ends with RET.
CANNED = textwrap.dedent(f"""\
    //--------------------- .text.{MANGLED} --------------------------
    \t.section\t.text.{MANGLED},"ax",@progbits
    .text.{MANGLED}:
            .type           {MANGLED},@function
    {MANGLED}:
            /*0000*/                   LDC R1, c[0x0][0x28] ;
            /*0010*/                   S2R R2, SR_TID.X ;
            /*0020*/                   ISETP.GE.U32.AND P0, PT, R2, UR6, PT ;
            /*0030*/               @P0 EXIT ;
    .L_x_5:
            /*0040*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
            /*0050*/                   FSETP.GT.AND P1, PT, R4, RZ, PT ;
            /*0060*/               @P1 BRA `(.L_x_6) ;
            /*0070*/                   F2F.F64.F32 R8, R4 ;
            /*0080*/                   F2I.S64.F64.FLOOR R8, R8 ;
            /*0090*/                   MOV R4, 0xb0 ;
            /*00a0*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64) ;
            /*00b0*/                   I2F.U32.RP R3, UR8 ;
            /*00c0*/                   MUFU.RCP R3, R3 ;
    .L_x_6:
            /*00d0*/                   LDS.U.64 R10, [R2] ;
            /*00e0*/                   STS [R2], R10 ;
            /*00f0*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
            /*0100*/                   STG.E.U8 desc[UR4][R2.64], R5 ;
            /*0110*/                   IADD3 R2, P0, R2, UR9, RZ ;
            /*0200*/              @!P0 BRA `(.L_x_5) ;
            /*0210*/                   EXIT ;
    .L_x_7:
            /*0220*/                   BRA `(.L_x_7);
    $__internal_0_$__cuda_sm20_div_s64:
            /*0230*/                   DADD R2, R2, R4 ;
            /*0240*/                   IMAD R2, R2, R3, RZ ;
            /*0250*/                   RET.REL.NODEC R4 `({MANGLED}) ;
    """)

CANNED_USAGE = textwrap.dedent(f"""\

    Resource usage:
     Common:
      GLOBAL:28 CONSTANT[4]:224
     Function {MANGLED}:
      REG:32 STACK:16 SHARED:1024 LOCAL:8 CONSTANT[0]:600 TEXTURE:0 SURFACE:0 SAMPLER:0
    """)


@pytest.fixture(scope="module")
def function():
    functions = sass.parse_disassembly(CANNED)
    assert list(functions) == [MANGLED]
    return functions[MANGLED]


def test_parse_instructions_and_labels(function):
    assert len(function.instructions) == 24
    assert function.labels[".L_x_5"] == 0x40
    assert function.labels["$__internal_0_$__cuda_sm20_div_s64"] == 0x230
    store = [i for i in function.instructions if i.root == "STG"][0]
    assert (store.addr, store.opcode, store.predicated) == (0x100, "STG.E.U8", False)
    branch = [i for i in function.instructions if i.addr == 0x60][0]
    assert branch.predicated and branch.is_branch and branch.target == ".L_x_6" and not branch.ends_flow


def test_loops_hot_loop_and_regions(function):
    # the self-branch at 0x220 is a (trap) loop too; the hot loop is the larger one
    assert sass.loops(function) == [sass.Loop(0x40, 0x200), sass.Loop(0x220, 0x220)]
    assert sass.hot_loop(function) == sass.Loop(0x40, 0x200)
    assert sass.store_loop(function) == sass.Loop(0x40, 0x200)
    assert [i.addr for i in sass.kernel_body(function)][-1] == 0x220
    assert [i.addr for i in function.subroutine("$__internal_0_$__cuda_sm20_div_s64")] == [0x230, 0x240, 0x250]


def test_instruction_mix(function):
    loop = sass.hot_loop(function)
    mix = sass.instruction_mix(function, function.between(loop.head, loop.latch))
    assert mix["instructions"] == 15 and mix["callee_instructions"] == 3
    assert mix["fp64"] == 3  # F2F.F64.F32, F2I.S64.F64, DADD in the callee
    assert mix["int64_div_calls"] == 1 and mix["int_div_sequences"] == 1
    assert mix["calls"] == {"sm20_div_s64": 1}
    assert mix["global_load"] == {"128": 1} and mix["global_store"] == {"8": 1}
    assert mix["shared_load"] == {"64": 1} and mix["shared_store"] == {"32": 1}
    assert mix["barriers"] == 1 and mix["local_load"] == {}


NESTED = textwrap.dedent(f"""\
    \t.section\t.text.{MANGLED},"ax",@progbits
    .L_x_0:
            /*0000*/                   S2R R2, SR_TID.X ;
    .L_x_1:
            /*0010*/                   LDG.E R4, desc[UR4][R2.64] ;
            /*0020*/                   FADD R5, R5, R4 ;
            /*0030*/               @P0 BRA `(.L_x_1) ;
            /*0040*/                   STG.E.64 desc[UR4][R2.64], R4 ;
            /*0050*/               @P1 BRA `(.L_x_0) ;
            /*0060*/                   EXIT ;
    """)


def test_nested_loops_hot_loop_is_innermost_store_loop_the_one_with_the_store():
    function = sass.parse_disassembly(NESTED)[MANGLED]
    assert sass.loops(function) == [sass.Loop(0x0, 0x50), sass.Loop(0x10, 0x30)]
    assert sass.hot_loop(function) == sass.Loop(0x10, 0x30)
    assert [i.addr for i in sass.per_element_region(function)] == [0x0, 0x10, 0x20, 0x30, 0x40, 0x50]
    assert sass.store_loop(function) == sass.Loop(0x0, 0x50)
    assert sass.store_path(function, sass.Loop(0x0, 0x50)) == (6, 8)


def test_store_path_is_the_longest_path_through_the_store(function):
    # head 0x40..0x60 (3), fall-through side 0x70..0xc0 (6), join 0xd0..0x200 (6)
    assert sass.store_path(function, sass.Loop(0x40, 0x200)) == (15, 1)
    no_store = sass.parse_disassembly(CANNED.replace("STG.E.U8", "LDG.E.U8"))[MANGLED]
    assert sass.store_path(no_store, sass.Loop(0x40, 0x200)) == (0, 0)
    assert sass.store_loop(no_store) is None


def test_resource_usage_and_names():
    usage = sass.parse_resource_usage(CANNED_USAGE)
    assert usage[MANGLED]["REG"] == 32 and usage[MANGLED]["STACK"] == 16
    assert usage[MANGLED]["SHARED"] == 1024 and usage[MANGLED]["LOCAL"] == 8
    assert (
        sass.short_name("void yf::kernels::(anonymous namespace)::paste_masks<float>(float const*, bool*)")
        == "paste_masks<float>"
    )
    assert sass.short_name("yf::kernels::(anonymous namespace)::scan(unsigned long const*)") == "scan"
    assert [sass.access_bits(op) for op in ("STG.E.U8", "LDG.E", "LDG.E.64.CONSTANT", "STS.128", "LDS.S16")] == [
        8,
        32,
        64,
        128,
        16,
    ]


def test_kernel_report_row(function):
    row = cuda_report.kernel_report(function, sass.parse_resource_usage(CANNED_USAGE)[MANGLED], "paste_masks<float>")
    assert row["registers"] == 32 and row["static_shared_bytes"] == 1024 and row["local_bytes"] == 8
    assert row["per_element_fp64"] == 3
    assert row["store_path"] == {"instructions": 15, "bytes_stored": 1, "per_byte": 15.0}


# --- the roofline model ------------------------------------------------------------------------


def test_step_model():
    step = gpu_model.Step("x", 2, 3.35e6, 0.0)
    assert step.modelled_us == pytest.approx(1.0 + 2 * gpu_model.LAUNCH_US)
    assert gpu_model.total([step, step])["launches"] == 4


def test_latency_term_of_the_block_scans():
    """class_nms's block scans: one dependent round of loads per SCAN_BATCH items a
    thread walks (latency), plus the instructions of every item on one SM (issue), plus
    the issue of its IoU tests (and the greedy walk), plus the merge's scans of the
    classes x min(detections, top_k) slots in its last block; the model's batch is the
    kernels' (kScanBatch)."""
    assert gpu_model.SCAN_BATCH == KERNEL_CONSTANTS["scan_batch"]
    s = gpu_model.Shapes()
    to_us = 1e6 / gpu_model.CLOCK_HZ
    issue = gpu_model.SELECT_SCANS * s.priors * gpu_model.SCAN_INSTRUCTIONS / gpu_model.ISSUE_LANES
    iou = gpu_model.iou_warp_rows(s.top_k) * gpu_model.IOU_PAIR_INSTRUCTIONS / 4
    slots = s.classes * min(s.detections, s.top_k)
    merge_issue = gpu_model.MERGE_SCANS * slots * gpu_model.SCAN_INSTRUCTIONS / gpu_model.ISSUE_LANES
    for threads, batch, rounds, merge_rounds in ((256, 1, 76, 32), (1024, 8, 3, 1)):
        record = {"name": "class_nms<float, float, float>", "block": (threads, 1, 1), "scan_batch": batch}
        cycles = (
            gpu_model.SELECT_SCANS * rounds * gpu_model.GLOBAL_LATENCY_CYCLES
            + issue
            + iou
            + gpu_model.MERGE_SCANS * merge_rounds * gpu_model.GLOBAL_LATENCY_CYCLES
            + merge_issue
        )
        assert gpu_model.latency_us(record, s) == pytest.approx(cycles * to_us)
        greedy = gpu_model.latency_us({**record, "greedy": True}, s) - gpu_model.latency_us(record, s)
        greedy_iou = gpu_model.iou_warp_rows(s.top_k, greedy=True) * gpu_model.IOU_PAIR_INSTRUCTIONS / 4
        assert greedy == pytest.approx((s.top_k * gpu_model.GREEDY_ROW_CYCLES + greedy_iou - iou) * to_us)
    # keys packed into shared memory by the first pass: the later scans wait on shared loads
    # and pass 1 narrows them, so fewer items are scanned; the same for the merge's keys
    merge = gpu_model.MERGE_SCANS * gpu_model.GLOBAL_LATENCY_CYCLES + merge_issue
    packed = {"name": "class_nms", "block": (1024, 1, 1), "paths": ["packed_keys"]}
    scans = gpu_model.SELECT_SCANS_PACKED
    assert 2 < scans < gpu_model.SELECT_SCANS
    cycles = (
        3 * gpu_model.GLOBAL_LATENCY_CYCLES
        + (scans - 1) * 19 * gpu_model.SHARED_LATENCY_CYCLES
        + scans * s.priors * gpu_model.SCAN_INSTRUCTIONS / gpu_model.ISSUE_LANES
        + iou
    )
    assert gpu_model.latency_us(packed, s) == pytest.approx((cycles + merge) * to_us)
    merge_scans = gpu_model.MERGE_SCANS_PACKED
    assert merge_scans < gpu_model.MERGE_SCANS
    packed_merge = (
        gpu_model.GLOBAL_LATENCY_CYCLES
        + (merge_scans - 1) * 8 * gpu_model.SHARED_LATENCY_CYCLES
        + merge_scans * slots * gpu_model.SCAN_INSTRUCTIONS / gpu_model.ISSUE_LANES
    )
    both = {**packed, "paths": ["packed_keys", "staged_boxes", "merge_packed_keys"]}
    assert gpu_model.latency_us(both, s) == pytest.approx((cycles + packed_merge) * to_us)
    step = gpu_model.kernel_step({"name": "class_nms", "block": (1024, 1, 1)}, s)
    assert step.latency_us > 0 and step.modelled_us > step.latency_us + gpu_model.LAUNCH_US
    assert gpu_model.latency_us({"name": "paste_masks", "block": (256, 1, 1)}, s) == 0.0


def test_iou_warp_rows_follow_the_tiles():
    """A warp steps a row for all its lanes: whole tiles cost 16 steps per warp (512 pairs),
    on a diagonal tile the 4 warps of a half walk the rows before its last column, warps
    past n none, and a narrow half of c <= 16 columns splits each column's rows between
    lanes_per_column(c) lanes (16 / lanes steps); so 200 ranked boxes (an 8-column last
    tile: 4 lanes a column) take 718 steps for 19,900 pairs, greedy 832."""
    rows, lanes = gpu_model.iou_warp_rows, gpu_model.lanes_per_column
    assert [lanes(c) for c in (32, 17, 16, 9, 8, 5, 4, 3, 2, 1, 0)] == [1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 16]
    assert [lanes(c) for c in range(-1, 66)] == [_emulation.emulated_cuda.lanes_per_column(c) for c in range(-1, 66)]
    assert rows(1) == 0 and rows(2) == 1  # one pair: part 0 of half 0
    assert rows(64) == 31 + 63  # diagonal tile: rows before column 31, before column 63
    assert rows(128) - 2 * rows(64) == 8 * 16  # the one off-diagonal tile is whole
    assert rows(200) == 718
    assert rows(200, greedy=True) == 6 * 8 * 16 + 4 * 4 * 4  # 10 tiles; columns 192-199: 4 warps, 4 steps
    pairs = 200 * 199 // 2
    assert pairs < 32 * rows(200) < 1.2 * pairs


def test_official_sequence_is_dominated_by_the_full_resolution_masks():
    shapes = gpu_model.Shapes()
    official = gpu_model.official_steps(shapes)
    paste = {s.name: s for s in official["paste_masks"]}
    image = shapes.detections * shapes.out_h * shapes.out_w * 4
    assert paste["gt_(0.5) in place"].read == image == paste["gt_(0.5) in place"].written
    post = gpu_model.total(official["post-network"])
    assert post["launches"] > 100 and post["bytes"] > 3 * image


def test_aten_steps_from_a_profile():
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(64, 32)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        x.t().contiguous()  # one copy
        torch.zeros(16)  # one fill
        x.view(32, 64)[:, 1:]  # views: nothing
        torch.sigmoid(x)  # one element-wise kernel
    steps = gpu_model.aten_steps(prof.profiler.function_events)
    assert [s.name for s in steps] == ["aten::copy_", "aten::zero_", "aten::sigmoid"]
    assert steps[0].read == steps[0].written == 64 * 32 * 4
    assert steps[1].written == 16 * 4


def test_every_launched_kernel_has_a_byte_formula():
    from yolact_fast.testing import emulated_cuda as ops

    launches = ops.launches
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(50, 2, generator=g).repeat(1, 2) + torch.tensor([0.0, 0.0, 0.2, 0.2])
    scores = torch.rand(3, 50, generator=g)
    coeffs = torch.randn(50, 4, generator=g)
    proto = torch.randn(8, 8, 4, generator=g)
    with launches() as records:
        det_boxes, det_coeffs, _, _ = ops.fast_nms(boxes, scores, coeffs)
        ops.decode_boxes(torch.randn(50, 4, generator=g), torch.rand(50, 4, generator=g))
        ops.paste_masks(proto, det_coeffs, det_boxes / 2, (12, 16))
    names = [cuda_report.launch_record(r)["name"] for r in records]
    assert names, "no launch recorded"
    assert [n for n in names if not gpu_model.known_kernel(n)] == []
    record = cuda_report.launch_record(records[0])
    assert not math.isnan(gpu_model.kernel_step(record, gpu_model.Shapes()).read)


# --- end to end with the CUDA toolkit ------------------------------------------------------------

TINY_KERNEL = r"""
__global__ void scale_rows(const float* in, double* acc, unsigned char* out, long n, float s) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)blockDim.x * gridDim.x) {
    acc[i] += (double)in[i] * s;
    out[i] = in[i] * s > 0.5f;
  }
}
"""


@pytest.mark.skipif(
    shutil.which("nvcc") is None or cuda_report.nvidia_tool("nvdisasm") is None, reason="needs nvcc and nvdisasm"
)
def test_compile_and_report_one_kernel(tmp_path):
    source = tmp_path / "tiny.cu"
    source.write_text(TINY_KERNEL)
    cubins = cuda_report.compile_cubins([source], "sm_90", tmp_path)
    rows = cuda_report.sass_report(cubins)
    assert [row["kernel"] for row in rows] == ["scale_rows"]
    row = rows[0]
    assert row["registers"] > 0 and row["local_bytes"] == 0
    assert row["hot_mix"]["instructions"] > 5
    assert row["hot_mix"]["fp64"] > 0 and row["per_element_fp64"] > 0
    assert row["hot_mix"]["global_store"].get("8") and row["hot_mix"]["global_store"].get("64")
    assert row["store_path"]["bytes_stored"] >= 9  # one byte and one double per element


def test_official_launch_counts_match_the_reference_ops_profiled():
    """The hand-written official sequence against the reference twins, which follow the
    official code op by op, run under the profiler (same launch rules)."""
    from torch.profiler import ProfilerActivity, profile

    from yolact_fast import reference

    g = torch.Generator().manual_seed(0)
    loc, priors = torch.randn(300, 4, generator=g) * 0.3, torch.rand(300, 4, generator=g) * 0.4 + 0.1
    scores = torch.softmax(torch.randn(5, 300, generator=g), 0)
    coeffs, proto = torch.randn(300, 8, generator=g), torch.relu(torch.randn(12, 12, 8, generator=g))
    boxes = reference.decode_boxes(loc, priors)
    det_boxes, det_coeffs, _, _ = reference.fast_nms(boxes, scores, coeffs, top_k=20)

    def launches(call):
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            call()
        return gpu_model.total(gpu_model.aten_steps(prof.profiler.function_events))["launches"]

    official = {
        op: gpu_model.total(steps)["launches"] for op, steps in gpu_model.official_steps(gpu_model.Shapes()).items()
    }
    assert launches(lambda: reference.decode_boxes(loc, priors)) == official["decode_boxes"]
    assert launches(lambda: reference.paste_masks(proto, det_coeffs, det_boxes, (20, 24))) == official["paste_masks"]
    # the reference adds the finite-box test (isfinite, all, and: +3) and gathers the
    # coefficients once, after the keep mask (idx[keep], coeffs[...]: +4), where the official
    # code gathers them with the boxes and keeps them with a mask (idx.contiguous(),
    # coeffs[idx], coeffs[keep]: -5)
    assert launches(lambda: reference.fast_nms(boxes, scores, coeffs, top_k=20)) == official["fast_nms"] + 3 + 4 - 5


def test_footprint_fraction():
    full = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    assert cuda_report.footprint_fraction(full) == pytest.approx(1.0)
    half = torch.tensor([[0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 1.0, 1.0]])
    assert cuda_report.footprint_fraction(half) == pytest.approx(((71 / 138) ** 2 + 1) / 2)
    assert cuda_report.footprint_fraction(torch.zeros(0, 4)) == 0.0


# --- build defaults: one home ------------------------------------------------------------------


def test_cuda_build_defaults_have_one_home():
    """The default architectures (CI builds all five) come from scripts/cuda_toolkit.py: the
    shell set-up exports what it says when nvcc is present and no GPU is visible."""
    import os
    import subprocess

    helper = ROOT / "scripts" / "cuda_toolkit.py"
    archs = subprocess.run([sys.executable, str(helper), "archs"], capture_output=True, text=True, check=True)
    assert archs.stdout.strip() == "7.5;8.0;8.6;8.9;9.0+PTX"
    if shutil.which("nvcc") is None or torch.cuda.is_available():
        pytest.skip("the shell set-up's default list applies with nvcc and without a GPU")
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_CUDA_ARCH_LIST", "FORCE_CUDA", "CUDA_HOME")}
    exported = subprocess.run(
        ["bash", "-c", ". scripts/cuda_env.sh && echo $TORCH_CUDA_ARCH_LIST"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert exported.stdout.strip() == archs.stdout.strip()


def test_emulation_workspace_fills_are_not_modelled_as_launches():
    """The emulation prefills class_nms's workspaces (HostLaunch::prefill; a no-op on a GPU)
    out of the profiler's sight: the model of the emulated NMS sees its two kernels and the
    trimmed API's count read-back, and of the padded path the three kernels alone (with the
    fills counted, the report once showed 55 us for a 43 us path)."""
    from yolact_fast.testing import emulated_cuda as ops

    g = torch.Generator().manual_seed(3)
    boxes = torch.rand(60, 2, generator=g).repeat(1, 2) + torch.tensor([0.0, 0.0, 0.3, 0.3])
    scores = torch.rand(4, 60, generator=g)
    coeffs = torch.randn(60, 4, generator=g)
    loc, logits = torch.randn(60, 4, generator=g), torch.randn(60, 5, generator=g)
    priors = torch.rand(60, 4, generator=g)
    proto = torch.randn(8, 8, 4, generator=g)
    shapes = gpu_model.Shapes()

    steps, _ = cuda_report.our_steps(lambda: ops.fast_nms(boxes, scores, coeffs), ops.launches, shapes)
    assert [s.name for s in steps if s.launches] == [
        "kernel candidate_flags",
        "kernel class_nms",
        "aten::_local_scalar_dense",
    ]
    x = {"loc": loc, "conf_logits": logits, "mask_coeffs": coeffs, "priors": priors, "proto": proto}
    steps, _ = cuda_report.our_steps(lambda: cuda_report.post_network_padded(ops, x, (12, 16)), ops.launches, shapes)
    assert [s.name for s in steps if s.launches] == ["kernel detect_scores", "kernel class_nms", "kernel paste_masks"]
