"""Videos, cameras and streams of frames -> Instances, with decoding, the network and
post-processing overlapped.

``segment_video`` decodes frames with PyAV (the optional extra ``yolact_fast[video]``) in one
thread, runs them through the network in batches in a second, and post-processes batch k in a
third while batch k+1 runs through the network (the official ``--video_multiframe`` idea); the
caller receives results in order. Queues between the stages are bounded, so memory stays flat
however long the video is.
"""

from __future__ import annotations

import collections
import concurrent.futures
import fractions
import inspect
import os
import queue
import sys
import threading
from typing import Dict, Iterable, Iterator, Optional, Tuple, Union

import torch

from . import ops as _ops
from .ops._args import as_int
from .instances import Instances
from .io import check_image_tensor
from .engine import check_unchanged, get_engine
from .model.resolve import resolve_model
from .segment import SegmentOptions, network_mode, postprocessor, run_network

H264_ENCODERS = ("libx264", "h264")
FALLBACK_ENCODER = "mpeg4"
DEFAULT_FPS = 30
Frame = Tuple[int, torch.Tensor]
_END = object()


def import_av():
    """The PyAV module; ImportError naming the extra that installs it."""
    try:
        import av
    except ImportError:
        raise ImportError(
            "video input and output need PyAV: pip install 'yolact_fast[video]' (or pip install av)"
        ) from None
    return av


def segment_video(
    source: Union[str, os.PathLike, int],
    model=None,
    batch_size: int = 4,
    every: int = 1,
    start: int = 0,
    end: Optional[int] = None,
    overlap: bool = True,
    precision: str = "fp32",
    runtime: str = "torch",
    **options,
) -> "VideoSegmentation":
    """Instances in each frame of a video file, URL or camera: iterate the result for
    ``(frame_index, frame, Instances)``, frame uint8 [3,H,W] RGB on the CPU.

    ``source``: a video file, a URL PyAV can open (``rtsp://...``), or a camera index (int).
    ``model``, ``precision`` and ``runtime`` as in :func:`yolact_fast.segment`; ``options``
    are its detection options (score_threshold, iou_threshold, top_k, max_detections, nms). Frames ``start, start +
    every, ...`` before ``end`` (source frame indices, end excluded) are segmented, in batches
    of ``batch_size`` frames of one size. ``overlap=False`` post-processes each batch before
    the next one enters the network (the comparison baseline). The container is opened now:
    a missing, unreadable or stream-less source raises here (FileNotFoundError, ValueError).
    """
    return VideoSegmentation(source, model, batch_size, every, start, end, overlap, options, precision, runtime)


class VideoSegmentation:
    """Iterable of ``(frame_index, frame, Instances)`` over one opened video (see
    :func:`segment_video`). ``fps`` (Fraction) and ``frame_size`` (H, W) describe the source,
    ``frame_count`` is the container's estimate (0 when unknown), ``skipped`` counts what
    could not be decoded. Iterate once; ``close()`` (or ``with``) stops the threads early."""

    def __init__(
        self, source, model, batch_size, every, start, end, overlap, options, precision="fp32", runtime="torch"
    ):
        import_av()
        check_frame_options(batch_size, every, start, end)
        self.source = source
        self._model = resolve_model(model)
        self._finish = postprocessor(self._model, _ops, SegmentOptions(**options))
        self._engine_options = {"precision": precision, "runtime": runtime}
        get_engine(self._model, **self._engine_options)  # bad options raise here, before decoding
        self._batch_size, self._overlap = batch_size, overlap
        self._container, self._stream = open_video(source)
        codec = self._stream.codec_context
        self.fps = fractions.Fraction(self._stream.average_rate or DEFAULT_FPS)
        self.frame_size = (codec.height, codec.width)
        self.frame_count = int(self._stream.frames or 0)
        self.skipped: Dict[str, int] = collections.Counter()
        self._range = (start, end, every)
        self._iterator = None

    def __iter__(self) -> Iterator[Tuple[int, torch.Tensor, Instances]]:
        if self._iterator is not None:
            raise RuntimeError("a VideoSegmentation can be iterated once; call segment_video again")
        frames = _decoded_frames(self._container, self._stream, *self._range, self.skipped)
        self._iterator = segment_frames(
            frames,
            self._model,
            self._batch_size,
            self._overlap,
            finish=self._finish,
            on_exit=self._container.close,
            **self._engine_options,
        )
        return self._iterator

    def close(self) -> None:
        """Stops the threads; the source is closed by the network thread as it ends (or here
        when the iteration never started)."""
        if self._iterator is None or inspect.getgeneratorstate(self._iterator) == inspect.GEN_CREATED:
            self._container.close()
        if self._iterator is not None:
            self._iterator.close()

    def __enter__(self) -> "VideoSegmentation":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def check_frame_options(batch_size: int, every: int, start: int, end: Optional[int]) -> None:
    """The rule for :func:`segment_video`'s frame options: ints, ``batch_size`` and ``every``
    >= 1, 0 <= ``start`` < ``end`` (None: to the last frame). TypeError for a wrong type,
    ValueError for a wrong value, naming the option."""
    as_int(batch_size, "batch_size", 1)
    as_int(every, "every", 1)
    as_int(start, "start", 0)
    if end is not None and as_int(end, "end") <= start:
        raise ValueError(f"end must be > start ({start}), got {end}")


def open_video(source):
    """(container, its first video stream) for a file, URL or camera index; FileNotFoundError
    for a missing file, ValueError when it cannot be read or has no video stream."""
    av = import_av()
    if isinstance(source, bool) or not isinstance(source, (str, os.PathLike, int)):
        raise TypeError(f"source must be a video path, URL or camera index (int), got {type(source).__name__}")
    if isinstance(source, int):
        name, path, container_format = f"camera {source}", *camera_device(source)
    else:
        path = name = os.fspath(source)
        container_format = None
        if "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"video file not found: {path!r}")
    try:
        container = av.open(path, format=container_format)
    except (av.error.FFmpegError, OSError) as error:
        raise ValueError(f"cannot read video {name!r}: {error}") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{name!r} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame-threaded decoding where the codec allows it
    return container, stream


def camera_device(index: int) -> Tuple[str, str]:
    """(device path, PyAV input format) of camera ``index`` on this platform."""
    if index < 0:
        raise ValueError(f"camera index must be >= 0, got {index}")
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2"
    if sys.platform == "darwin":
        return str(index), "avfoundation"
    raise ValueError(f"camera input is supported on Linux (v4l2) and macOS (avfoundation), not on {sys.platform}")


def _decoded_frames(container, stream, start, end, every, skipped) -> Iterator[Frame]:
    """(source frame index, uint8 [3,H,W] RGB) of the frames asked for. Packets that fail to
    decode are skipped and counted; a read error ends the video (counted) after what was
    decoded."""
    av = import_av()
    index = -1
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError:
            skipped["read errors"] += 1
            packet = None  # flush the decoder: the frames it holds are still good
        try:
            frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except av.error.FFmpegError:
            skipped["undecodable packets"] += 1
            continue
        for frame in frames:
            index += 1
            if end is not None and index >= end:
                return
            if index >= start and (index - start) % every == 0:
                rgb = frame.to_ndarray(format="rgb24")
                yield index, torch.from_numpy(rgb).permute(2, 0, 1)
        if packet is None:
            return


def segment_frames(
    frames: Iterable[Frame],
    model=None,
    batch_size: int = 4,
    overlap: bool = True,
    finish=None,
    on_exit=None,
    precision: str = "fp32",
    runtime: str = "torch",
    **options,
) -> Iterator[Tuple[int, torch.Tensor, Instances]]:
    """``(index, frame, Instances)`` for an iterable of ``(index, [3,H,W] image)``, in order.

    Three threads besides the consumer's: one consumes ``frames``, one runs consecutive
    images of one size through the network in batches of up to ``batch_size``, and (with
    ``overlap``) one post-processes batch k while batch k+1 runs through the network. Bounded
    queues join them, so the consumer's own work (drawing, encoding) overlaps too and memory
    stays flat. ``finish`` is a ready :func:`yolact_fast.segment.postprocessor` (else built
    from ``options``); ``on_exit`` runs once the network thread is done (ended, failed, or
    closed: ``close()`` the returned generator to stop early). ``precision`` and ``runtime``
    choose the engine as in :func:`yolact_fast.segment`."""
    batch_size = as_int(batch_size, "batch_size", 1)
    model = resolve_model(model)
    finish = finish or postprocessor(model, _ops, SegmentOptions(**options))
    engine = get_engine(model, precision, runtime)
    stages = _network_stage(frames, model, engine, batch_size, overlap, finish, on_exit)
    return _in_background(stages, 2 * batch_size, "yolact-network")


def _network_stage(frames, model, engine, batch_size, overlap, finish, on_exit):
    """Runs in the network thread: batches from the reader thread, results in order."""
    network = engine.network
    pin = model.device.type == "cuda"
    images_in = _in_background(frames, 2 * batch_size, "yolact-decode", prepare=lambda item: _checked(item, pin))
    post = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="yolact-post") if overlap else None
    pending = collections.deque()
    try:
        for indices, images in _batches(images_in, batch_size):
            with torch.inference_mode(), network_mode(model, network), engine.scope():
                device_images = [image.to(model.device, non_blocking=True) for image in images]
                raw = run_network(device_images, model, network)
            check_unchanged(model, engine.identity)
            if post is None:
                pending.append((indices, images, _Done(_postprocess(finish, raw))))
            else:
                pending.append((indices, images, post.submit(_postprocess, finish, raw)))
            # With overlap one batch stays in flight: batch k is post-processed while k+1 runs.
            while len(pending) > (1 if post is not None else 0):
                yield from _results(pending.popleft())
        while pending:
            yield from _results(pending.popleft())
    finally:
        images_in.close()
        if post is not None:
            post.shutdown(wait=True, cancel_futures=True)
        if on_exit is not None:
            on_exit()


def _checked(item, pin: bool) -> Frame:
    index, image = item
    image = check_image_tensor(image)
    return index, image.pin_memory() if pin else image


def _postprocess(finish, raw):
    with torch.inference_mode():
        results = finish(*raw)
    # The one host synchronisation per batch: results are read on the CPU by the consumer.
    return [instances.to("cpu") for instances in results]


class _Done:
    """A finished result with the Future interface used by the pipeline."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


def _results(item):
    indices, images, future = item
    for index, image, instances in zip(indices, images, future.result()):
        yield index, image, instances


def _batches(frames, batch_size) -> Iterator[Tuple[list, list]]:
    """Consecutive frames of one size, at most ``batch_size`` at a time."""
    indices, images = [], []
    for index, image in frames:
        if images and image.shape != images[0].shape:
            yield indices, images
            indices, images = [], []
        indices.append(index)
        images.append(image)
        if len(images) == batch_size:
            yield indices, images
            indices, images = [], []
    if images:
        yield indices, images


def _in_background(items: Iterable, capacity: int, name: str, prepare=None) -> Iterator:
    """The items of ``items`` (each through ``prepare``), produced in a daemon thread ahead of
    the consumer by at most ``capacity``. An exception there is re-raised here; closing this
    generator stops the thread (and closes ``items`` in it)."""
    worker = _Producer(items, capacity, name, prepare)
    try:
        yield from worker
    finally:
        worker.stop()


class _Producer:
    """A daemon thread that puts the items of an iterable into a bounded queue."""

    def __init__(self, items: Iterable, capacity: int, name: str, prepare):
        self._queue: "queue.Queue" = queue.Queue(maxsize=capacity)
        self._stopped = threading.Event()
        self._prepare = prepare
        self._thread = threading.Thread(target=self._run, args=(items,), daemon=True, name=name)
        self._thread.start()

    def _run(self, items) -> None:
        try:
            for item in items:
                if not self._put(self._prepare(item) if self._prepare else item):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator's cleanup runs in the thread that ran it
                close()

    def _put(self, item) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Unblocks the thread's put and waits (up to 10 s: one batch) for it to return."""
        self._stopped.set()
        self._thread.join(timeout=10)


class VideoWriter:
    """uint8 [3,H,W] RGB frames -> a video file: H.264 (libx264) when this PyAV build has it,
    else MPEG-4 Part 2; yuv420p, so an odd width or height loses its last column or row.
    ``file`` is a path or a binary file object opened for writing; close() finalises the
    container (a closed file plays even when the run was interrupted)."""

    def __init__(self, file, fps, container_format: str = "mp4"):
        av = import_av()
        self._av = av
        self.codec = video_encoder()
        self.rate = fractions.Fraction(fps).limit_denominator(65535)
        self._container = av.open(file, "w", format=container_format)
        self._stream = None
        self.frames = 0

    def write(self, frame: torch.Tensor) -> None:
        rgb = frame.permute(1, 2, 0).numpy()
        if self._stream is None:
            self._stream = self._open_stream(rgb.shape[0], rgb.shape[1])
        height, width = self._stream.height, self._stream.width
        video_frame = self._av.VideoFrame.from_ndarray(rgb[:height, :width].copy(), format="rgb24")
        if video_frame.height != height or video_frame.width != width:
            video_frame = video_frame.reformat(width=width, height=height)
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames += 1

    def _open_stream(self, height: int, width: int):
        options = {"preset": "veryfast"} if self.codec in H264_ENCODERS else {}
        stream = self._container.add_stream(self.codec, rate=self.rate, options=options)
        stream.height, stream.width = max(2, height - height % 2), max(2, width - width % 2)
        stream.pix_fmt = "yuv420p"
        return stream

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()


def video_encoder() -> str:
    """The first video encoder this PyAV build has: H.264, else MPEG-4 Part 2."""
    av = import_av()
    for name in (*H264_ENCODERS, FALLBACK_ENCODER):
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.error.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
            continue
    raise RuntimeError("this PyAV build has neither an H.264 nor an MPEG-4 encoder")
