"""Post-network path on the golden yolact_base raw outputs, timed by process CPU time (best
of N, one thread): robust to other processes on a shared machine, unlike wall-clock
pytest-benchmark runs. Prints the official sequence, the separate-op kernel path (decode,
torch softmax + transpose, fast_nms, paste_masks) and detect + paste_masks, with ratios.

    python benchmarks/post_network_cpu_time.py [threads]
"""

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout's yolact_fast; golden_data.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

from golden_data import golden_path  # noqa: E402
from yolact_fast import ops, reference  # noqa: E402

SIZE = (480, 640)


def best_cpu_ms(fn, rounds):
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best * 1e3


def main(threads=1):
    torch.set_num_threads(threads)
    data = np.load(golden_path("golden_yolact_base_s0_480x640.npz"))
    loc, logits, coeffs, priors, proto = (
        torch.from_numpy(np.ascontiguousarray(data[k]))
        for k in ("loc", "conf_logits", "mask_coeffs", "priors", "proto")
    )

    def official():
        boxes, det_coeffs, _, _ = reference.detect(loc, logits, coeffs, priors)
        return reference.paste_masks(proto, det_coeffs, boxes, SIZE)

    def separate_ops():
        scores = torch.softmax(logits, -1)[:, 1:].t().contiguous()
        boxes, det_coeffs, _, _ = ops.fast_nms(ops.decode_boxes(loc, priors), scores, coeffs)
        return ops.paste_masks(proto, det_coeffs, boxes, SIZE)

    def fused():
        boxes, det_coeffs, _, _ = ops.detect(loc, logits, coeffs, priors)
        return ops.paste_masks(proto, det_coeffs, boxes, SIZE)

    base = best_cpu_ms(official, 5)
    print(f"{threads} thread(s), process CPU time, best of N: official sequence {base:.1f} ms")
    for name, fn in (
        ("separate ops", separate_ops),
        ("detect + paste_masks", fused),
        ("detect alone", lambda: ops.detect(loc, logits, coeffs, priors)),
    ):
        ms = best_cpu_ms(fn, 40)
        print(f"  {name:<22} {ms:7.2f} ms  {base / ms:6.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
