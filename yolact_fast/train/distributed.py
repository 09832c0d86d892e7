"""Several processes with torch.distributed, as launched by ``torchrun``: training, and
segmenting or evaluating a share of the inputs each (:mod:`yolact_fast.jobs`).

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for every process;
:func:`init_from_environment` joins the default process group from them (gloo on CPU, nccl on
CUDA, with a timeout so that a rank that dies or stalls ends the others with an error instead
of a hang). :class:`Processes` is what the trainer needs from the group: rank, world size, and
the few collective operations of a training step.
"""

from __future__ import annotations

import datetime
import os
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 900


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def training_device(name: Optional[str | torch.device] = None) -> torch.device:
    """The device this process trains on: ``name``, where "cuda" without an index means
    cuda:LOCAL_RANK (one GPU per torchrun process); None: CUDA if available, else the CPU."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def process_device(name: Optional[str | torch.device] = None, option: str = "device") -> torch.device:
    """:func:`training_device` of ``name``; ValueError naming ``option`` for a device with an
    index under torchrun, which would put every process on that one device."""
    if launched_by_torchrun() and name is not None and torch.device(name).index is not None:
        raise ValueError(
            f"{option} {name} under torchrun would put every process on one device: "
            f"pass {option} cuda (each process takes cuda:LOCAL_RANK)"
        )
    return training_device(name)


def init_from_environment(device: Optional[str | torch.device] = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the default process group from torchrun's environment. True when this call
    joined it (then call :func:`shutdown` at the end); False when not launched with
    WORLD_SIZE > 1 or already in a group. Backend: nccl when this process trains on CUDA (see
    :func:`training_device`), else gloo. ``timeout_s`` bounds every collective: a rank that
    fails or stalls makes the others raise (nccl's default asynchronous error handling aborts
    a timed-out collective)."""
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
    if not launched_by_torchrun() or dist.is_initialized():
        return False
    device = training_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return True


def shutdown() -> None:
    """Leave the default process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Processes:
    """The processes training together: this one's ``rank`` in ``world_size`` (1: alone)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> "Processes":
        """From the default process group, or a single process when there is none.
        RuntimeError if torchrun started several processes but none joined a group."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        if launched_by_torchrun():
            raise RuntimeError(
                f"started by torchrun with WORLD_SIZE={os.environ['WORLD_SIZE']} but torch.distributed "
                "is not initialised: call yolact_fast.train.init_from_environment() first (the CLI does)"
            )
        return cls()

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and progress."""
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over the processes (a new tensor)."""
        tensor = tensor.clone()
        if self.world_size > 1:
            dist.all_reduce(tensor, dist.ReduceOp.SUM)
        return tensor

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.sum(tensor) / self.world_size

    def all(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` holds in every process."""
        if self.world_size == 1:
            return flag
        return bool(self.sum(torch.tensor([0.0 if flag else 1.0], device=device)).item() == 0)

    def barrier(self) -> None:
        """Wait for every process."""
        if self.world_size > 1:
            dist.barrier()

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object), in every process."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> Optional[list]:
        """Every process's ``value`` in rank order on rank 0; None on the other ranks."""
        if self.world_size == 1:
            return [value]
        gathered = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def sum_counts(self, counts: Counter) -> Counter:
        """Counters summed over the processes."""
        if self.world_size == 1:
            return Counter(counts)
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, dict(counts))
        return sum((Counter(c) for c in gathered), Counter())

    def loss_denominators(self, counts: torch.Tensor) -> torch.Tensor:
        """The divisors :func:`~yolact_fast.train.loss.yolact_loss` uses for this process's
        [positives, images] ``counts``: the global batch's counts (at least 1) shared out over
        the processes, so that DistributedDataParallel's gradient average is the gradient of
        the single-process loss of the global batch."""
        return self.sum(counts).clamp(min=1) / self.world_size
