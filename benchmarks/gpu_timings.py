"""Device times of the CUDA ops on the official shapes (golden yolact_base case: 19,248
priors, 81 classes, 138x138x32 prototypes, 100 detections, 480x640 output), measured with
CUDA events: each call replayed from a CUDA graph (device time without the CPU launch
cost) and called eagerly (what a Python loop pays), median of many runs; the official
post-network sequence eagerly beside it; then the PyTorch profiler's per-kernel device
times for one post-network call. Needs a GPU and a CUDA build.

    python benchmarks/gpu_timings.py [--json PATH]
    python benchmarks/gpu_timings.py --profile-once   # two post-network calls, for ncu
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from golden_data import load_golden  # noqa: E402
from inputs import coco_like_detections, gen  # noqa: E402

from yolact_fast import ops, reference  # noqa: E402
from yolact_fast.configs import get_config  # noqa: E402
from bench_cuda import (
    batched_nms_candidates,
    interpolate_gt,
    nms_args,
    padded_nms,  # noqa: E402
    post_network_reference,
)

_ops = torch.ops.yolact_fast
SIZE = [480, 640]


def event_times_us(function, repeats, inner):
    """Median over ``repeats`` of the mean device time of ``inner`` back-to-back calls."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(inner):
            function()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1000 / inner)
    return statistics.median(times), min(times)


def graphed(function):
    """``function`` captured into a CUDA graph: returns the replay."""
    for _ in range(3):  # warm-up on a side stream, as capture needs
        function()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        function()
    torch.cuda.synchronize()
    return graph.replay


def golden_inputs():
    g = {
        k: v.cuda() for k, v in load_golden("golden_yolact_base_s0_480x640.npz").items() if isinstance(v, torch.Tensor)
    }
    g["scores"] = torch.softmax(g["conf_logits"], -1)[:, 1:].t().contiguous()
    return g


def cases(g):
    variances = (0.1, 0.2)
    nms_options = (0.5, 200, 0.05, 100)

    def detect(method="fast"):
        return _ops.detect(g["loc"], g["conf_logits"], g["mask_coeffs"], g["priors"], *variances, *nms_options, method)

    def post_network():
        boxes, coeffs, labels, scores, count = detect()
        return _ops.paste_masks(g["proto"], coeffs, boxes, SIZE, 0.5, 1.0), labels, scores, count

    det_boxes, det_coeffs = g["det_box"], g["det_mask_coeffs"]
    assembled = reference.assemble_masks(g["proto"], det_coeffs, det_boxes)
    proto_cl, coeffs_cl, boxes_cl = (t.cuda() for t in coco_like_detections(100, gen(0)))
    flat_boxes, flat_scores, classes = batched_nms_candidates(g)
    return {
        # name: (function, capturable)
        "make_priors (uncached)": (
            lambda: ops.make_priors(get_config("yolact_base"), (550, 550), "cuda:0", cached=False),
            False,
        ),
        "decode_boxes kernel": (lambda: _ops.decode_boxes(g["loc"], g["priors"], *variances), True),
        "decode_boxes reference": (lambda: reference.decode_boxes(g["loc"], g["priors"]), True),
        "fast_nms kernel (padded)": (lambda: padded_nms(*nms_args(g)), True),
        "cluster_nms kernel (padded)": (lambda: padded_nms(*nms_args(g), method="cluster"), True),
        "fast_nms reference (official)": (lambda: reference.fast_nms(*nms_args(g)), False),
        "torchvision batched_nms (top-200 given)": (
            lambda: torchvision.ops.batched_nms(flat_boxes, flat_scores, classes, 0.5)[:100],
            False,
        ),
        "detect kernel (padded)": (detect, True),
        "assemble_masks kernel": (lambda: _ops.assemble_masks(g["proto"], det_coeffs, det_boxes, 1.0), True),
        "assemble_masks reference": (lambda: reference.assemble_masks(g["proto"], det_coeffs, det_boxes), True),
        "paste_masks kernel (golden)": (
            lambda: _ops.paste_masks(g["proto"], det_coeffs, det_boxes, SIZE, 0.5, 1.0),
            True,
        ),
        "paste_masks reference (golden)": (
            lambda: reference.paste_masks(g["proto"], det_coeffs, det_boxes, tuple(SIZE)),
            True,
        ),
        "F.interpolate+threshold peer (golden)": (lambda: interpolate_gt(assembled, SIZE), True),
        "paste_masks kernel (COCO-like)": (
            lambda: _ops.paste_masks(proto_cl, coeffs_cl, boxes_cl, SIZE, 0.5, 1.0),
            True,
        ),
        "post-network kernels (detect+paste)": (post_network, True),
        "post-network official (eager)": (lambda: post_network_reference(g), False),
    }


def profile_kernels(function, iterations=20):
    """Per-kernel device time (us per call) of ``function`` from the PyTorch profiler."""
    from torch.profiler import ProfilerActivity, profile

    function()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iterations):
            function()
        torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        device_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if device_us:
            rows.append((event.key, device_us / iterations, event.count / iterations))
    return sorted(rows, key=lambda r: -r[1])


def wall_ms(function, repeats=15):
    """Median and min wall time (ms) of ``function()`` with a device synchronization."""
    import time

    for _ in range(3):
        function()
    torch.cuda.synchronize()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        runs.append((time.perf_counter() - start) * 1e3)
    return statistics.median(runs), min(runs)


def segment_times():
    """yf.segment and yf.segment_eager (official-equivalent eager post-processing) of
    yolact_base on the 480x640 golden image, and their parts: the weights key of the fused
    copy's cache, and the forward of the model and of its fused copy in each layout (segment
    runs the default layout on a GPU). Wall clock per call, synchronized."""
    import yolact_fast as yf
    from yolact_fast.data.synthetic import golden_image
    from yolact_fast.model.fuse import inference_copy
    from yolact_fast.engine import weights_identity
    from yolact_fast.model.weight_rule import rule_weights
    from yolact_fast.preprocess import preprocess

    model = yf.load(rule_weights("yolact_base", 0), config="yolact_base", device="cuda")
    image = golden_image(0, 480, 640).cuda()
    batch = preprocess([image], model.config, "cuda")
    fused_last, fused_plain = inference_copy(model, channels_last=True), inference_copy(model, channels_last=False)
    batch_last = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        parts = {
            "segment": lambda: yf.segment(image, model=model),
            "segment_eager": lambda: yf.segment_eager(image, model=model),
            "weights_identity": lambda: weights_identity(model),
            "forward model": lambda: model.eval()(batch),
            "forward fused channels_last": lambda: fused_last(batch_last),
            "forward fused default layout": lambda: fused_plain(batch),
        }
        return {name: wall_ms(function) for name, function in parts.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile-once", action="store_true", help="two post-network calls and exit (for ncu)")
    args = parser.parse_args()
    assert torch.cuda.is_available() and ops.cuda_kernels_available(), "needs a GPU and a CUDA build"
    torch.backends.cuda.matmul.allow_tf32 = False
    g = golden_inputs()
    if args.profile_once:
        post = cases(g)["post-network kernels (detect+paste)"][0]
        post()
        post()
        torch.cuda.synchronize()
        return
    results = {}
    for name, (function, capturable) in cases(g).items():
        function()
        torch.cuda.synchronize()
        eager_med, eager_min = event_times_us(function, 30, 20)
        entry = {"eager_median_us": eager_med, "eager_min_us": eager_min}
        if capturable:
            try:
                replay = graphed(function)
                entry["graph_median_us"], entry["graph_min_us"] = event_times_us(replay, 30, 50)
            except Exception as error:  # noqa: BLE001  (report, go on)
                entry["graph_error"] = f"{type(error).__name__}: {error}"[:200]
        results[name] = entry
    post = cases(g)["post-network kernels (detect+paste)"][0]
    kernels = profile_kernels(post)
    segment = segment_times()
    print(
        f"\n{torch.cuda.get_device_name()}  torch {torch.__version__}  "
        f"SMs {torch.cuda.get_device_properties(0).multi_processor_count}"
    )
    print(f"{'case':45s} {'graph med':>10s} {'graph min':>10s} {'eager med':>10s} {'eager min':>10s}  (us)")
    for name, e in results.items():
        gm = f"{e['graph_median_us']:10.1f}" if "graph_median_us" in e else f"{'-':>10s}"
        gn = f"{e['graph_min_us']:10.1f}" if "graph_min_us" in e else f"{'-':>10s}"
        print(
            f"{name:45s} {gm} {gn} {e['eager_median_us']:10.1f} {e['eager_min_us']:10.1f}"
            + (f"  [{e['graph_error']}]" if "graph_error" in e else "")
        )
    for name, (median, best) in segment.items():
        print(f"yolact_base 480x640 {name:30s}: median {median:7.2f} ms, min {best:7.2f} ms")
    print("\npost-network kernels, per call (PyTorch profiler, device time):")
    for key, us, count in kernels:
        print(f"  {us:8.2f} us  x{count:4.1f}  {key[:110]}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "device": torch.cuda.get_device_name(),
                    "torch": torch.__version__,
                    "results": results,
                    "post_network_kernels": kernels,
                    "segment_ms": segment,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
