"""Static checks of the built extension's sm_90 SASS, which the emulation cannot make:
class_nms's last-block handshake (memory ordering a host never reorders), the resources
its launch logic budgets, its IoU row step against the model's constant and its first
radix pass's addressing; bits_checksum's loads and atomic. Skipped when the build has no
CUDA kernels or no nvdisasm."""

import sys
from pathlib import Path

import pytest

from yolact_fast import _C, _emulation, ops

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import cuda_report  # noqa: E402
import gpu_model  # noqa: E402
import sass  # noqa: E402

SELECT_STATIC_BYTES = _emulation.emulated_cuda.kernel_constants["select_static_bytes"]
NVCC = "SASS of the build's nvcc (these counts were taken with nvcc 13.0)"


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """Readable name -> (SASS function, resource usage) of every kernel in the build."""
    if not ops.cuda_kernels_available() or cuda_report.nvidia_tool("nvdisasm") is None:
        pytest.skip("needs the CUDA kernels and nvdisasm/cuobjdump")
    try:
        cubins = cuda_report.extract_cubins(Path(_C.__file__), "sm_90", tmp_path_factory.mktemp("cubins"))
    except RuntimeError:
        pytest.skip("the build holds no sm_90 code")
    found = {}
    for cubin in cubins:
        functions, usage = cuda_report.disassemble(cubin)
        names = sass.demangle(list(functions))
        for mangled, function in functions.items():
            found[names[mangled]] = (function, usage.get(mangled, {}))
    return found


@pytest.fixture(scope="module")
def class_nms_kernels(kernels):
    return {name: found for name, found in kernels.items() if name.startswith("class_nms<")}


def test_every_score_dtype_has_a_class_nms(class_nms_kernels):
    # scores x boxes x output: float/double/half/bfloat16 fast_nms, float/double detect
    assert len(class_nms_kernels) >= 6, sorted(class_nms_kernels)


def test_class_nms_handshake_fences_and_coherent_loads(class_nms_kernels):
    """The blocks count themselves done with a device-scope atomic between fences (a fence
    invalidates L1 on sm_90: CCTL.IVALL), after a barrier; the merge reads other blocks'
    survivors with coherent loads (no LDG.E.CONSTANT, whose cache may hold stale lines)."""
    for name, (function, _) in class_nms_kernels.items():
        opcodes = [inst.opcode for inst in sass.kernel_body(function)]
        atomics = [i for i, op in enumerate(opcodes) if op.startswith("ATOMG.E.ADD") and "GPU" in op]
        fences = [i for i, op in enumerate(opcodes) if op == "MEMBAR.SC.GPU"]
        assert len(atomics) == 1, (name, atomics)
        atomic = atomics[0]
        assert any(i < atomic for i in fences) and any(i > atomic for i in fences), name
        assert "CCTL.IVALL" in opcodes, name
        last_store = max(i for i, op in enumerate(opcodes[:atomic]) if op.startswith("STG"))
        assert any(op.startswith("BAR.SYNC") for op in opcodes[last_store:atomic]), (
            f"{name}: no barrier between the survivors' stores and the atomic"
        )
        assert any(i > last_store for i in fences if i < atomic), f"{name}: no fence before the atomic"
        assert not [op for op in opcodes if op.startswith("LDG") and "CONSTANT" in op], name


def test_class_nms_resources_fit_the_launch_budget(class_nms_kernels):
    """1024 threads and one block per SM: <= 64 registers, no stack; the static arrays
    within what the launcher leaves beside the dynamic shared memory."""
    for name, (_, usage) in class_nms_kernels.items():
        assert usage.get("REG", 0) <= 64 and usage.get("STACK", 0) == 0, (name, usage)
        assert usage.get("SHARED", 0) <= SELECT_STATIC_BYTES, (name, usage)


def test_bits_checksum_reads_global_memory_and_adds_once_per_chunk(kernels):
    """Its words are read with global loads (a pointer read from the table is generic to the
    compiler: __ldg makes the loads LDG), one 64-bit device-scope reduction per chunk adds
    a block's sum, and nothing spills."""
    function, usage = kernels["bits_checksum"]
    opcodes = [inst.opcode for inst in sass.kernel_body(function)]
    assert not [op for op in opcodes if op.split(".")[0] in ("LD", "ST")], "generic loads or stores"
    reductions = [op for op in opcodes if op.split(".")[0] in ("RED", "REDG", "ATOM", "ATOMG")]
    assert len(reductions) == 1 and ".64" in reductions[0] and "GPU" in reductions[0], reductions
    assert usage.get("STACK", 0) == 0 and usage.get("LOCAL", 0) == 0, usage


def _innermost_loops(function):
    for loop in sass.innermost(sass.loops(function)):
        yield [inst.opcode for inst in function.between(loop.head, loop.latch)]


def test_iou_pair_loop_has_the_instruction_count_the_model_charges(class_nms_kernels):
    """Fast NMS's loop over a column's rows (boxes staged in shared memory: an LDS.128 for
    the row's box, an LDS for its area, one division per row) issues at most what
    gpu_model charges per warp row, besides the division's slow-path call (MOV + CALL, not
    taken for normal quotients); min/max are FMNMX, with no compare-and-select (FSEL) and no
    64-bit shift or select placing a bit (a ballot after the loop does). An upper bound only:
    a better compiler may do with fewer."""
    float_kernels = {name: found for name, found in class_nms_kernels.items() if "double" not in name}
    assert float_kernels
    for name, (function, _) in float_kernels.items():
        per_row = []
        for loop in _innermost_loops(function):
            divisions = sum(op.startswith("MUFU.RCP") for op in loop)
            if divisions and "LDS.128" in loop:
                per_row.append(((len(loop) - 2 * divisions) / divisions, loop))
        assert per_row, name
        instructions, loop = min(per_row, key=lambda found: found[0])
        assert instructions <= gpu_model.IOU_PAIR_INSTRUCTIONS, (name, instructions, NVCC, loop)
        assert sum(op.startswith("FMNMX") for op in loop) >= 4, (name, NVCC, loop)
        assert not [op for op in loop if op.startswith(("FSEL", "SHF.L.U64", "SEL"))], (name, NVCC, loop)


def test_first_radix_pass_loads_at_immediate_offsets(class_nms_kernels):
    """The packed first pass of the select and of the merge (keys stored at their slots:
    STS.64, histogram increments, 8 flag + 8 score loads per batch) addresses its loads
    from one pointer per batch with immediate offsets: 64-bit arithmetic (IMAD.WIDE,
    LEA.HI.X, IMAD.X) for the batch's two pointers, none per item, and at most 30
    instructions per item in the loop (both branches counted); with 64-bit clamped indices
    it was 42."""
    name = next(n for n in class_nms_kernels if n.startswith("class_nms<float, float, float, float>"))
    function, _ = class_nms_kernels[name]
    first_pass = [
        loop
        for loop in _innermost_loops(function)
        if sum(op.startswith("LDG.E.U8") for op in loop) == sass_batch()
        and sum(op.startswith("STS.64") for op in loop) >= sass_batch()
        and not any(op.startswith("BAR") for op in loop)
    ]
    assert len(first_pass) == 2, [len(loop) for loop in first_pass]  # the select's, the merge's
    for loop in first_pass:
        wide = [op for op in loop if op.startswith(("IMAD.WIDE", "LEA.HI.X", "IMAD.X", "IADD3.X"))]
        assert len(wide) <= 3, wide  # the batch's two pointers, not one per item
        assert len(loop) <= 30 * sass_batch(), len(loop)


def sass_batch() -> int:
    """kScanBatch of csrc/cuda/nms_kernels.cuh."""
    return _emulation.emulated_cuda.kernel_constants["scan_batch"]
