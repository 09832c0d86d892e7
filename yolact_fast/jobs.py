"""Segmenting many files, in one process or in several launched by ``torchrun``.

:func:`segment_files` is what ``yolact-fast segment`` runs; one process is a world of size 1
and takes the same path. Rank 0 lists the inputs and sends the list to the other ranks (a
glob expanded on each machine could differ). Input i of those still to do goes to rank
``i % world_size``, images and whole videos alike. Each rank writes its inputs' outputs
atomically and then, for each input whose outputs are complete, a record
``OUT/.parts/<output>.json``. Rank 0 merges the records into ``OUT/results.json``, the file a
single process writes. With ``resume`` an input whose record is complete (same source, same
settings, outputs present) is not done again, under any world size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import sys
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Union

from .files import atomic_output, output_folder
from .sources import Source, find_sources, output_paths

PARTS = ".parts"  # per-input records, below --out
RESULTS = "results.json"
SHARE_TOKEN = ".yolact-fast-share-check"
# Tests only: "RANK:POSITION:ACTION" makes rank RANK, at the POSITION-th input of its share,
# raise ("raise"), kill itself with SIGKILL ("kill") or stop answering ("stall").
FAULT_ENV = "YOLACT_FAST_TEST_FAULT"


@dataclasses.dataclass(frozen=True)
class Job:
    """One input: ``outputs`` as :func:`~yolact_fast.sources.output_paths` gives them,
    ``record`` the path of its record, ``image_id`` its id in results.json (images only)."""

    source: Source
    outputs: Dict[str, str]
    record: str
    image_id: Optional[int]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What rank 0 found: every input (in order), those still to do, what listing skipped."""

    out: str
    jobs: List[Job]
    todo: List[int]
    listing_skipped: Dict[str, int]
    settings: dict


def segment_files(
    inputs: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
    out: Union[str, os.PathLike],
    model=None,
    *,
    config=None,
    device=None,
    batch_size: int = 4,
    every: int = 1,
    start: int = 0,
    end: Optional[int] = None,
    draw_threshold: float = 0.3,
    resume: bool = False,
    timeout_s: Optional[float] = None,
    progress: bool = False,
    **options,
) -> Dict[str, object]:
    """Segments image and video files into folder ``out``: an overlay PNG per image and
    ``out/results.json`` (COCO results of every image), an annotated video and a JSON-lines
    file per video, as ``yolact-fast segment`` does. Returns the summary (the same in every
    process): counts, ``skipped`` (reason -> count), ``failed`` (the inputs without complete
    outputs), ``resumed`` (inputs kept from an earlier run), ``results`` (path or None),
    ``interrupted`` and ``world_size``.

    ``inputs``: files, folders (searched recursively for images), glob patterns, URLs or
    camera indices. ``model``: a Yolact, or weights (as :func:`yolact_fast.segment`) loaded
    with ``config`` on ``device`` ("cuda": cuda:LOCAL_RANK; default: the CPU). Under
    torchrun (WORLD_SIZE > 1) the process group is joined here if it is not yet (gloo on the
    CPU, nccl on CUDA; ``timeout_s`` bounds every collective, default 900 s) and each
    process segments its share. ``options`` go unchanged to
    :func:`~yolact_fast.video.segment_frames` and :func:`~yolact_fast.segment_video`
    (score_threshold, ...). An input that cannot be read is skipped and counted; another
    error names the rank and the input, then propagates.
    """
    from .train import distributed
    from .video import check_frame_options

    check_frame_options(batch_size, every, start, end)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.fspath(i) for i in inputs]
    if not inputs:
        raise ValueError("inputs must name at least one file, folder, pattern, URL or camera")
    out = os.fspath(out)
    settings = _settings(model, config, every, start, end, float(draw_threshold), options)
    device = _device(model, device)
    timeout_s = distributed.DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    joined = distributed.init_from_environment(device, timeout_s)
    try:
        processes = distributed.Processes.current()
        plan = _on_rank_zero(processes, lambda: _plan(inputs, out, resume, settings))
        _check_agreement(processes, plan, settings)
        model = _model(model, config, device)
        share = [plan.jobs[i] for i in plan.todo[processes.rank :: processes.world_size]]
        counts, interrupted = _run_share(
            share,
            model,
            processes,
            plan.settings,
            batch_size,
            every,
            start,
            end,
            float(draw_threshold),
            progress and processes.is_main,
            options,
        )
        counts = processes.sum_counts(counts)  # every rank is done past this point
        summary = _on_rank_zero(processes, lambda: _merge(plan, counts, interrupted, processes.world_size))
        processes.barrier()  # no rank leaves the group while another still completes the broadcast
        return summary
    finally:
        if joined:
            distributed.shutdown()


def _settings(model, config, every, start, end, draw_threshold, options) -> dict:
    """What makes an earlier output valid for ``resume`` (JSON-normalised for comparison)."""
    from .model.resolve import weights_source
    from .model.yolact import Yolact
    from .segment import SegmentOptions

    if isinstance(model, Yolact):
        weights = f"a {model.config.name} model"
    else:
        source = weights_source(model)
        weights = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    defaults = {field.name: field.default for field in dataclasses.fields(SegmentOptions)}
    defaults.update(precision="fp32", runtime="torch")  # segment_frames' engine defaults
    settings = dict(
        weights=weights,
        config=str(config),
        every=every,
        start=start,
        end=end,
        draw_threshold=draw_threshold,
        options={**defaults, **options},
    )
    return json.loads(json.dumps(settings, sort_keys=True, default=repr))


def _device(model, device):
    import torch

    from .model.yolact import Yolact
    from .train.distributed import process_device

    if device is None:
        return model.device if isinstance(model, Yolact) else torch.device("cpu")
    return process_device(device)


def _model(model, config, device):
    from .model.checkpoint import load
    from .model.resolve import weights_source
    from .model.yolact import Yolact

    return model if isinstance(model, Yolact) else load(weights_source(model), config=config, device=device)


def _on_rank_zero(processes, compute):
    """``compute()`` run on rank 0 and its value (or exception) given to every rank, so that
    an error there ends every rank at once, not in a timeout."""
    if processes.world_size == 1:
        return compute()
    value = error = None
    if processes.is_main:
        try:
            value = compute()
        except Exception as raised:  # re-raised below, on every rank
            error = raised
    value, error = processes.broadcast((value, error))
    if error is not None:
        raise error
    return value


def _plan(inputs, out, resume, settings) -> Plan:
    sources, skipped = find_sources(inputs)
    outputs = output_paths(sources, out)
    if os.path.islink(os.path.join(out, PARTS)):
        raise ValueError(
            f"{os.path.join(out, PARTS)!r} is a symbolic link; links below --out are never "
            "followed: remove it or choose another --out"
        )
    output_folder(out)
    jobs, image_ids = [], 0
    for source, paths in zip(sources, outputs):
        first = next(iter(paths.values()))
        record = os.path.join(out, PARTS, os.path.relpath(first, out) + ".json")
        jobs.append(Job(source, paths, record, image_ids if source.kind == "image" else None))
        image_ids += source.kind == "image"
    todo = [i for i, job in enumerate(jobs) if not (resume and _read_record(job, settings) is not None)]
    for i in todo:  # a record of an earlier run must not vouch for an input redone (or failing) now
        if os.path.lexists(jobs[i].record):
            os.remove(jobs[i].record)
    return Plan(out, jobs, todo, skipped, settings)


def _check_agreement(processes, plan: Plan, settings: dict) -> None:
    """ValueError on every rank when a rank was started with other settings than rank 0, or
    does not see the files rank 0 writes in ``--out``: rank 0 writes a random token into
    OUT/.yolact-fast-share-check, every rank reads it back, and rank 0 removes it."""
    if processes.world_size == 1:
        return
    import secrets

    token = None
    if processes.is_main:
        token = secrets.token_hex(16)
        with atomic_output(os.path.join(plan.out, SHARE_TOKEN), "w") as f:
            f.write(token)
    token = processes.broadcast(token)
    problem = None
    if settings != plan.settings:
        problem = (
            f"rank {processes.rank} was started with other options than rank 0 "
            f"({settings} vs {plan.settings}): start every rank with the same command"
        )
    elif _read_text(os.path.join(plan.out, SHARE_TOKEN)) != token:
        problem = (
            f"--out {plan.out!r} is not shared by every rank: rank {processes.rank} (host "
            f"{socket.gethostname()}) does not see the file rank 0 wrote there; ranks on several "
            "machines need --out on a filesystem they share (NFS, a cluster filesystem)"
        )
    problems = processes.gather(problem)
    if processes.is_main:
        os.unlink(os.path.join(plan.out, SHARE_TOKEN))
    problems = processes.broadcast([p for p in problems if p] if processes.is_main else None)
    if problems:
        raise ValueError("; ".join(problems))


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_record(job: Job, settings: dict) -> Optional[dict]:
    """The record of ``job`` if it is complete: readable, of this source with these settings,
    and every output file present; else None."""
    try:
        with open(job.record) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("source") != str(job.source.location)
        or record.get("kind") != job.source.kind
        or record.get("settings") != settings
    ):
        return None
    return record if all(os.path.isfile(p) for p in job.outputs.values()) else None


def _write_record(job: Job, settings: dict, **content) -> None:
    record = dict(source=str(job.source.location), kind=job.source.kind, settings=settings, **content)
    with atomic_output(job.record, "w") as f:
        json.dump(record, f)


class _Position:
    """The input a rank is on, for the message of an error."""

    def __init__(self, share: List[Job]):
        self.share, self.index = share, 0

    def describe(self) -> str:
        return repr(str(self.share[self.index].source.location)) if self.index < len(self.share) else "its last input"


def _run_share(share, model, processes, settings, batch_size, every, start, end, draw_threshold, progress, options):
    """Segments ``share`` on this rank: (skip counts, interrupted). An error other than an
    unreadable input is reported with the rank and the input, then raised."""
    _remove_temporaries(share)
    counts: Counter = Counter()
    images = [job for job in share if job.source.kind == "image"]
    streams = [job for job in share if job.source.kind != "image"]
    position = _Position(images + streams)  # the order they are done in
    try:
        interrupted = _segment_images(
            images, model, batch_size, draw_threshold, counts, position, processes.rank, progress, settings, options
        )
        for job in streams:
            if interrupted:
                break
            interrupted = _segment_stream(
                job,
                model,
                batch_size,
                every,
                start,
                end,
                draw_threshold,
                counts,
                position,
                processes.rank,
                progress,
                settings,
                options,
            )
            position.index += 1
    except Exception as error:
        who = f"rank {processes.rank}" if processes.world_size > 1 else "segment"
        print(f"{who} failed on {position.describe()}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        raise
    if interrupted and processes.world_size > 1:
        raise KeyboardInterrupt  # the other ranks are stopped by torchrun; --resume goes on
    return counts, interrupted


def _remove_temporaries(share: List[Job]) -> None:
    """Removes what an earlier run killed while writing left of this share's outputs: the
    temporary files of :func:`~yolact_fast.files.atomic_output` (one listing per folder)."""
    wanted: Dict[str, set] = {}
    for job in share:
        for path in (*job.outputs.values(), job.record):
            folder, base = os.path.split(os.path.abspath(path))
            wanted.setdefault(folder, set()).add(base)
    for folder, bases in wanted.items():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = re.fullmatch(r"\.(.+)\.[0-9a-f]{12}\.tmp", name)
            if match and match.group(1) in bases:
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass


def _fault(rank: int, position: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    wanted_rank, wanted_position, action = spec.split(":")
    if int(wanted_rank) != rank or int(wanted_position) != position:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stall":
        time.sleep(3600)
    raise RuntimeError(f"fault injected by {FAULT_ENV}")


def _skip(counts: Counter, reason: str, error: Exception) -> None:
    counts[reason] += 1
    print(f"skipped: {error}", file=sys.stderr)


def _segment_images(
    jobs, model, batch_size, draw_threshold, counts, position, rank, progress, settings, options
) -> bool:
    """Overlays and records of image ``jobs``: whether it was interrupted."""
    from tqdm import tqdm

    from .io import read_image
    from .video import segment_frames

    def read():
        for index, job in enumerate(jobs):
            try:
                yield index, read_image(job.source.location)
            except (ValueError, OSError) as error:
                _skip(counts, "unreadable images", error)

    results = segment_frames(read(), model, batch_size, **options)
    bar = tqdm(
        results, total=len(jobs), desc="images", unit="img", disable=not progress or len(jobs) < 2, file=sys.stderr
    )
    try:
        for index, image, instances in bar:
            position.index = index
            _fault(rank, index)
            save_overlay(image, instances, jobs[index].outputs["overlay"], draw_threshold)
            coco = instances.to_coco(jobs[index].image_id)
            _write_record(jobs[index], settings, annotations=coco, instances=len(instances))
            position.index = index + 1
    except KeyboardInterrupt:
        return True
    finally:
        results.close()
    position.index = len(jobs)
    return False


def save_overlay(image, instances, path, draw_threshold) -> None:
    """The drawing of ``instances`` with a score >= ``draw_threshold`` on ``image``, as a PNG."""
    from .visualize import draw

    save_png(draw(image, instances[instances.scores >= draw_threshold]), path)


def save_png(image, path) -> None:
    """uint8 [3,H,W] -> a PNG file, written atomically."""
    from .visualize import to_pil

    with atomic_output(path) as f:
        to_pil(image).save(f, format="PNG")


class _NoFrames(ValueError):
    pass


def _segment_stream(
    job, model, batch_size, every, start, end, draw_threshold, counts, position, rank, progress, settings, options
) -> bool:
    """Annotated video and per-frame JSON lines of a video, stream or camera, then its record:
    whether it was interrupted (both files then hold the frames done so far, and no record
    is written)."""
    from tqdm import tqdm

    from .video import VideoWriter, segment_video
    from .visualize import draw

    _fault(rank, position.index)
    source, paths = job.source, job.outputs
    try:
        video = segment_video(
            source.location, model=model, batch_size=batch_size, every=every, start=start, end=end, **options
        )
    except (FileNotFoundError, ValueError) as error:
        _skip(counts, "unreadable videos", error)
        return False
    frames = instances_found = 0
    interrupted = False
    try:
        with atomic_output(paths["video"]) as video_file, atomic_output(paths["results"], "w") as lines:
            writer = VideoWriter(video_file, video.fps / every)
            shown = tqdm(video, desc=source.name, unit="frame", disable=not progress, file=sys.stderr)
            try:
                for index, frame, instances in shown:
                    record = {"frame_index": index, "annotations": instances.to_coco(index)}
                    writer.write(draw(frame, instances[instances.scores >= draw_threshold]))
                    lines.write(json.dumps(record) + "\n")
                    frames, instances_found = frames + 1, instances_found + len(instances)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                video.close()
                writer.close()
            if frames == 0:  # nothing to keep: the temporary files are removed
                if interrupted:
                    raise KeyboardInterrupt
                raise _NoFrames(f"no frames decoded from {source.location!r} (frames {start}..{end}, every {every})")
    except _NoFrames as error:
        _skip(counts, "videos without frames", error)
        return False
    if not interrupted:
        _write_record(job, settings, frames=frames, instances=instances_found, skipped=dict(video.skipped))
    return interrupted


def _merge(plan: Plan, counts: Counter, interrupted: bool, world_size: int) -> Dict[str, object]:
    """Rank 0: results.json from the records of the image inputs (in input order, written
    atomically) and the summary of the job."""
    images, annotations, failed = [], [], []
    frames = instances = 0
    skipped = Counter(plan.listing_skipped) + counts
    for job in plan.jobs:
        record = _read_record(job, plan.settings)
        if record is None:
            failed.append(str(job.source.location))
            continue
        instances += record["instances"]
        if job.image_id is not None:
            images.append({"id": job.image_id, "file_name": str(job.source.location)})
            annotations += [dict(a, image_id=job.image_id) for a in record["annotations"]]
        else:
            frames += record["frames"]
            for reason, count in record["skipped"].items():
                skipped[f"{job.source.name}: {reason}"] += count
    results = None
    if any(job.image_id is not None for job in plan.jobs):
        results = os.path.join(plan.out, RESULTS)
        with atomic_output(results, "w") as f:
            json.dump({"images": images, "annotations": annotations}, f)
    return {
        "images": sum(job.image_id is not None for job in plan.jobs),
        "videos": sum(job.image_id is None for job in plan.jobs),
        "frames": frames,
        "instances": instances,
        "resumed": len(plan.jobs) - len(plan.todo),
        "skipped": dict(skipped),
        "failed": failed,
        "results": results,
        "interrupted": interrupted,
        "world_size": world_size,
        "out": plan.out,
    }
