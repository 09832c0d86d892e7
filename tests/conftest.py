import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("YOLACT_FAST_GOLDEN", REPO.parent / "shared" / "golden"))
GOLDEN_CASES = sorted(p.name for p in GOLDEN_DIR.glob("golden_*.npz"))


def load_golden(name):
    """Golden npz as a dict of torch tensors (``meta`` parsed, ``image`` kept as numpy)."""
    data = dict(np.load(GOLDEN_DIR / name))
    out = {"meta": json.loads(str(data.pop("meta"))), "image": data.pop("image")}
    out.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()})
    return out


@pytest.fixture(scope="session", params=GOLDEN_CASES or ["<missing>"])
def golden(request):
    if request.param == "<missing>":
        pytest.fail(f"no golden cases in {GOLDEN_DIR}; set YOLACT_FAST_GOLDEN")
    return load_golden(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
