"""One process of the distributed-training tests (tests/test_train_distributed.py runs it under
``torchrun --nproc-per-node=2``): ``train()`` on tiny synthetic shapes, recording the weights
after every step.

Usage: ddp_worker.py OUT_DIR [stall | bad_rank | bench]. Every process writes
``rank{RANK}.json``: its summary and whether ``model.pt`` existed when ``train()`` returned
(rank 0 writes it a second late).
``stall``: rank 1 stops answering after step 1, so that rank 0 must fail on the process-group
timeout. ``bad_rank``: one epoch of 12 images (3 steps) where rank 1's network outputs are NaN
at step 1 and rank 1 has no usable image at step 3: both ranks skip both steps. ``bench``: the same configuration on 96
images for one epoch (24 steps), no recording; rank 0 prints the summary (images/s) as JSON
(benchmarks/bench_train_ddp.py).
"""

import dataclasses
import json
import os
import sys
import time

import torch

from yolact_fast import configs
from yolact_fast.train import trainer
from yolact_fast.data import synthetic_shapes
from yolact_fast.train import Processes, TrainOptions, init_from_environment, train
from yolact_fast.train.distributed import shutdown

TINY = configs.yolact_demo.replace(
    backbone=configs.BackboneConfig("resnet_basic", (1, 1, 1, 1), (1, 2, 3), (8, 16, 32, 64), width=8),
    max_size=64,
    fpn_features=16,
    proto_width=16,
    mask_dim=8,
    pred_scales=((8, 11), (16, 23), (32, 45), (64, 90), (128, 181)),
)
# Global batch 4 (2 per process), 8 images: 2 steps per epoch, 4 steps in all.
OPTIONS = TrainOptions(
    epochs=2, batch_size=4, lr=5e-3, warmup_steps=2, log_every=1, augment=None, checkpoint_every=1, seed=3
)
# Process-group timeout: short where the stalled rank must end the run, generous elsewhere
# (a 5 s timeout aborted a healthy run once when other jobs loaded the 2 cores).
STALL_TIMEOUT_S, TIMEOUT_S = 5, 60


def dataset(n=8):
    return list(synthetic_shapes(n, seed=5, size=(64, 64), max_objects=2, min_size=0.3))


def recorder(weights: list, out_dir: str, rank: int, stall: bool = False):
    """on_step: keep a copy of the weights; rank 0 keeps last.pt of step 3 (mid-epoch 2)."""

    def on_step(step, model):
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if rank == 0 and step == 3:
            os.replace(os.path.join(out_dir, "last.pt"), os.path.join(out_dir, "step3.pt"))
        if stall and rank == 1:
            time.sleep(600)

    return on_step


def main(out_dir: str, mode: str = "") -> None:
    torch.set_num_threads(1)
    init_from_environment("cpu", timeout_s=STALL_TIMEOUT_S if mode == "stall" else TIMEOUT_S)
    rank = Processes.current().rank
    if mode == "bench":
        summary, _ = train(
            TINY,
            dataset(96),
            out_dir,
            dataclasses.replace(OPTIONS, epochs=1, checkpoint_every=10**6),
            progress=False,
            device="cpu",
        )
        if rank == 0:
            print(json.dumps(summary))
        shutdown()
        return
    weights = []
    data, options = dataset(), OPTIONS
    if rank == 0:  # rank 0 writes model.pt late: the other ranks must wait for it
        save_weights = trainer.save_weights
        trainer.save_weights = lambda *args: (time.sleep(1), save_weights(*args))
    if mode == "bad_rank":
        data, options = bad_rank_dataset(rank), dataclasses.replace(OPTIONS, epochs=1)
    summary, _ = train(
        TINY,
        data,
        out_dir,
        options,
        progress=False,
        device="cpu",
        on_step=recorder(weights, out_dir, rank, stall=mode == "stall"),
    )
    torch.save(weights, os.path.join(out_dir, f"weights_rank{rank}.pt"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"summary": summary, "model_pt_visible": os.path.exists(summary["weights"])}, f)
    shutdown()


def bad_rank_dataset(rank: int) -> list:
    """12 images; on rank 1, NaN network outputs at the first forward and no readable image in
    rank 1's share of step 3 (the images the DistributedSampler gives it)."""
    data = dataset(12)
    if rank == 1:
        sampler = torch.utils.data.DistributedSampler(range(12), 2, 1, shuffle=True, seed=OPTIONS.seed)
        for index in list(sampler)[4:6]:
            data[index] = None
        forward = trainer.TrainingNetwork.forward

        def nan_once(self, images):
            outputs, semantic = forward(self, images)
            if not getattr(self, "poisoned", False):
                self.poisoned = True
                semantic = semantic * float("nan")
            return outputs, semantic

        trainer.TrainingNetwork.forward = nan_once
    return data


if __name__ == "__main__":
    main(*sys.argv[1:])
