"""Target preparation of a training batch: 8 images of 480x640 with 20 masks each, for
yolact_base (550 px input). ``prepare_targets`` resizes every mask to the input size (the
official path) before downsampling, which is what costs. The trainer builds batches in the
DataLoader's ``collate_fn`` (:class:`~yolact_fast.train.trainer.BatchCollator`), so with
``num_workers > 0`` this work leaves the training process.

Run: ``pytest benchmarks/bench_train_targets.py``; the figure is time per batch.
"""

import pytest
import torch

from yolact_fast import configs
from yolact_fast.train.trainer import BatchCollator

BATCHES, BATCH, MASKS = 4, 8, 20


def _sample(generator):
    masks = torch.zeros(MASKS, 480, 640, dtype=torch.bool)
    boxes = []
    for i in range(MASKS):
        x, y = (int(torch.randint(0, limit, (1,), generator=generator)) for limit in (500, 350))
        w, h = (int(torch.randint(10, 130, (1,), generator=generator)) for _ in range(2))
        masks[i, y : y + h, x : x + w] = True
        boxes.append([x, y, x + w, y + h])
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=generator)
    target = {
        "masks": masks,
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.zeros(MASKS, dtype=torch.int64),
    }
    return image, target


@pytest.fixture(scope="module")
def samples():
    generator = torch.Generator().manual_seed(0)
    return [_sample(generator) for _ in range(BATCH)] * BATCHES


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_per_second(benchmark, samples, workers):
    """Wall time per batch seen by the training process iterating the loader (``workers=0``:
    all of it in the training process, the reference)."""
    benchmark.name = f"loader workers={workers}" + (" (reference)" if workers == 0 else "")
    benchmark.group = "training batches, 8 x 480x640 images, 20 masks each"
    loader = torch.utils.data.DataLoader(
        samples, batch_size=BATCH, num_workers=workers, collate_fn=BatchCollator(configs.yolact_base)
    )

    def per_batch():
        for batch in loader:
            assert batch.size == BATCH

    benchmark.pedantic(per_batch, rounds=3, iterations=1)
    benchmark.extra_info["batches_per_round"] = BATCHES
