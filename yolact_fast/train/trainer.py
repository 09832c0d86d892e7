"""The training loop: data, optimiser, checkpoints, resume and a loss log.

``out_dir`` receives ``last.pt`` (model, optimiser and progress; written every epoch and every
``checkpoint_every`` steps, atomically), ``model.pt`` (the weights alone, loadable with
``yf.load``) and ``loss_log.jsonl`` (one line per ``log_every`` steps).

Bad data never stops training: unreadable images (items that are None, or whose loading raises
OSError or ValueError: corrupt, empty or oversized image files), malformed samples and
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

from .. import ops
from ..ops._args import as_int
from ..configs import YolactConfig, feature_sizes, get_config, proto_size
from ..data.transforms import Augment
from ..files import append_output, atomic_output, output_folder
from ..model import Yolact
from ..model.checkpoint import check_state_values, check_stored_tensors, save_file, save_weights, torch_load
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

    def __post_init__(self):
        for name in ("epochs", "batch_size", "log_every", "checkpoint_every"):
            as_int(getattr(self, name), f"TrainOptions.{name}", minimum=1)
        for name in ("warmup_steps", "seed", "num_workers"):
            as_int(getattr(self, name), f"TrainOptions.{name}", minimum=0)
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"TrainOptions.{name} must be a finite number >= 0, got {value!r}")


class AugmentedDataset(torch.utils.data.Dataset):
    """``dataset[i]`` augmented with a generator seeded by (seed, epoch, i); None stays None."""

    def __init__(self, dataset, augment: Optional[Augment], seed: int):
        self.dataset, self.augment, self.seed, self.epoch = dataset, augment, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            sample = self.dataset[index]
        except (OSError, ValueError):  # an item that cannot be read counts as an unreadable image
            return None
        if sample is None or self.augment is None or malformed(sample):
            return sample  # the collator counts a malformed sample
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
        kept = [
            sample
            for sample in (sanitize(x, len(self.config.class_names), skipped) for x in samples if x is not None)
            if sample is not None
        ]
        if not kept:
            return Batch(None, None, 0, skipped)
        return Batch(*make_batch(kept, self.config), len(kept), skipped)


def malformed(sample) -> bool:
    """Whether ``sample`` is not an (image uint8 [3,H,W] with H, W > 0, target) pair whose target
    has tensors "masks" [M,H,W], "boxes" [M,4] and "labels" [M]."""
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[1], dict)):
        return True
    image, target = sample
    masks, boxes, labels = target.get("masks"), target.get("boxes"), target.get("labels")
    return (
        not isinstance(image, torch.Tensor)
        or image.dtype != torch.uint8
        or image.ndim != 3
        or image.shape[0] != 3
        or image.numel() == 0
        or any(not isinstance(t, torch.Tensor) for t in (masks, boxes, labels))
        or masks.ndim != 3
        or masks.shape[-2:] != image.shape[-2:]
        or boxes.shape != (masks.shape[0], 4)
        or labels.shape != (masks.shape[0],)
    )


def sanitize(sample, num_classes: int, skipped: Counter):
    """A sample with invalid instances dropped, or None if the sample itself is malformed.

    Dropped instances are counted in ``skipped``: ``label_out_of_range`` (not in
    [0, num_classes)), ``zero_area_box`` (width or height <= 0, or non-finite), ``empty_mask``.
    A :func:`malformed` sample counts as ``bad_sample``.
    """
    if malformed(sample):
        skipped["bad_sample"] += 1
        return None
    image, target = sample
    masks, boxes, labels = target["masks"], target["boxes"], target["labels"]
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
    targets = prepare_targets([target for _, target in samples], size, proto_size(size), feature_sizes(size, 1)[0])
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


def training_step(
    model: Yolact,
    images: torch.Tensor,
    targets,
    priors: torch.Tensor,
    weights: LossWeights = LossWeights(),
    generator: torch.Generator = None,
    network: Optional[nn.Module] = None,
    amp: bool = False,
    denominators: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
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
    losses = yolact_loss(
        outputs,
        semantic.float(),
        priors,
        targets,
        weights.for_config(model.config),
        model.config.variances,
        generator,
        denominators,
        maskiou_net=model.maskiou_net,
    )
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


def read_checkpoint(path: str) -> dict:
    """A training checkpoint written by :func:`train`; RuntimeError with the reason otherwise."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint to resume not found: {path!r}")
    try:
        state = torch_load(path, path)
    except RuntimeError as error:
        raise RuntimeError(f"refusing to resume from {path!r}: {error}") from None
    required = {"format", "state_dict", "optimizer", "epoch", "step", "config", "class_names"}
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or not required <= set(state):
        raise RuntimeError(
            f"refusing to resume from {path!r}: not a yolact_fast training checkpoint "
            f"(expected keys {sorted(required)})"
        )
    check_stored_tensors(state, repr(path))
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


def train(
    config: YolactConfig | str,
    dataset,
    out_dir: str,
    options: TrainOptions = TrainOptions(),
    resume: Optional[str] = None,
    progress: bool = True,
    init_weights: Optional[str] = None,
    backbone_weights: Optional[str] = None,
    device: Optional[str] = None,
    on_step: Optional[Callable[[int, Yolact], None]] = None,
) -> Tuple[Dict[str, object], Yolact]:
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
    trainer = Trainer(config, dataset, out_dir, options, init_weights, backbone_weights, device)
    if resume is not None:
        trainer.resume(resume)
    return trainer.train(progress, on_step)


class Trainer:
    """One training run: the model, optimiser and gradient scaler, the data order and the
    progress (epoch, step, samples done in the epoch), written to ``last.pt`` and read back by
    :meth:`resume`. As detectron2's ``TrainerBase``, :meth:`train` runs epochs of
    :meth:`run_step`, one optimiser step per global batch."""

    def __init__(
        self,
        config: YolactConfig | str,
        dataset,
        out_dir: str,
        options: TrainOptions = TrainOptions(),
        init_weights: Optional[str] = None,
        backbone_weights: Optional[str] = None,
        device: Optional[str] = None,
    ):
        self.processes = processes = Processes.current()
        self.config = config = _config_for(config, dataset)
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty")
        if options.batch_size % processes.world_size:
            raise ValueError(
                f"batch_size {options.batch_size} is the global batch: it must be a multiple "
                f"of the {processes.world_size} processes"
            )
        self.options, self.out_dir = options, out_dir
        self.local_batch = options.batch_size // processes.world_size
        self.device = device = training_device(device)
        if options.amp and device.type == "cpu":
            _check_cpu_amp(config)
        output_folder(out_dir, "out_dir")
        torch.manual_seed(options.seed)
        self.model = _initial_model(config, init_weights, backbone_weights, processes)
        self.model.to(device).train()
        self._set_batchnorm()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=options.amp and device.type == "cuda")
        self.network: nn.Module = TrainingNetwork(self.model)
        if processes.world_size > 1:
            self.network = nn.parallel.DistributedDataParallel(
                self.network, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.data = AugmentedDataset(dataset, options.augment, options.seed)
        # One global order for any number of processes: a step's global batch is the same images
        # (N processes pad the epoch to a multiple of N with repeated images).
        self.sampler = torch.utils.data.DistributedSampler(
            self.data, processes.world_size, processes.rank, shuffle=True, seed=options.seed, drop_last=False
        )
        self.steps_per_epoch = math.ceil(len(self.sampler) / self.local_batch)
        self.total_steps = self.steps_per_epoch * options.epochs
        self.priors = ops.make_priors(config, (config.max_size, config.max_size), device)
        self.generator = torch.Generator().manual_seed(options.seed + processes.rank)
        self.epoch, self.step, self.samples_done = 0, 0, 0
        self.skipped: Counter = Counter()
        self.images_seen = 0
        self.last: Dict[str, float] = {}
        self.checkpoint_path = os.path.join(out_dir, "last.pt")
        self.weights_path = os.path.join(out_dir, "model.pt")
        self.log_path = os.path.join(out_dir, "loss_log.jsonl")

    def _set_batchnorm(self) -> None:
        freeze = self.options.freeze_bn
        if freeze is None:
            freeze = self.local_batch < BN_MIN_BATCH
            if freeze and self.processes.is_main:
                print(
                    "Per-process batch size is less than the recommended limit for batch norm. Disabling batch norm.",
                    file=sys.stderr,
                )  # as the official train.py says it
        if freeze:
            freeze_batchnorm(self.model)

    def resume(self, path: str) -> None:
        """Continue from a ``last.pt`` of the same config, classes and global batch size."""
        state = read_checkpoint(path)
        config, batch_size = self.config, self.options.batch_size
        if state["config"] != config.name or tuple(state["class_names"]) != config.class_names:
            raise RuntimeError(
                f"refusing to resume from {path!r}: it trains {state['config']} with "
                f"classes {state['class_names']}, not {config.name} with {list(config.class_names)}"
            )
        if state.get("batch_size", batch_size) != batch_size:
            raise ValueError(
                f"refusing to resume from {path!r} with batch_size {batch_size}: it was "
                f"trained with batch_size {state['batch_size']} (global), and its step count, "
                "learning-rate schedule and place in the epoch are in batches of that size"
            )
        if set(state["state_dict"]) == set(self.model.state_dict()):  # else load_state_dict names the keys
            check_state_values(self.model, state["state_dict"], f"refusing to resume from {path!r}")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        # older checkpoints: one process, batch_in_epoch batches of batch_size
        self.samples_done = state.get("samples_in_epoch", state.get("batch_in_epoch", 0) * batch_size)

    def train(
        self, progress: bool = True, on_step: Optional[Callable[[int, Yolact], None]] = None
    ) -> Tuple[Dict[str, object], Yolact]:
        """Runs the remaining epochs; returns (summary, model in eval mode). Rank 0 writes
        ``model.pt`` and ``summary.json`` at the end."""
        self.started = time.time()
        with append_output(self.log_path) if self.processes.is_main else contextlib.nullcontext() as log:
            while self.epoch < self.options.epochs:
                self.run_epoch(log, progress, on_step)
        self.model.eval()
        summary = self.summary()
        if self.processes.is_main:
            save_weights(self.model, self.weights_path)
            with atomic_output(os.path.join(self.out_dir, "summary.json"), "w") as file:
                json.dump(summary, file, indent=1)
        self.processes.barrier()  # no process returns before rank 0's files exist
        return summary, self.model

    def run_epoch(self, log, progress: bool, on_step: Optional[Callable[[int, Yolact], None]]) -> None:
        """The rest of epoch ``self.epoch`` (all of it unless resumed mid-epoch), then a checkpoint."""
        from tqdm import tqdm

        options, epoch = self.options, self.epoch
        self.data.epoch = epoch
        self.sampler.set_epoch(epoch)
        skip_batches = self.samples_done // options.batch_size
        loader = torch.utils.data.DataLoader(
            self.data,
            batch_size=self.local_batch,
            sampler=_SkipFirst(self.sampler, skip_batches * self.local_batch),
            num_workers=options.num_workers,
            collate_fn=BatchCollator(self.config),
            drop_last=False,
            persistent_workers=False,
        )
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{options.epochs}",
            unit="batch",
            disable=not (progress and self.processes.is_main),
            file=sys.stderr,
            initial=skip_batches,
            total=self.steps_per_epoch,
        )
        for batch_index, batch in enumerate(bar, start=skip_batches):
            if not self.run_step(batch):
                continue
            bar.set_postfix(loss=f"{self.last['total']:.3f}", mask=f"{self.last['mask']:.3f}")
            if self.processes.is_main and (self.step % options.log_every == 0 or self.step == 1):
                self._log(log)
            if self.step % options.checkpoint_every == 0:
                self.save_checkpoint(epoch, (batch_index + 1) * options.batch_size)
            if on_step is not None:
                on_step(self.step, self.model)
        self.epoch, self.samples_done = epoch + 1, 0
        self.save_checkpoint(self.epoch, 0)

    def run_step(self, batch: Batch) -> bool:
        """One optimiser step on a global batch; False (and counted in ``skipped``, once however
        many processes train) when a process has no usable image or a non-finite loss."""
        processes, options = self.processes, self.options
        self.skipped.update(batch.skipped)
        if not processes.all(batch.size > 0, self.device):
            self.skipped["no_image_step"] += int(processes.is_main)
            return False  # every process needs an image for a step
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.total_steps, options)
        losses = training_step(
            self.model,
            batch.images.to(self.device),
            batch.targets,
            self.priors,
            options.loss,
            self.generator,
            self.network,
            options.amp,
            processes.loss_denominators,
        )
        self.optimizer.zero_grad(set_to_none=True)
        if not processes.all(bool(torch.isfinite(losses["total"])), self.device):
            self.skipped["nonfinite_loss_step"] += int(processes.is_main)
            return False
        self.scaler.scale(losses["total"]).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), options.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        self.images_seen += batch.size
        # each process's loss is its share of the global batch's: the mean is the batch loss
        values = processes.mean(torch.stack([v.detach() for v in losses.values()]))
        self.last = dict(zip(losses, values.tolist()))
        return True

    def _log(self, log) -> None:
        log.write(
            json.dumps(
                {
                    "step": self.step,
                    "epoch": self.epoch,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "time_s": round(time.time() - self.started, 1),
                    "world_size": self.processes.world_size,
                    **self.last,
                }
            )
            + "\n"
        )
        log.flush()

    def save_checkpoint(self, epoch: int, samples_in_epoch: int) -> None:
        """``last.pt`` (rank 0, atomically): resuming starts at ``epoch`` after ``samples_in_epoch``
        samples of it."""
        if not self.processes.is_main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "step": self.step,
            "samples_in_epoch": samples_in_epoch,
            "batch_size": self.options.batch_size,
            "world_size": self.processes.world_size,
            "config": self.config.name,
            "class_names": list(self.config.class_names),
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        save_file(state, self.checkpoint_path)

    def summary(self) -> Dict[str, object]:
        """Steps, last losses, skipped counts (summed over processes), paths and throughput."""
        processes = self.processes
        seconds = time.time() - self.started
        images_seen = int(processes.sum(torch.tensor([self.images_seen], device=self.device)).item())
        return {
            "steps": self.step,
            "losses": self.last,
            "skipped": {k: v for k, v in processes.sum_counts(self.skipped).items() if v},
            "weights": self.weights_path,
            "checkpoint": self.checkpoint_path,
            "log": self.log_path,
            "world_size": processes.world_size,
            "seconds": round(seconds, 1),
            "images_per_s": round(images_seen / max(seconds, 1e-9), 2),
        }


def _config_for(config: YolactConfig | str, dataset) -> YolactConfig:
    """``config`` (a name or a config) with the dataset's class names, if it has any."""
    if isinstance(config, str):
        config = get_config(config)
    class_names = tuple(getattr(dataset, "class_names", config.class_names))
    return config if class_names == config.class_names else config.replace(class_names=class_names)


def _check_cpu_amp(config: YolactConfig) -> None:
    """ValueError where bfloat16 autocast on the CPU would train on wrong gradients: oneDNN
    (torch 2.14) returns garbage weight gradients for a stride-2 3x3 convolution of a 1x1 map,
    which the FPN's downsampling convolutions get when ``max_size`` is 64 or less."""
    sizes = feature_sizes((config.max_size, config.max_size), config.num_levels)
    if config.fpn_num_downsample and min(sizes[-2]) == 1:  # the last downsampling conv's input
        raise ValueError(
            f"amp on the CPU needs FPN maps larger than 1x1 before the downsampling convs "
            f"(max_size {config.max_size} gives {sizes}): use max_size > 64 or no amp"
        )


def _initial_model(
    config: YolactConfig, init_weights: Optional[str], backbone_weights: Optional[str], processes: Processes
) -> Yolact:
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
