"""Video throughput (frames/s): ``segment_video`` with and without overlapping
post-processing with the next batch, against a plain loop of ``yf.segment`` per frame.

Run: ``pytest benchmarks/bench_video.py --benchmark-columns=median,min,rounds``.
The video is made here: 480x640 synthetic frames (the golden test image generator), H.264.
Each round decodes and segments the whole video; frames/s is stored in ``extra_info`` and
printed. The per-frame loop decodes everything first (decoding not timed), so its figure
is the network + post-processing alone.
"""

import os
import time

import pytest
import torch

import yolact_fast as yf
from yolact_fast.data.synthetic import golden_image

av = pytest.importorskip("av")
from yolact_fast.video import VideoWriter, segment_video  # noqa: E402

BATCH = 4
CASES = {  # model name -> (frames in the video, rounds)
    "demo": (16, 3),
    "yolact_base": (8, 1),
}


@pytest.fixture(scope="module")
def models(model):
    return {"demo": yf.load("demo"), "yolact_base": model}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    paths = {}
    for name, (count, _) in CASES.items():
        paths[name] = folder / f"{name}.mp4"
        with open(paths[name], "wb") as file:
            writer = VideoWriter(file, fps=30)
            for seed in range(count):
                writer.write(golden_image(seed, 480, 640))
            writer.close()
    return paths


def _decoded(path):
    with av.open(str(path)) as container:
        return [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in container.decode(video=0)]


def _measure(benchmark, name, function):
    """Times ``function`` (returns the frame count); also the process CPU time per frame, since
    on a shared machine a pipeline with more runnable threads also gets a larger CPU share."""
    count, rounds = CASES[name]
    started, cpu_started = time.perf_counter(), time.process_time()
    frames = benchmark.pedantic(function, rounds=rounds, iterations=1, warmup_rounds=1)
    assert frames == count
    cpu_per_frame = (time.process_time() - cpu_started) / (count * (rounds + 1))
    if benchmark.stats is not None:  # None under --benchmark-disable
        fps = count / benchmark.stats.stats.median
        benchmark.extra_info["frames_per_second"] = round(fps, 3)
        benchmark.extra_info["cpu_seconds_per_frame"] = round(cpu_per_frame, 3)
        print(
            f"\n{benchmark.name}: {fps:.2f} frames/s, {cpu_per_frame:.2f} CPU s/frame "
            f"({count} frames, {time.perf_counter() - started:.1f} s in all; load average "
            f"{os.getloadavg()[0]:.1f})"
        )


def _pipeline(path, model, overlap):
    return lambda: sum(1 for _ in segment_video(path, model=model, batch_size=BATCH, overlap=overlap))


@pytest.mark.parametrize("name", list(CASES))
def test_per_frame_segment_reference(benchmark, name, models, videos):
    benchmark.group = f"video {name} 480x640"
    frames = _decoded(videos[name])
    _measure(benchmark, name, lambda: sum(1 for f in frames if yf.segment(f, model=models[name]) is not None))


@pytest.mark.parametrize("name", list(CASES))
def test_segment_video_no_overlap(benchmark, name, models, videos):
    benchmark.group = f"video {name} 480x640"
    _measure(benchmark, name, _pipeline(videos[name], models[name], overlap=False))


@pytest.mark.parametrize("name", list(CASES))
def test_segment_video_overlap(benchmark, name, models, videos):
    benchmark.group = f"video {name} 480x640"
    _measure(benchmark, name, _pipeline(videos[name], models[name], overlap=True))
