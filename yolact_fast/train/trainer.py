"""The training loop: data, optimiser, checkpoints, resume and a loss log.

``out_dir`` receives ``last.pt`` (model, optimiser and progress; written every epoch and every
``checkpoint_every`` steps, atomically), ``model.pt`` (the weights alone, loadable with
``yf.load``) and ``loss_log.jsonl`` (one line per ``log_every`` steps).

Bad data never stops training: unreadable images (items that are None), malformed samples and
invalid instances (labels out of range, zero-area boxes, empty masks) are skipped, and counted
in the returned summary's ``skipped``; so are steps whose loss is not finite.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import reference
from ..configs import YolactConfig, get_config, proto_size
from ..data.transforms import Augment
from ..model import Yolact
from ..segment import preprocess
from .loss import LossWeights, prepare_targets, yolact_loss

CHECKPOINT_FORMAT = "yolact_fast.train/1"


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (AdamW, linear warm-up then cosine decay to zero)."""

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


def _collate(samples):
    kept = [s for s in samples if s is not None]
    return kept, len(samples) - len(kept)


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
    return images, prepare_targets([target for _, target in samples], size, proto_size(size))


def training_step(model: Yolact, images: torch.Tensor, targets, priors: torch.Tensor,
                  weights: LossWeights = LossWeights(), generator: torch.Generator = None
                  ) -> Dict[str, torch.Tensor]:
    """Forward pass and losses (no backward) of a model in training mode."""
    _, pyramid = model.features(images)
    outputs = model.heads(pyramid)
    semantic = model.semantic_seg_conv(pyramid[0])
    return yolact_loss(outputs, semantic, priors, targets, weights, model.config.variances, generator,
                       maskiou_net=model.maskiou_net)


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


def train(config: YolactConfig | str, dataset, out_dir: str, options: TrainOptions = TrainOptions(),
          resume: Optional[str] = None, progress: bool = True, init_weights: Optional[str] = None
          ) -> Tuple[Dict[str, object], Yolact]:
    """Train a YOLACT on ``dataset`` (items: (uint8 [3,H,W], pixel target) or None for an
    unreadable image). Returns (summary: steps, last losses, skipped counts, paths; the model
    in eval mode). ``resume``: a ``last.pt`` to continue from (refused if corrupt).
    ``init_weights``: a weights file (e.g. an earlier run's ``model.pt``) to start from."""
    from tqdm import tqdm

    if isinstance(config, str):
        config = get_config(config)
    class_names = tuple(getattr(dataset, "class_names", config.class_names))
    if class_names != config.class_names:
        config = config.replace(class_names=class_names)
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(options.seed)
    model = Yolact(config).train()
    if init_weights is not None:
        from ..model.checkpoint import check_state_dict, read_state_dict

        state_dict, _ = read_state_dict(init_weights)
        check_state_dict(model, state_dict, what=init_weights)
        model.load_state_dict(state_dict)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    start_epoch, step, skip_batches = 0, 0, 0
    if resume is not None:
        state = read_checkpoint(resume)
        if state["config"] != config.name or tuple(state["class_names"]) != config.class_names:
            raise RuntimeError(f"refusing to resume from {resume!r}: it trains {state['config']} with "
                               f"classes {state['class_names']}, not {config.name} with {list(config.class_names)}")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, skip_batches = state["epoch"], state["step"], state.get("batch_in_epoch", 0)

    data = AugmentedDataset(dataset, options.augment, options.seed)
    steps_per_epoch = math.ceil(len(dataset) / options.batch_size)
    total = steps_per_epoch * options.epochs
    priors = reference.make_priors(config, (config.max_size, config.max_size))
    generator = torch.Generator().manual_seed(options.seed)
    log_path = os.path.join(out_dir, "loss_log.jsonl")
    skipped = Counter()
    last: Dict[str, float] = {}
    started = time.time()

    def checkpoint(epoch: int, batch_in_epoch: int) -> None:
        _atomic_save({"format": CHECKPOINT_FORMAT, "state_dict": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                      "batch_in_epoch": batch_in_epoch, "config": config.name,
                      "class_names": list(config.class_names)}, os.path.join(out_dir, "last.pt"))

    with open(log_path, "a") as log:
        for epoch in range(start_epoch, options.epochs):
            data.epoch = epoch
            order = torch.Generator().manual_seed(options.seed * 1000003 + epoch)
            loader = torch.utils.data.DataLoader(
                data, batch_size=options.batch_size, shuffle=True, generator=order,
                num_workers=options.num_workers, collate_fn=_collate, drop_last=False,
                persistent_workers=False,
            )
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{options.epochs}", unit="batch",
                       disable=not progress, file=sys.stderr, initial=skip_batches, total=steps_per_epoch)
            for batch_index, (samples, bad) in enumerate(bar):
                if batch_index < skip_batches:
                    continue  # resumed mid-epoch: the loader order is the same, so skip what was done
                skipped["unreadable_image"] += bad
                samples = [sample for sample in (sanitize(x, len(config.class_names), skipped)
                                                 for x in samples) if sample is not None]
                if not samples:
                    continue
                images, targets = make_batch(samples, config)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total, options)
                losses = training_step(model, images, targets, priors, options.loss, generator)
                if not torch.isfinite(losses["total"]):
                    skipped["nonfinite_loss_step"] += 1
                    optimizer.zero_grad(set_to_none=True)
                    continue
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
                optimizer.step()
                step += 1
                last = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{last['total']:.3f}", mask=f"{last['mask']:.3f}")
                if step % options.log_every == 0 or step == 1:
                    log.write(json.dumps({"step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                                          "time_s": round(time.time() - started, 1), **last}) + "\n")
                    log.flush()
                if step % options.checkpoint_every == 0:
                    checkpoint(epoch, batch_index + 1)
            skip_batches = 0
            checkpoint(epoch + 1, 0)
    model.eval()
    weights_path = os.path.join(out_dir, "model.pt")
    save_weights(model, weights_path)
    summary = {"steps": step, "losses": last, "skipped": {k: v for k, v in skipped.items() if v},
               "weights": weights_path,
               "checkpoint": os.path.join(out_dir, "last.pt"), "log": log_path,
               "seconds": round(time.time() - started, 1)}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary, model


def options_dict(options: TrainOptions) -> dict:
    return dataclasses.asdict(options)
