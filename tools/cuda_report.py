"""GPU evidence without a GPU: the SASS of the CUDA kernels and a modelled H100 roofline.

    python tools/cuda_report.py [--arch sm_90] [--json out.json] [--markdown]
                                     [--binary PATH | --source CHECKOUT]

1. SASS (static, from the compiler): csrc/cuda/*.cu are compiled with nvcc to a cubin for
   ``--arch`` with the extension's flags (or the cubins of ``--binary``, e.g. the built
   yolact_fast/_C*.so, are used), disassembled with nvdisasm / cuobjdump (they ship in the
   triton wheel torch installs), and per kernel the report gives registers, stack/local
   bytes (spills), static shared bytes and the instruction mix of its hot loop
   (tools/sass.py defines the terms). For the mask paste kernel: SASS instructions per
   output pixel on the store path (budget <= 20) and FP64 in its per-element code (budget: none).
2. Modelled H100 time per op (tools/gpu_model.py): the CUDA launch code runs on CPU
   tensors under the host emulation on the official shapes; its kernel launches and the ATen
   ops it calls are recorded and charged bytes / 3.35 TB/s + 3 us per launch, beside the
   same model of the official PyTorch op sequence, against a budget of 40 us for the
   post-network path (modelled).

Nothing here is a GPU measurement; benchmarks/bench_cuda.py measures on a GPU.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
# this checkout's yolact_fast (the one whose csrc/ is compiled), not another installed copy
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
import gpu_model  # noqa: E402
import sass  # noqa: E402

_toolkit_spec = importlib.util.spec_from_file_location("yolact_fast_cuda_toolkit", ROOT / "scripts" / "cuda_toolkit.py")
cuda_toolkit = importlib.util.module_from_spec(_toolkit_spec)
_toolkit_spec.loader.exec_module(cuda_toolkit)
# setup.py's compile_args() for nvcc in a release build (torch's COMMON_NVCC_FLAGS are added below)
NVCC_FLAGS = ["-O3", *cuda_toolkit.NVCC_FLAGS, "-DYF_WITH_CUDA", "-DNDEBUG"]
STORE_PATH_BUDGET = 20
POST_NETWORK_BUDGET_US = 40.0


# --- toolchain -------------------------------------------------------------------------------


def nvidia_tool(name: str) -> Optional[str]:
    """nvdisasm / cuobjdump: from the triton wheel (torch installs it), else PATH."""
    try:
        import triton

        candidate = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which(name)


def nvcc_include_flags(root: Path = ROOT) -> List[str]:
    from torch.utils import cpp_extension

    site = sysconfig.get_paths()["purelib"]
    wheel_headers = sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))  # cublas, cusparse
    dirs = [str(root / "csrc")] + cpp_extension.include_paths() + wheel_headers
    return [f"-I{d}" for d in dirs]


def compile_cubins(sources: Sequence[Path], arch: str, out_dir: Path, root: Path = ROOT) -> List[Path]:
    """nvcc -cubin each source for ``arch`` (e.g. sm_90), with ``root``/csrc on the include
    path. Raises RuntimeError with nvcc's message when it fails."""
    from torch.utils import cpp_extension

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc is not on PATH (see scripts/cuda_env.sh)")
    flags = NVCC_FLAGS + cpp_extension.COMMON_NVCC_FLAGS + ["-std=c++20", f"-arch={arch}"]
    cubins = []
    for source in sources:
        cubin = out_dir / (Path(source).stem + f".{arch}.cubin")
        cmd = [nvcc, "-cubin", *flags, *nvcc_include_flags(root), str(source), "-o", str(cubin)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"nvcc failed on {source}:\n{done.stderr[-4000:]}")
        cubins.append(cubin)
    return cubins


def extract_cubins(binary: Path, arch: str, out_dir: Path) -> List[Path]:
    """The ``arch`` cubins embedded in a shared library (cuobjdump -xelf), or the file itself
    if it is a cubin."""
    if binary.suffix == ".cubin":
        return [binary]
    cuobjdump = nvidia_tool("cuobjdump")
    subprocess.run([cuobjdump, "-xelf", "all", str(binary.resolve())], cwd=out_dir, check=True, capture_output=True)
    cubins = sorted(out_dir.glob(f"*.{arch}.cubin"))
    if not cubins:
        raise RuntimeError(f"{binary} holds no {arch} code (cuobjdump --list-elf shows what it has)")
    return cubins


def disassemble(cubin: Path) -> tuple:
    """(functions by mangled name, resource usage by mangled name) of one cubin."""
    nvdisasm, cuobjdump = nvidia_tool("nvdisasm"), nvidia_tool("cuobjdump")
    if nvdisasm is None or cuobjdump is None:
        raise RuntimeError("nvdisasm/cuobjdump not found (pip's triton wheel ships them)")
    text = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True, check=True).stdout
    usage = subprocess.run([cuobjdump, "-res-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
    return sass.parse_disassembly(text), sass.parse_resource_usage(usage)


# --- per-kernel SASS report ------------------------------------------------------------------


def kernel_report(function: sass.Function, usage: Dict[str, int], name: str) -> Dict[str, object]:
    hot = sass.hot_loop(function)
    region = function.between(hot.head, hot.latch) if hot else sass.kernel_body(function)
    per_element = sass.per_element_region(function)
    row: Dict[str, object] = {
        "kernel": name,
        "registers": usage.get("REG"),
        "stack_bytes": usage.get("STACK"),
        "local_bytes": usage.get("LOCAL"),
        "static_shared_bytes": usage.get("SHARED"),
        "instructions": len(sass.kernel_body(function)),
        "loops": len(sass.loops(function)),
        "hot_loop": "innermost" if hot else "none (whole kernel)",
        "hot_mix": sass.instruction_mix(function, region),
        "per_element_fp64": sass.instruction_mix(function, per_element)["fp64"],
    }
    spills = sass.instruction_mix(function, sass.kernel_body(function))
    row["spill_instructions"] = sum(spills["local_load"].values()) + sum(spills["local_store"].values())
    loop = sass.store_loop(function)
    if loop is not None:
        instructions, stored = sass.store_path(function, loop)
        row["store_path"] = {
            "instructions": instructions,
            "bytes_stored": stored,
            "per_byte": instructions / stored if stored else math.nan,
        }
    return row


def sass_report(cubins: Sequence[Path], dtypes: Sequence[str] = ("float",)) -> List[Dict[str, object]]:
    """One row per kernel that has no template arguments or whose template arguments (the
    element types) are all in ``dtypes``."""
    rows = []
    for cubin in cubins:
        functions, usage = disassemble(cubin)
        names = sass.demangle(list(functions))
        for mangled, function in functions.items():
            name = names[mangled]
            element_types = [t.strip() for t in name[name.find("<") + 1 : -1].split(",")] if "<" in name else []
            if any(t not in dtypes for t in element_types):
                continue
            rows.append(kernel_report(function, usage.get(mangled, {}), name))
    return sorted(rows, key=lambda row: row["kernel"])


def _widths(counts: Dict[str, int]) -> str:
    return " ".join(f"{n}x{bits}" for bits, n in counts.items()) or "-"


def print_sass(rows: Sequence[Dict[str, object]], arch: str) -> None:
    print(f"\n== SASS for {arch} (static, from nvcc/nvdisasm; not a measurement) ==")
    print(
        f"{'kernel':<32}{'regs':>5}{'stack':>6}{'local':>6}{'shared':>7}{'instr':>6}"
        f"{'hot':>5}{'fp64':>5}{'div64':>6}{'idiv':>5}  {'LDG bits':<14}{'STG bits':<12}"
        f"{'LDS':>4}{'STS':>4}{'bar':>4}"
    )
    for row in rows:
        mix = row["hot_mix"]
        print(
            f"{row['kernel']:<32}{row['registers']!s:>5}{row['stack_bytes']!s:>6}{row['local_bytes']!s:>6}"
            f"{row['static_shared_bytes']!s:>7}{row['instructions']:>6}{mix['instructions']:>5}{mix['fp64']:>5}"
            f"{mix['int64_div_calls']:>6}{mix['int_div_sequences']:>5}  {_widths(mix['global_load']):<14}"
            f"{_widths(mix['global_store']):<12}{sum(mix['shared_load'].values()):>4}"
            f"{sum(mix['shared_store'].values()):>4}{mix['barriers']:>4}"
        )
    print(
        "shared = static shared bytes as ptxas reports them: on sm_90 they include the 1 KiB reserved per"
        " block once the file uses shared memory."
    )
    print(
        "hot = instructions in the hot loop (innermost loop with most instructions); fp64, div64 (calls"
        " to 64-bit integer division), idiv (inline integer-division sequences), load/store counts"
        " x width in bits: in the hot loop and the subroutines it calls."
    )
    for row in rows:
        if "paste" in row["kernel"] and "store_path" in row:
            path = row["store_path"]
            verdict = "within" if path["per_byte"] <= STORE_PATH_BUDGET else "over"
            fp64 = "none" if row["per_element_fp64"] == 0 else f"{row['per_element_fp64']} instructions"
            print(
                f"{row['kernel']}: {path['instructions']} SASS instructions on the store path for"
                f" {path['bytes_stored']} output byte(s) = {path['per_byte']:.1f} per output pixel"
                f" ({verdict} the budget <= {STORE_PATH_BUDGET}); FP64 in its per-element code: {fp64}"
            )
    fp64_rows = [row["kernel"] for row in rows if row["per_element_fp64"]]
    print(
        "FP64 in float32 per-element code: "
        + (", ".join(fp64_rows) if fp64_rows else "none")
        + (
            " (priors_level computes in float64 on purpose, as the official priors)"
            if any("priors_level" in name for name in fp64_rows)
            else ""
        )
    )


# --- modelled ops ----------------------------------------------------------------------------


def official_inputs(seed: int = 0):
    """(description, raw head outputs on the official shapes): golden data when present,
    else seeded random tensors of the same shapes (launches and bytes depend on shapes; the
    mask footprint on the detections)."""
    import numpy as np
    import torch

    name = "golden_yolact_base_s0_480x640.npz"
    folders = [
        os.environ.get("YOLACT_FAST_GOLDEN"),
        ROOT.parent / "shared" / "golden",
        ROOT / "tests" / "data" / "golden",
    ]
    case = next((Path(f) / name for f in folders if f and (Path(f) / name).exists()), None)
    if case is not None:
        data = np.load(case)
        return case.name, {
            k: torch.from_numpy(np.ascontiguousarray(data[k]))
            for k in ("loc", "conf_logits", "mask_coeffs", "priors", "proto")
        }
    g = torch.Generator().manual_seed(seed)
    s = gpu_model.Shapes()
    return f"random, seed {seed} (no golden data: set YOLACT_FAST_GOLDEN)", {
        "loc": torch.randn(s.priors, 4, generator=g) * 0.5,
        "conf_logits": torch.randn(s.priors, s.classes + 1, generator=g),
        "mask_coeffs": torch.tanh(torch.randn(s.priors, s.k, generator=g)),
        "priors": torch.rand(s.priors, 4, generator=g) * 0.5 + 0.1,
        "proto": torch.relu(torch.randn(s.proto_h, s.proto_w, s.k, generator=g)),
    }


def detections(ops, x):
    """decode + NMS as segment's postprocess runs them (the fused ``detect`` op when the
    build has one): (boxes, coeffs, labels, scores)."""
    import torch

    if hasattr(ops, "detect"):
        return ops.detect(x["loc"], x["conf_logits"], x["mask_coeffs"], x["priors"])
    boxes = ops.decode_boxes(x["loc"], x["priors"])
    scores = torch.softmax(x["conf_logits"], dim=-1)[:, 1:].t().contiguous()
    return ops.fast_nms(boxes, scores, x["mask_coeffs"])


def post_network(ops, x, size):
    """decode + NMS + masks, without segment's box clamping and Instances packing."""
    det_boxes, det_coeffs, _, _ = detections(ops, x)
    return ops.paste_masks(x["proto"], det_coeffs, det_boxes, size)


def post_network_padded(ops, x, size):
    """post_network with the padded detect op (``torch.ops.yolact_fast.detect``'s, here its
    emulated twin): no count read back to the host, so a CUDA graph can capture the path;
    the masks of all max_detections slots (empty past the count)."""
    from yolact_fast.ops import _args

    boxes, coeffs, _, _, _ = ops._kernels.detect(
        *_args.detect_args(
            x["loc"], x["conf_logits"], x["mask_coeffs"], x["priors"], (0.1, 0.2), 0.5, 200, 0.05, 100, "fast"
        )
    )
    return ops.paste_masks(x["proto"], coeffs, boxes, size)


def op_calls(ops, x, det_boxes, det_coeffs) -> Dict[str, Callable[[], object]]:
    """The five ops (``detect`` too when the build has it), the post-network path, and
    segment's whole postprocess (boxes and Instances included), on the official shapes;
    the mask ops on the given detections."""
    import importlib

    import torch

    from yolact_fast.configs import get_config
    from yolact_fast.model import YolactOutput

    segment_module = importlib.import_module("yolact_fast.segment")
    config = get_config("yolact_base")
    s = gpu_model.Shapes()
    size = (s.out_h, s.out_w)
    scores = torch.softmax(x["conf_logits"], dim=-1)[:, 1:].t().contiguous()
    boxes = ops.decode_boxes(x["loc"], x["priors"])

    def segment_postprocess():
        outputs = YolactOutput(x["loc"], x["conf_logits"], x["mask_coeffs"], x["proto"])
        return segment_module.postprocess(outputs, x["priors"], size, segment_module.SegmentOptions(), ops, config)

    calls = {
        "make_priors": lambda: ops.make_priors(config, (550, 550)),
        "decode_boxes": lambda: ops.decode_boxes(x["loc"], x["priors"]),
        "fast_nms": lambda: ops.fast_nms(boxes, scores, x["mask_coeffs"]),
        "detect": lambda: ops.detect(x["loc"], x["conf_logits"], x["mask_coeffs"], x["priors"]),
        "assemble_masks": lambda: ops.assemble_masks(x["proto"], det_coeffs, det_boxes),
        "paste_masks": lambda: ops.paste_masks(x["proto"], det_coeffs, det_boxes, size),
        "post-network": lambda: post_network(ops, x, size),
        "post-network, padded": lambda: post_network_padded(ops, x, size),
        "segment postprocess": segment_postprocess,
    }
    if not hasattr(ops, "detect"):
        del calls["detect"], calls["post-network, padded"]
    return calls


def our_steps(call: Callable[[], object], launches, shapes: gpu_model.Shapes) -> tuple:
    """Run one op under the emulation and the profiler: (steps, launch records)."""
    from torch.profiler import ProfilerActivity, profile

    with launches() as records, profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        call()
    records = [launch_record(r) for r in records]
    steps = [gpu_model.kernel_step(record, shapes) for record in records]
    steps += gpu_model.aten_steps(prof.profiler.function_events)
    return steps, records


def launch_record(record) -> Dict[str, object]:
    """A launch record (dict, named tuple or object with attributes) as a plain dict with
    at least "name"."""
    if isinstance(record, dict):
        out = dict(record)
    elif hasattr(record, "_asdict"):
        out = dict(record._asdict())
    else:
        out = {
            key: getattr(record, key)
            for key in dir(record)
            if not key.startswith("_") and not callable(getattr(record, key))
        }
    if "name" not in out:
        out["name"] = str(out.get("kernel", record))
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def footprint_fraction(boxes) -> float:
    """Share of the N x H x W output that the detections' crop boxes (1 proto pixel of
    padding) cover: the part a footprint-only paste kernel writes."""
    from yolact_fast import reference

    s = gpu_model.Shapes()
    if len(boxes) == 0:
        return 0.0
    x1, x2 = reference.crop_bounds(boxes[:, 0], boxes[:, 2], s.proto_w, 1.0)
    y1, y2 = reference.crop_bounds(boxes[:, 1], boxes[:, 3], s.proto_h, 1.0)
    area = ((x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)).sum()
    return float(area) / (len(boxes) * s.proto_w * s.proto_h)


def model_report() -> Dict[str, object]:
    import dataclasses

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from yolact_fast.testing import emulated_cuda as ops

    launches, source = ops.launches, "yolact_fast.testing.emulated_cuda.launches()"
    inputs, x = official_inputs()
    with torch.inference_mode():
        det_boxes, det_coeffs, _, _ = detections(ops, x)
        calls = op_calls(ops, x, det_boxes, det_coeffs)
        shapes = dataclasses.replace(gpu_model.Shapes(), footprint=footprint_fraction(det_boxes))
        official = gpu_model.official_steps(shapes)
        result: Dict[str, object] = {
            "inputs": inputs,
            "launch_source": source,
            "mask_footprint": shapes.footprint,
            "ops": {},
        }
        for op, call in calls.items():
            steps, records = our_steps(call, launches, shapes)
            result["ops"][op] = {
                "ours": gpu_model.total(steps),
                "ours_steps": [vars_of(step) for step in steps],
                "kernel_launches": records,
                "official": gpu_model.total(official[op]),
                "official_steps": [vars_of(step) for step in official[op]],
            }
    return result


def vars_of(step: gpu_model.Step) -> Dict[str, object]:
    return {
        "name": step.name,
        "launches": step.launches,
        "read": step.read,
        "written": step.written,
        "modelled_us": step.modelled_us,
    }


def print_model(model: Dict[str, object]) -> None:
    print(
        f"\n== Modelled H100 time (bytes / {gpu_model.H100_BYTES_PER_S / 1e12:.2f} TB/s + "
        f"{gpu_model.LAUNCH_US:.0f} us per launch; a model, not a measurement) =="
    )
    print(f"inputs: {model['inputs']}; launches: {model['launch_source']} + ATen ops recorded by the profiler")
    print(
        f"{'op (official shapes)':<22}{'ours: launches':>15}{'MB':>9}{'modelled us':>13}"
        f"{'official: launches':>20}{'MB':>9}{'modelled us':>13}{'ratio':>7}"
    )
    for op, entry in model["ops"].items():
        ours, official = entry["ours"], entry["official"]
        if official["launches"]:
            off = f"{official['launches']:>20}{official['bytes'] / 1e6:>9.2f}{official['modelled_us']:>13.1f}"
            ratio = f"{official['modelled_us'] / ours['modelled_us']:>6.1f}x"
        else:
            off, ratio = f"{'host Python, cached':>42}", ""
        print(f"{op:<22}{ours['launches']:>15}{ours['bytes'] / 1e6:>9.2f}{ours['modelled_us']:>13.1f}{off}{ratio}")
    print(f"the detections' crop boxes cover {model['mask_footprint']:.1%} of the 100 x 480 x 640 mask pixels")
    for op, how in (
        ("post-network", "yf.ops, whose trimmed outputs read the count back"),
        ("post-network, padded", "the padded detect op: no host sync, capturable in a CUDA graph"),
    ):
        if op not in model["ops"]:
            continue
        post = model["ops"][op]["ours"]["modelled_us"]
        verdict = "within" if post <= POST_NETWORK_BUDGET_US else "over"
        print(
            f"{op} (decode + NMS + 100 masks at 480x640; {how}), ours: {post:.1f} us modelled"
            f" ({verdict} the budget <= {POST_NETWORK_BUDGET_US:.0f} us)"
        )
    print("custom kernel launches (name grid block dynamic-shared-bytes), recorded under the emulation:")
    for op, entry in model["ops"].items():
        kernels = [
            f"{r['name']} {_dims(r.get('grid'))} {_dims(r.get('block'))} {r.get('shared_bytes', '?')}"
            for r in entry["kernel_launches"]
        ]
        print(f"  {op}: " + ("; ".join(kernels) if kernels else "none"))
    unknown = sorted({s["name"] for e in model["ops"].values() for s in e["ours_steps"] if math.isnan(s["read"])})
    if unknown:
        print("no byte formula in gpu_model.py for: " + ", ".join(unknown) + " (their bytes are left out)")


def _dims(d) -> str:
    return "x".join(str(v) for v in d) if d else "?"


def markdown(report: Dict[str, object]) -> str:
    """The README tables."""
    lines = []
    if "kernels" in report:
        lines += [
            "| kernel (float32) | registers | stack/local bytes | static shared | hot-loop instructions |"
            " FP64 in per-element code | 64-bit div calls |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in report["kernels"]:
            mix = row["hot_mix"]
            path = row.get("store_path")
            note = (
                f"; store path {path['instructions']} instr / {path['bytes_stored']} B = "
                f"{path['per_byte']:.1f} per pixel"
                if "paste" in row["kernel"] and path
                else ""
            )
            lines.append(
                f"| {row['kernel']} | {row['registers']} | {row['stack_bytes']}/{row['local_bytes']} |"
                f" {row['static_shared_bytes']} | {mix['instructions']}{note} |"
                f" {row['per_element_fp64'] or 'none'} | {mix['int64_div_calls']} |"
            )
    if "model" in report:
        lines += [
            "",
            "| op (official shapes) | ours: launches | ours: MB | ours: modelled us |"
            " official: launches | official: MB | official: modelled us |",
            "|---|---|---|---|---|---|---|",
        ]
        for op, entry in report["model"]["ops"].items():
            ours, official = entry["ours"], entry["official"]
            off = (
                f"{official['launches']} | {official['bytes'] / 1e6:.1f} | {official['modelled_us']:.0f}"
                if official["launches"]
                else "host Python, cached | | "
            )
            lines.append(
                f"| {op} | {ours['launches']} | {ours['bytes'] / 1e6:.1f} | {ours['modelled_us']:.0f} | {off} |"
            )
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--json", type=Path, help="write everything printed as JSON here")
    parser.add_argument("--binary", type=Path, help="disassemble this .so/.cubin instead of compiling")
    parser.add_argument(
        "--source",
        type=Path,
        default=ROOT,
        help="checkout whose csrc/cuda is compiled and whose (built) yolact_fast is modelled",
    )
    parser.add_argument("--dtypes", default="float", help="template arguments to report (comma list)")
    parser.add_argument("--no-sass", action="store_true", help="skip the SASS part")
    parser.add_argument("--no-model", action="store_true", help="skip the modelled ops")
    parser.add_argument("--markdown", action="store_true", help="also print the README tables")
    args = parser.parse_args(argv)

    report: Dict[str, object] = {"arch": args.arch, "label": "static SASS and modelled times; no GPU measured"}
    if not args.no_sass:
        with tempfile.TemporaryDirectory() as tmp:
            if args.binary:
                cubins = extract_cubins(args.binary, args.arch, Path(tmp))
            else:
                root = args.source.resolve()
                cubins = compile_cubins(sorted((root / "csrc" / "cuda").glob("*.cu")), args.arch, Path(tmp), root)
            report["kernels"] = sass_report(cubins, tuple(args.dtypes.split(",")))
        print_sass(report["kernels"], args.arch)
    if not args.no_model:
        sys.path.insert(0, str(args.source.resolve()))
        report["model"] = model_report()
        print_model(report["model"])
    if args.markdown:
        print("\n" + markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
