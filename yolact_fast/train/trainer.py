"""The training loop: data, optimiser, checkpoints, resume and a loss log.

``out_dir`` receives ``last.pt`` (model, optimiser and progress; written every epoch and every
``checkpoint_every`` steps, atomically), ``model.pt`` (the weights alone, loadable with
``yf.load``) and ``loss_log.jsonl`` (one line per ``log_every`` steps).

Bad data never stops training: unreadable images (items that are None), malformed samples and
invalid instances (labels out of range, zero-area boxes, empty masks) are skipped, and counted
in the returned summary's ``skipped``; so are skipped steps, once each however many processes
train: ``nonfinite_loss_step`` (a process's network outputs or loss not finite) and
``no_image_step`` (a process had no usable image).

Under torchrun (see :mod:`~yolact_fast.train.distributed`) every process trains its share of
each global batch with DistributedDataParallel; rank 0 alone writes files and shows progress,
and ``last.pt`` resumes under any number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import reference
from ..configs import YolactConfig, feature_sizes, get_config, proto_size
from ..data.transforms import Augment
from ..model import Yolact
from ..preprocess import preprocess
from .distributed import Processes, training_device
from .loss import LossWeights, prepare_targets, yolact_loss

CHECKPOINT_FORMAT = "yolact_fast.train/1"
BN_MIN_BATCH = 6  # official: BatchNorm is frozen when a GPU's batch is smaller than this


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (AdamW, linear warm-up then cosine decay to zero).

    ``batch_size`` is the global batch: N processes (torchrun) take ``batch_size / N`` images
    each per step, and ``lr`` is the learning rate of the global batch (not scaled with it), so
    the same options train the same way on any number of processes as long as BatchNorm is
    frozen; trained BatchNorm normalises each process's own batch, which depends on N.
    ``freeze_bn``: BatchNorm layers use their running statistics and their affine parameters
    are not trained; None follows the official recipe (frozen, and said so on stderr, when a
    process's batch is below 6 images, else trained on each process's own batch statistics,
    not synchronised). ``num_workers``: DataLoader workers per process; they also build the
    loss targets (resizing every mask to the input size), which otherwise costs the training
    process. ``amp``: mixed precision, bfloat16 autocast on the CPU, float16 autocast with a
    gradient scaler on CUDA.
    """

    epochs: int = 1
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 10.0
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    augment: Augment = Augment()
    loss: LossWeights = LossWeights()
    amp: bool = False
    freeze_bn: Optional[bool] = None


class AugmentedDataset(torch.utils.data.Dataset):
    """``dataset[i]`` augmented with a generator seeded by (seed, epoch, i); None stays None."""

    def __init__(self, dataset, augment: Optional[Augment], seed: int):
        self.dataset, self.augment, self.seed, self.epoch = dataset, augment, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        sample = self.dataset[index]
        if sample is None or self.augment is None:
            return sample
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.augment(sample[0], sample[1], rng)


class Batch(NamedTuple):
    """One process's share of a global batch, built in the data loader (its workers, if any):
    network input [B,3,S,S] and loss targets (None when no sample was usable), the number of
    images and the samples or instances skipped."""

    images: Optional[torch.Tensor]
    targets: Optional[List[Dict[str, torch.Tensor]]]
    size: int
    skipped: Counter


@dataclass(frozen=True)
class BatchCollator:
    """DataLoader ``collate_fn``: samples (None for an unreadable image) -> :class:`Batch`, so
    that target preparation runs in the loader's workers."""

    config: YolactConfig

    def __call__(self, samples) -> Batch:
        skipped = Counter(unreadable_image=sum(sample is None for sample in samples))
        kept = [sample for sample in (sanitize(x, len(self.config.class_names), skipped)
                                      for x in samples if x is not None) if sample is not None]
        if not kept:
            return Batch(None, None, 0, skipped)
        return Batch(*make_batch(kept, self.config), len(kept), skipped)


def sanitize(sample, num_classes: int, skipped: Counter):
    """A sample with invalid instances dropped, or None if the sample itself is malformed.

    Dropped instances are counted in ``skipped``: ``label_out_of_range`` (not in
    [0, num_classes)), ``zero_area_box`` (width or height <= 0, or non-finite), ``empty_mask``.
    A sample whose image is not [3,H,W] or whose target is inconsistent (masks not [M,H,W],
    boxes not [M,4], labels not [M]) counts as ``bad_sample``.
    """
    image, target = sample
    masks, boxes, labels = target.get("masks"), target.get("boxes"), target.get("labels")
    if (not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3
            or any(not isinstance(t, torch.Tensor) for t in (masks, boxes, labels))
            or masks.ndim != 3 or masks.shape[-2:] != image.shape[-2:]
            or boxes.shape != (masks.shape[0], 4) or labels.shape != (masks.shape[0],)):
        skipped["bad_sample"] += 1
        return None
    boxes = boxes.float()
    in_range = (labels >= 0) & (labels < num_classes)
    has_area = torch.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    has_mask = masks.flatten(1).any(1)
    skipped["label_out_of_range"] += int((~in_range).sum())
    skipped["zero_area_box"] += int((in_range & ~has_area).sum())
    skipped["empty_mask"] += int((in_range & has_area & ~has_mask).sum())
    keep = in_range & has_area & has_mask
    if keep.all():
        return sample
    return image, dict(target, masks=masks[keep], boxes=boxes[keep], labels=labels[keep])


def make_batch(samples: Sequence, config: YolactConfig) -> Tuple[torch.Tensor, List[Dict[str, torch.Tensor]]]:
    """Sanitized (image, pixel target) pairs -> (network input [B,3,S,S], targets for
    :func:`yolact_loss`)."""
    images = preprocess([image for image, _ in samples], config, "cpu")
    size = (config.max_size, config.max_size)
    targets = prepare_targets([target for _, target in samples], size, proto_size(size),
                              feature_sizes(size, 1)[0])
    return images, targets


class TrainingNetwork(nn.Module):
    """A :class:`Yolact`'s training outputs, (YolactOutput, semantic logits [B,C-1,h3,w3]),
    from one forward call: the module DistributedDataParallel wraps."""

    def __init__(self, model: Yolact):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        _, pyramid = self.model.features(images)
        return self.model.heads(pyramid), self.model.semantic_seg_conv(pyramid[0])


def training_step(model: Yolact, images: torch.Tensor, targets, priors: torch.Tensor,
                  weights: LossWeights = LossWeights(), generator: torch.Generator = None,
                  network: Optional[nn.Module] = None, amp: bool = False,
                  denominators: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                  ) -> Dict[str, torch.Tensor]:
    """Forward pass and losses (no backward) of a model in training mode; ``weights`` fields
    left None take ``model.config``'s values. ``network`` runs the forward (default
    ``TrainingNetwork(model)``; DistributedDataParallel around one when distributed); ``amp``
    autocasts it (bfloat16 on CPU, float16 on CUDA) and the loss is computed in float32;
    ``denominators``: see :func:`yolact_loss`. Non-finite network outputs give
    ``{"total": nan}`` (the loss cannot be computed; the trainer skips the step) after calling
    ``denominators`` with zero counts, so that every process joins the same collectives."""
    network = TrainingNetwork(model) if network is None else network
    device = images.device
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.autocast(device.type, dtype=dtype, enabled=amp):
        outputs, semantic = network(images)
    if not all(bool(torch.isfinite(t).all()) for t in (*outputs, semantic)):
        if denominators is not None:
            denominators(torch.zeros(2, device=device))
        return {"total": torch.tensor(float("nan"), device=device)}
    outputs = type(outputs)(*(t.float() for t in outputs))
    losses = yolact_loss(outputs, semantic.float(), priors, targets, weights.for_config(model.config),
                         model.config.variances, generator, denominators,
                         maskiou_net=model.maskiou_net)
    # Every output joins the graph (weight 0): DistributedDataParallel needs a gradient for every
    # parameter in every process, also when a process's images train no mask.
    losses["total"] = losses["total"] + 0 * sum(t.sum() for t in (*outputs, semantic))
    return losses


def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers in eval mode with their affine parameters frozen (the official
    ``Yolact.freeze_bn``); call after ``model.train()``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for parameter in (module.weight, module.bias):
                if parameter is not None:
                    parameter.requires_grad_(False)


def learning_rate(step: int, total: int, options: TrainOptions) -> float:
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    progress = (step - options.warmup_steps) / max(1, total - options.warmup_steps)
    return options.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def save_weights(model: Yolact, path: str, half: bool = False) -> None:
    """Weights only ({"state_dict", "config", "class_names"}), loadable by ``yf.load(path)``."""
    state = {k: (v.half() if half and v.is_floating_point() else v.clone()) for k, v in model.state_dict().items()}
    _atomic_save({"state_dict": state, "config": model.config.name,
                  "class_names": list(model.config.class_names)}, path)


def _atomic_save(obj, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str) -> dict:
    """A training checkpoint written by :func:`train`; RuntimeError with the reason otherwise."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint to resume not found: {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(f"refusing to resume from {path!r}: the file is corrupt or not a "
                           f"checkpoint ({type(error).__name__}: {error})") from error
    required = {"format", "state_dict", "optimizer", "epoch", "step", "config", "class_names"}
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or not required <= set(state):
        raise RuntimeError(f"refusing to resume from {path!r}: not a yolact_fast training checkpoint "
                           f"(expected keys {sorted(required)})")
    return state


class _SkipFirst(torch.utils.data.Sampler):
    """``sampler`` without its first ``count`` indices: the batches done before a resume."""

    def __init__(self, sampler: torch.utils.data.Sampler, count: int):
        self.sampler, self.count = sampler, count

    def __iter__(self):
        for position, index in enumerate(self.sampler):
            if position >= self.count:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.count)


def train(config: YolactConfig | str, dataset, out_dir: str, options: TrainOptions = TrainOptions(),
          resume: Optional[str] = None, progress: bool = True, init_weights: Optional[str] = None,
          backbone_weights: Optional[str] = None, device: Optional[str] = None,
          on_step: Optional[Callable[[int, Yolact], None]] = None) -> Tuple[Dict[str, object], Yolact]:
    """Train a YOLACT on ``dataset`` (items: (uint8 [3,H,W], pixel target) or None for an
    unreadable image). Returns (summary: steps, last losses, skipped counts, paths; the model
    in eval mode). ``resume``: a ``last.pt`` to continue from (refused if corrupt).
    ``init_weights``: a weights file (e.g. an earlier run's ``model.pt``) to start from.
    ``backbone_weights``: a pretrained backbone file (see
    :func:`~yolact_fast.model.backbone_weights.load_backbone_weights`). ``device``: default
    cuda:LOCAL_RANK when CUDA is available, else the CPU. ``on_step(step, model)`` runs in
    every process after each optimiser step.

    When torch.distributed is initialised, the processes of the default group train together
    (DistributedDataParallel; each takes ``options.batch_size / world_size`` images a step).
    """
    from tqdm import tqdm

    processes = Processes.current()
    if isinstance(config, str):
        config = get_config(config)
    class_names = tuple(getattr(dataset, "class_names", config.class_names))
    if class_names != config.class_names:
        config = config.replace(class_names=class_names)
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    if options.batch_size < processes.world_size or options.batch_size % processes.world_size:
        raise ValueError(f"batch_size {options.batch_size} is the global batch: it must be a multiple "
                         f"of the {processes.world_size} processes")
    local_batch = options.batch_size // processes.world_size
    device = training_device(device)
    if options.amp and device.type == "cpu":
        _check_cpu_amp(config)
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(options.seed)
    model = _initial_model(config, init_weights, backbone_weights, processes)
    model.to(device).train()
    if options.freeze_bn is None and local_batch < BN_MIN_BATCH and processes.is_main:
        print("Per-process batch size is less than the recommended limit for batch norm. "
              "Disabling batch norm.", file=sys.stderr)  # as the official train.py says it
    if options.freeze_bn if options.freeze_bn is not None else local_batch < BN_MIN_BATCH:
        freeze_batchnorm(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=options.amp and device.type == "cuda")
    start_epoch, step, samples_done = 0, 0, 0
    if resume is not None:
        state = read_checkpoint(resume)
        if state["config"] != config.name or tuple(state["class_names"]) != config.class_names:
            raise RuntimeError(f"refusing to resume from {resume!r}: it trains {state['config']} with "
                               f"classes {state['class_names']}, not {config.name} with {list(config.class_names)}")
        if state.get("batch_size", options.batch_size) != options.batch_size:
            raise ValueError(f"refusing to resume from {resume!r} with batch_size {options.batch_size}: it was "
                             f"trained with batch_size {state['batch_size']} (global), and its step count, "
                             "learning-rate schedule and place in the epoch are in batches of that size")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        start_epoch, step = state["epoch"], state["step"]
        # older checkpoints: one process, batch_in_epoch batches of batch_size
        samples_done = state.get("samples_in_epoch", state.get("batch_in_epoch", 0) * options.batch_size)
    network = TrainingNetwork(model)
    if processes.world_size > 1:
        network = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None)

    data = AugmentedDataset(dataset, options.augment, options.seed)
    # One global order for any number of processes: a step's global batch is the same images
    # (N processes pad the epoch to a multiple of N with repeated images).
    sampler = torch.utils.data.DistributedSampler(data, processes.world_size, processes.rank, shuffle=True,
                                                  seed=options.seed, drop_last=False)
    steps_per_epoch = math.ceil(len(sampler) / local_batch)
    total = steps_per_epoch * options.epochs
    priors = reference.make_priors(config, (config.max_size, config.max_size)).to(device)
    generator = torch.Generator().manual_seed(options.seed + processes.rank)
    log_path = os.path.join(out_dir, "loss_log.jsonl")
    skipped = Counter()
    images_seen = 0
    last: Dict[str, float] = {}
    started = time.time()

    def checkpoint(epoch: int, samples_in_epoch: int) -> None:
        if not processes.is_main:
            return
        state = {"format": CHECKPOINT_FORMAT, "state_dict": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                 "samples_in_epoch": samples_in_epoch, "batch_size": options.batch_size,
                 "world_size": processes.world_size, "config": config.name,
                 "class_names": list(config.class_names)}
        if scaler.is_enabled():
            state["scaler"] = scaler.state_dict()
        _atomic_save(state, os.path.join(out_dir, "last.pt"))

    with (open(log_path, "a") if processes.is_main else contextlib.nullcontext()) as log:
        for epoch in range(start_epoch, options.epochs):
            data.epoch = epoch
            sampler.set_epoch(epoch)
            skip_batches = samples_done // options.batch_size
            loader = torch.utils.data.DataLoader(
                data, batch_size=local_batch, sampler=_SkipFirst(sampler, skip_batches * local_batch),
                num_workers=options.num_workers, collate_fn=BatchCollator(config), drop_last=False,
                persistent_workers=False,
            )
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{options.epochs}", unit="batch",
                       disable=not (progress and processes.is_main), file=sys.stderr,
                       initial=skip_batches, total=steps_per_epoch)
            for batch_index, batch in enumerate(bar, start=skip_batches):
                skipped.update(batch.skipped)
                # Step skips are counted once (by rank 0), not once per process.
                if not processes.all(batch.size > 0, device):
                    skipped["no_image_step"] += int(processes.is_main)
                    continue  # every process needs an image for a step
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total, options)
                losses = training_step(model, batch.images.to(device), batch.targets, priors, options.loss,
                                       generator, network, options.amp, processes.loss_denominators)
                if not processes.all(bool(torch.isfinite(losses["total"])), device):
                    skipped["nonfinite_loss_step"] += int(processes.is_main)
                    optimizer.zero_grad(set_to_none=True)
                    continue
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                images_seen += batch.size
                # each process's loss is its share of the global batch's: the mean is the batch loss
                values = processes.mean(torch.stack([v.detach() for v in losses.values()]))
                last = dict(zip(losses, values.tolist()))
                bar.set_postfix(loss=f"{last['total']:.3f}", mask=f"{last['mask']:.3f}")
                if processes.is_main and (step % options.log_every == 0 or step == 1):
                    log.write(json.dumps({"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                                          "time_s": round(time.time() - started, 1),
                                          "world_size": processes.world_size, **last}) + "\n")
                    log.flush()
                if step % options.checkpoint_every == 0:
                    checkpoint(epoch, (batch_index + 1) * options.batch_size)
                if on_step is not None:
                    on_step(step, model)
            samples_done = 0
            checkpoint(epoch + 1, 0)
    model.eval()
    seconds = time.time() - started
    images_seen = int(processes.sum(torch.tensor([images_seen], device=device)).item())
    weights_path = os.path.join(out_dir, "model.pt")
    summary = {"steps": step, "losses": last,
               "skipped": {k: v for k, v in processes.sum_counts(skipped).items() if v},
               "weights": weights_path, "checkpoint": os.path.join(out_dir, "last.pt"), "log": log_path,
               "world_size": processes.world_size, "seconds": round(seconds, 1),
               "images_per_s": round(images_seen / max(seconds, 1e-9), 2)}
    if processes.is_main:
        save_weights(model, weights_path)
        with open(os.path.join(out_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    processes.barrier()  # no process returns before rank 0's files exist
    return summary, model


def _check_cpu_amp(config: YolactConfig) -> None:
    """ValueError where bfloat16 autocast on the CPU would train on wrong gradients: oneDNN
    (torch 2.14) returns garbage weight gradients for a stride-2 3x3 convolution of a 1x1 map,
    which the FPN's downsampling convolutions get when ``max_size`` is 64 or less."""
    sizes = feature_sizes((config.max_size, config.max_size), config.num_levels)
    if config.fpn_num_downsample and min(sizes[-2]) == 1:  # the last downsampling conv's input
        raise ValueError(f"amp on the CPU needs FPN maps larger than 1x1 before the downsampling convs "
                         f"(max_size {config.max_size} gives {sizes}): use max_size > 64 or no amp")


def _initial_model(config: YolactConfig, init_weights: Optional[str], backbone_weights: Optional[str],
                   processes: Processes) -> Yolact:
    """A fresh model, then the backbone from ``backbone_weights`` and all weights from
    ``init_weights`` (each optional); rank 0 reports what the backbone file set."""
    model = Yolact(config)
    if backbone_weights is not None:
        from ..model.backbone_weights import load_backbone_weights

        report = load_backbone_weights(model, backbone_weights)
        if processes.is_main:
            print(report, file=sys.stderr)
    if init_weights is not None:
        from ..model.checkpoint import check_state_dict, read_state_dict

        state_dict, _ = read_state_dict(init_weights)
        check_state_dict(model, state_dict, what=init_weights)
        model.load_state_dict(state_dict)
    return model


def options_dict(options: TrainOptions) -> dict:
    return dataclasses.asdict(options)
