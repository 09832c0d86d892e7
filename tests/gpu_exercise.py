"""Every CUDA op against the CPU kernel on one sweep of inputs: random shapes up to the
official ones (19,248 priors, 80 classes, 138x138x32 prototypes), empty inputs, degenerate
boxes, k not a multiple of 8, misaligned views and the reduced dtypes. Small enough to run
under compute-sanitizer (memcheck, racecheck, synccheck, initcheck). Needs a GPU and a
CUDA build; tests/test_gpu_exercise.py runs it (marker ``cuda``), or as a script, which
exits 1 on any mismatch:

    python tests/gpu_exercise.py [--quick]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # inputs.py
from inputs import gen, misaligned_copy, random_boxes, random_coeffs, random_proto, random_scores  # noqa: E402

from yolact_fast import ops  # noqa: E402
from yolact_fast.configs import get_config  # noqa: E402

FAILURES = []


def check(name, cpu, gpu, exact=True, atol=0.0, mask_tolerance=0.0):
    cpu = cpu if isinstance(cpu, (tuple, list)) else (cpu,)
    gpu = gpu if isinstance(gpu, (tuple, list)) else (gpu,)
    for i, (a, b) in enumerate(zip(cpu, gpu)):
        b = b.cpu()
        if a.shape != b.shape or a.dtype != b.dtype:
            FAILURES.append(f"{name}[{i}]: {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}")
            continue
        if a.dtype == torch.bool:
            bad = (a != b).float().mean().item() if a.numel() else 0.0
            if bad > mask_tolerance:
                FAILURES.append(f"{name}[{i}]: {bad:.2e} of mask pixels differ")
        elif a.numel() and not (exact and torch.equal(a, b)):
            diff = (a.double() - b.double()).abs().max().item()
            if diff > atol:
                FAILURES.append(f"{name}[{i}]: max abs diff {diff:.3e}")


def on_gpu(*tensors):
    return [t.cuda() if isinstance(t, torch.Tensor) else t for t in tensors]


def nms_cases(quick):
    sizes = [(0, 5), (1, 1), (37, 3), (2000, 20), (19248, 80)]
    if quick:
        sizes = [(0, 5), (37, 3), (3000, 20)]
    for seed, (p, c) in enumerate(sizes):
        g = gen(seed)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            boxes = random_boxes(p, g, dtype=torch.float32).to(dtype)
            scores = random_scores(c, p, g).to(dtype)
            coeffs = random_coeffs(p, 32, g).to(dtype)
            for method in ("fast", "cluster"):
                name = f"fast_nms p={p} c={c} {dtype} {method}"
                cpu = ops.fast_nms(boxes, scores, coeffs, method=method)
                gpu = ops.fast_nms(*on_gpu(boxes, scores, coeffs), method=method)
                check(name, cpu, gpu)


def detect_cases(quick):
    config = get_config("yolact_base")
    priors = ops.make_priors(config, (550, 550))
    check("make_priors yolact_base", priors, ops.make_priors(config, (550, 550), device="cuda"), exact=False, atol=1e-6)
    p = priors.shape[0]
    for seed, classes in enumerate((81, 5) if quick else (81, 5, 2, 200)):
        g = gen(100 + seed)
        loc = torch.randn(p, 4, generator=g)
        logits = torch.randn(p, classes, generator=g) * 3
        coeffs = random_coeffs(p, 32, g)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            args = [t.to(dtype) for t in (loc, logits, coeffs, priors)]
            cpu = ops.detect(*args)
            gpu = ops.detect(*on_gpu(*args))
            # scores may differ by a few ulps (vectorized exp): compare counts and boxes closely
            check(
                f"detect classes={classes} {dtype} count", torch.tensor(cpu[0].shape[0]), torch.tensor(gpu[0].shape[0])
            )
            if cpu[0].shape == gpu[0].shape:
                tol = 1e-5 if dtype == torch.float32 else 1e-2
                check(f"detect classes={classes} {dtype}", cpu, gpu, exact=False, atol=tol)
    loc = torch.randn(p, 4, generator=gen(7))
    check("decode_boxes", ops.decode_boxes(loc, priors), ops.decode_boxes(*on_gpu(loc, priors)), exact=False, atol=1e-5)


def mask_cases(quick):
    shapes = [
        (0, 32, 138, 480, 640),
        (1, 32, 138, 480, 640),
        (100, 32, 138, 480, 640),
        (17, 31, 69, 427, 320),
        (40, 8, 5, 33, 17),
        (100, 64, 138, 1080, 1920),
    ]
    if quick:
        shapes = shapes[:5]
    for seed, (n, k, s, h, w) in enumerate(shapes):
        g = gen(200 + seed)
        proto, coeffs, boxes = random_proto(s, s, k, g), random_coeffs(n, k, g), random_boxes(n, g)
        for variant in ("plain", "misaligned"):
            args = (
                (proto, coeffs, boxes)
                if variant == "plain"
                else tuple(misaligned_copy(t) for t in (proto, coeffs, boxes))
            )
            name = f"n={n} k={k} proto={s} out={h}x{w} {variant}"
            check(
                f"assemble_masks {name}",
                ops.assemble_masks(*args),
                ops.assemble_masks(*on_gpu(*args)),
                exact=False,
                atol=1e-5,
            )
            check(
                f"paste_masks {name}",
                ops.paste_masks(*args, (h, w)),
                ops.paste_masks(*on_gpu(*args), (h, w)),
                mask_tolerance=1e-4,
            )
        for dtype in (torch.float16, torch.bfloat16):
            args = [t.to(dtype) for t in (proto, coeffs, boxes)]
            check(
                f"paste_masks {dtype} n={n}",
                ops.paste_masks(*args, (h, w)),
                ops.paste_masks(*on_gpu(*args), (h, w)),
                mask_tolerance=1e-3,
            )


CASES = (nms_cases, detect_cases, mask_cases)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer and smaller cases (for compute-sanitizer)")
    quick = parser.parse_args().quick
    assert torch.cuda.is_available() and ops.cuda_kernels_available(), "needs a GPU and a CUDA build"
    for cases in CASES:
        cases(quick)
        torch.cuda.synchronize()
    print(f"gpu_exercise: {len(FAILURES)} failures")
    for failure in FAILURES:
        print("  ", failure)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
