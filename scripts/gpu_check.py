"""The prepared check for a machine with an NVIDIA GPU (run by scripts/gpu_check.sh).

Steps, in priority order; the JSON report is rewritten after every step, so a time-out loses
only the step it interrupts:
  build        the extension for the visible GPU's architecture only, against the installed torch
  segment      yf.segment vs yf.segment_eager end to end (yolact_base, 480x640), each precision,
               with and without the engine's CUDA graph
  batch        images/s at batch 8 (fp16 and each other precision)
  compile      torch.compile(mode="max-autotune") of the network beside the engine's network
  post_network benchmarks/gpu_timings.py: post-network graph replay and per-kernel times
  exercise     tests/gpu_exercise.py: every CUDA op against the CPU kernels

``--dry-run`` runs every step's own code on the CPU at tiny sizes (the demo model, 64x64
images, torch.compile with the eager backend, the GPU scripts compiled but not run); CI runs
it, so every step's code is exercised without a GPU.

    python scripts/gpu_check.py --out DIR [--dry-run] [--deadline SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import py_compile
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_SCRIPTS = {"post_network": "benchmarks/gpu_timings.py", "exercise": "tests/gpu_exercise.py"}


class Check:
    def __init__(self, out: Path, dry_run: bool, deadline: float):
        self.out, self.dry_run, self.deadline = out, dry_run, time.monotonic() + deadline
        self.report = {
            "dry_run": dry_run,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "host": platform.node(),
            "python": platform.python_version(),
            "steps": {},
        }
        self.device = "cpu" if dry_run else "cuda"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name, function):
        if self.left() < 10:
            self.report["steps"][name] = {"skipped": "deadline"}
        else:
            start = time.monotonic()
            try:
                result = function()
                entry = {"ok": True, **(result or {})}
            except Exception as error:  # recorded; the next steps still run
                entry = {
                    "ok": False,
                    "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-2000:],
                }
            entry["seconds"] = round(time.monotonic() - start, 1)
            self.report["steps"][name] = entry
            print(f"=== {name}: {'ok' if entry['ok'] else entry['error']} ({entry['seconds']} s)", flush=True)
        self.write()

    def write(self):
        path = self.out / "gpu_check.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.report, indent=1))
        os.replace(path.with_suffix(".tmp"), path)

    # --- steps ----------------------------------------------------------------------------------

    def build(self):
        if self.dry_run:
            import yolact_fast  # noqa: F401  (the existing build imports)

            return {"skipped": "dry run: the extension already built here is used"}
        import torch

        major, minor = torch.cuda.get_device_capability()
        env = dict(
            os.environ, FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=f"{major}.{minor}", MAX_JOBS=str(os.cpu_count() or 4)
        )
        # cuda_env.sh: CUDA_HOME of the nvcc found and the headers of torch's CUDA wheels.
        command = ["bash", "-c", f". scripts/cuda_env.sh && {sys.executable} setup.py build_ext --inplace"]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(30, self.left() - 60)
        )
        (self.out / "build.log").write_text(done.stdout[-20000:] + done.stderr[-20000:])
        if done.returncode != 0:
            raise RuntimeError(f"build failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
        import torch as _torch

        return {
            "arch": f"{major}.{minor}",
            "torch": _torch.__version__,
            "cuda": _torch.version.cuda,
            "gpu": _torch.cuda.get_device_name(),
        }

    def _model_and_images(self, count=1):
        import torch

        import yolact_fast as yf
        from yolact_fast.data import synthetic_shapes

        if self.dry_run:
            model, size = yf.load("demo"), (64, 64)
        else:
            model, size = yf.Yolact(yf.configs.yolact_base).to(self.device), (480, 640)
            _realistic_head(model)
        shapes = synthetic_shapes(count, 1000, size)
        images = [shapes[i][0].to(self.device) for i in range(count)]
        return model, images, torch

    def _precisions(self):
        from yolact_fast.engine.options import cuda_bf16, native_bf16_cpu

        if self.dry_run:
            return ["fp32"] + (["bf16"] if native_bf16_cpu() else [])
        import torch

        return ["fp32", "fp16"] + (["bf16"] if cuda_bf16(torch.device("cuda")) else [])

    def segment(self):
        """Times and, against segment_eager fp32, the agreement of every precision with and
        without the CUDA graph (a wrong graph replay shows as a low agreement)."""
        import yolact_fast as yf
        from yolact_fast.benchmarking import agreement, median_ms

        model, images, torch = self._model_and_images(2)
        runs = 3 if self.dry_run else 20
        reference = [yf.segment_eager(image, model) for image in images]
        results = {
            "segment_eager fp32": {
                "ms": median_ms(lambda: yf.segment_eager(images[0], model), runs, self.device),
                "detections": [len(r) for r in reference],
            }
        }
        for graphs in ("1", "0"):
            os.environ["YOLACT_FAST_CUDA_GRAPHS"] = graphs
            for precision in self._precisions():
                yf.refresh(model)
                name = f"segment {precision} graphs={'on' if graphs == '1' else 'off'}"
                run = lambda: yf.segment(images[0], model=model, precision=precision)  # noqa: E731
                got = [yf.segment(image, model=model, precision=precision) for image in images]
                got += [yf.segment(image, model=model, precision=precision) for image in images]  # replays
                results[name] = {
                    "ms": median_ms(run, runs, self.device),
                    "detections": [len(r) for r in got],
                    "agreement_with_eager_fp32": round(agreement(reference * 2, got), 4),
                    "engine": str(yf.engine_info(model, precision=precision)),
                }
        os.environ.pop("YOLACT_FAST_CUDA_GRAPHS", None)
        yf.refresh(model)
        return {"results": results}

    def batch(self):
        import yolact_fast as yf
        from yolact_fast.benchmarking import median_ms

        model, images, torch = self._model_and_images(8)
        runs = 2 if self.dry_run else 10
        throughput = {}
        for precision in sorted(self._precisions(), key=lambda p: p != "fp16"):
            run = lambda: yf.segment(images, model=model, precision=precision)  # noqa: E731
            run()
            throughput[precision] = round(8e3 / median_ms(run, runs, self.device), 1)
        return {"images_per_s_batch8": throughput}

    def compile(self):
        import yolact_fast as yf
        from yolact_fast.benchmarking import median_ms
        from yolact_fast.engine import get_engine
        from yolact_fast.preprocess import preprocess

        model, images, torch = self._model_and_images()
        precision = "fp32" if self.dry_run else "fp16"
        engine = get_engine(model, precision)
        module = engine.module
        batch = preprocess(images, model.config, self.device)
        dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
        batch_in = batch.to(dtype).contiguous(memory_format=module.input_memory_format)
        start = time.monotonic()
        compiled = (
            torch.compile(module, backend="eager") if self.dry_run else torch.compile(module, mode="max-autotune")
        )
        with torch.inference_mode():
            compiled(batch_in)
            compile_s = time.monotonic() - start
            runs = 3 if self.dry_run else 20
            with engine.scope():
                ours = median_ms(lambda: engine.network(batch), runs, self.device)
            theirs = median_ms(lambda: compiled(batch_in), runs, self.device)
        return {
            "precision": precision,
            "engine_ms": ours,
            "compiled_ms": theirs,
            "compile_seconds": round(compile_s, 1),
            "engine": str(yf.engine_info(model, precision=precision)),
        }

    def in_subprocess(self, name, limit):
        """Step ``name`` in a child process, stopped after ``limit`` seconds (or the deadline):
        torch.compile's autotuning cannot be interrupted from inside."""
        if self.dry_run:
            return getattr(self, name)()
        part = self.out / f"{name}.json"
        command = [sys.executable, __file__, "--out", str(self.out), "--only", name]
        try:
            subprocess.run(command, cwd=ROOT, timeout=max(10, min(limit, self.left() - 60)), check=False)
        except subprocess.TimeoutExpired:
            return {"skipped": f"not done within {limit} s"}
        return json.loads(part.read_text()) if part.exists() else {"error": "no result"}

    def gpu_script(self, name):
        path = ROOT / GPU_SCRIPTS[name]
        if self.dry_run:
            py_compile.compile(str(path), doraise=True)
            return {"skipped": f"dry run: {GPU_SCRIPTS[name]} compiled, not run (needs CUDA)"}
        command = [sys.executable, str(path)] + (
            ["--json", str(self.out / f"{name}.json")] if name == "post_network" else []
        )
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(10, self.left() - 5))
        (self.out / f"{name}.log").write_text(done.stdout[-50000:] + done.stderr[-20000:])
        if done.returncode != 0:
            raise RuntimeError(f"{GPU_SCRIPTS[name]} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        return {"log": f"{name}.log"}


def _realistic_head(model):
    """Random weights give near-uniform class scores below the 0.05 threshold, hence no
    detections and an empty post-network path; a bias on one class makes ~100 detections
    per image, as a trained model does, so the timed path is the real one."""
    import torch

    with torch.no_grad():
        bias = model.prediction_layers[0].conf_layer.bias.view(-1, model.config.num_classes)
        bias[:, 1] += 4.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and logs")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--deadline", type=float, default=400, help="seconds for all steps (default 400)")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # one step, in a child process
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    check = Check(args.out, args.dry_run, args.deadline)
    if args.only:
        (args.out / f"{args.only}.json").write_text(json.dumps(getattr(check, args.only)(), indent=1))
        return 0
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: use --dry-run", file=sys.stderr)
            return 2
    check.step("build", check.build)
    check.step("segment", check.segment)
    check.step("batch", check.batch)
    check.step("compile", lambda: check.in_subprocess("compile", limit=180))
    check.step("post_network", lambda: check.gpu_script("post_network"))
    check.step("exercise", lambda: check.gpu_script("exercise"))
    failed = [name for name, entry in check.report["steps"].items() if entry.get("ok") is False]
    print(f"report: {args.out / 'gpu_check.json'}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
