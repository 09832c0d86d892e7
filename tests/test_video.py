"""yf.segment_video and the frame pipeline: frame counts, parity with yf.segment, ranges,
bad videos, bounded queues, the written video."""

import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import yolact_fast as yf
from yolact_fast.video import VideoWriter, segment_frames, segment_video
from yolact_fast.engine import get_engine

from inputs import read_video, shape_frames, write_video

av = pytest.importorskip("av")

FPS = 10


@pytest.fixture(scope="module")
def demo_model():
    return yf.load("demo")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", shape_frames(6), "mp4")


def assert_same_instances(actual, expected):
    assert torch.equal(actual.labels, expected.labels)
    assert torch.equal(actual.boxes, expected.boxes)
    assert torch.equal(actual.masks, expected.masks)
    torch.testing.assert_close(actual.scores, expected.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size,overlap", [(1, False), (4, True)])
def test_frames_match_segment_frame_by_frame(video, demo_model, batch_size, overlap):
    stream = segment_video(video, model=demo_model, batch_size=batch_size, overlap=overlap)
    assert stream.fps == FPS and stream.frame_size == (128, 160) and stream.frame_count == 6
    results = list(stream)
    assert [index for index, _, _ in results] == list(range(6))
    decoded = read_video(video)[0]
    found = 0
    for (index, frame, instances), expected_rgb in zip(results, decoded):
        assert frame.dtype == torch.uint8 and frame.shape == (3, 128, 160)
        assert np.array_equal(frame.permute(1, 2, 0).numpy(), expected_rgb)
        assert_same_instances(instances, yf.segment(frame, model=demo_model))
        found += len(instances)
    assert found > 0 and not stream.skipped


def test_every_start_end_select_source_frames(video, demo_model):
    indices = [i for i, _, _ in segment_video(video, model=demo_model, start=1, end=5, every=2)]
    assert indices == [1, 3]
    assert [i for i, _, _ in segment_video(video, model=demo_model, start=4)] == [4, 5]
    assert list(segment_video(video, model=demo_model, start=50)) == []


@pytest.mark.parametrize(
    "options,error,match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"every": 0}, ValueError, "every must be >= 1"),
        ({"start": -1}, ValueError, "start must be >= 0"),
        ({"end": 2.5}, TypeError, "end must be an int"),
        ({"start": 3, "end": 3}, ValueError, r"end must be > start \(3\), got 3"),
        ({"score_threshold": float("nan")}, ValueError, "score_threshold"),
    ],
)
def test_bad_options(video, demo_model, options, error, match):
    with pytest.raises(error, match=match):
        segment_video(video, model=demo_model, **options)


def test_bad_sources(tmp_path, demo_model):
    with pytest.raises(FileNotFoundError, match="video file not found.*missing.mp4"):
        segment_video(tmp_path / "missing.mp4", model=demo_model)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(ValueError, match="cannot read video.*garbage.mp4"):
        segment_video(garbage, model=demo_model)
    audio = tmp_path / "audio.mka"
    container = av.open(str(audio), "w", format="matroska")
    stream = container.add_stream("mp2", rate=44100, layout="mono")
    samples = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
    samples.sample_rate = 44100
    for packet in [*stream.encode(samples), *stream.encode(None)]:
        container.mux(packet)
    container.close()
    with pytest.raises(ValueError, match="has no video stream"):
        segment_video(audio, model=demo_model)
    with pytest.raises(TypeError, match="source must be"):
        segment_video(3.5, model=demo_model)
    if sys.platform.startswith("linux"):
        with pytest.raises(ValueError, match="cannot read video 'camera 63'"):
            segment_video(63, model=demo_model)


def test_truncated_or_corrupt_video_yields_what_decodes(tmp_path, demo_model):
    whole = write_video(tmp_path / "whole.ts", shape_frames(12, (64, 96)), "mpegts")
    data = whole.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    results = list(segment_video(cut, model=demo_model, batch_size=4))
    assert 0 < len(results) < 12
    assert [i for i, _, _ in results] == list(range(len(results)))
    scrambled = bytearray(data)
    middle = len(data) // 3
    scrambled[middle : middle + 3000] = bytes(b ^ 0x5A for b in scrambled[middle : middle + 3000])
    corrupt = tmp_path / "corrupt.ts"
    corrupt.write_bytes(bytes(scrambled))
    results = list(segment_video(corrupt, model=demo_model, batch_size=4))
    assert 0 < len(results) <= 12  # FFmpeg conceals or drops the damaged frames


def test_closing_early_stops_the_threads(video, demo_model):
    stream = segment_video(video, model=demo_model, batch_size=2)
    iterator = iter(stream)
    next(iterator)
    stream.close()
    names = [t.name for t in threading.enumerate() if t.is_alive()]
    assert not any(name.startswith("yolact-") for name in names), names
    with pytest.raises(RuntimeError, match="iterated once"):
        iter(stream)


def test_queues_are_bounded(demo_model):
    """An endless source is read only a bounded number of frames ahead of the consumer."""
    pulled = []
    frame = shape_frames(1, (32, 32))[0]

    def endless():
        index = 0
        while True:
            pulled.append(index)
            yield index, frame
            index += 1

    results = segment_frames(endless(), model=demo_model, batch_size=2)
    taken = [next(results)[0] for _ in range(3)]
    results.close()
    assert taken == [0, 1, 2]
    # 3 taken, two queues of 2 batches (results, frames), 3 batches in the network stage
    # (being put, post-processed, forming), 1 frame in each thread's hands, 1 pulled.
    assert len(pulled) <= 3 + 2 * 4 + 3 * 2 + 2 + 1, len(pulled)


def test_mixed_sizes_are_batched_by_size(demo_model):
    small, large = shape_frames(2, (64, 80)), shape_frames(2, (96, 128), seed=900)
    images = [small[0], large[0], large[1], small[1]]
    calls = []
    network = get_engine(demo_model).module
    handle = network.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        results = list(segment_frames(enumerate(images), model=demo_model, batch_size=4))
    finally:
        handle.remove()
    assert calls == [1, 2, 1]
    for (index, frame, instances), image in zip(results, images):
        assert frame is image or torch.equal(frame, image)
        assert_same_instances(instances, yf.segment(image, model=demo_model))


def test_source_errors_reach_the_consumer(demo_model):
    def failing():
        yield 0, shape_frames(1, (32, 32))[0]
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        list(segment_frames(failing(), model=demo_model, batch_size=1))
    with pytest.raises(ValueError, match=r"\[3,H,W\]"):
        list(segment_frames([(0, torch.zeros(4, 4, dtype=torch.uint8))], model=demo_model))


def test_video_writer_output_decodes(tmp_path):
    frames = shape_frames(5, (63, 81))  # odd sizes lose the last row and column (yuv420p)
    path = tmp_path / "out.mp4"
    with open(path, "wb") as file:
        writer = VideoWriter(file, fps=FPS)
        for frame in frames:
            writer.write(frame)
        writer.close()
    assert writer.codec in ("libx264", "h264", "mpeg4")
    decoded = read_video(path)[0]
    assert len(decoded) == 5 and decoded[0].shape == (62, 80, 3)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == FPS
    error = np.abs(decoded[2].astype(int) - frames[2][:, :62, :80].permute(1, 2, 0).numpy()).mean()
    assert error < 8  # lossy, but the same picture


def test_import_does_not_need_av():
    code = (
        "import sys; sys.modules['av'] = None; import yolact_fast as yf; "
        "from yolact_fast.video import segment_video\n"
        "try:\n    segment_video('x.mp4')\nexcept ImportError as e:\n    print(e)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "yolact_fast[video]" in result.stdout
    assert yf.segment_video is segment_video
