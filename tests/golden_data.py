"""Where the golden data of the official implementation comes from.

``tests/data/golden`` holds the files the tests use (docs/golden-data.md describes them).
``YOLACT_FAST_GOLDEN`` names another folder to use first, and a ``shared/golden`` folder
beside the checkout, the source the vendored files are copied from, is used when present.
A file is taken from the first folder that has it; golden cases are the union of the
folders' cases.
"""

import json
import os
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO.parent / "shared" / "golden"
VENDORED_DIR = REPO / "tests" / "data" / "golden"
GOLDEN_DIRS = [Path(p) for p in [os.environ.get("YOLACT_FAST_GOLDEN")] if p] + [SHARED_DIR, VENDORED_DIR]


def golden_path(name):
    """Path of golden file ``name`` in the first folder that has it."""
    for folder in GOLDEN_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"golden file {name!r} is in none of {[str(d) for d in GOLDEN_DIRS]}")


def golden_cases():
    """Names of the golden cases (``golden_*.npz``) over all folders, sorted."""
    return sorted({p.name for folder in GOLDEN_DIRS for p in folder.glob("golden_*.npz")})


def load_golden(name):
    """Golden npz as a dict of torch tensors (``meta`` parsed, ``image`` kept as numpy)."""
    data = dict(np.load(golden_path(name)))
    out = {"meta": json.loads(str(data.pop("meta"))), "image": data.pop("image")}
    out.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()})
    return out


def load_golden_json(name):
    return json.loads(golden_path(name).read_text())


def load_golden_array(name, key):
    return np.load(golden_path(name))[key]


# torch.softmax and the vectorised exp under it round differently with the AVX2, AVX-512 and
# default kernels (a few ulps), so values that pass through them are compared with this
# tolerance; what this library computes itself is compared bit for bit.
SOFTMAX_RTOL = 4 * torch.finfo(torch.float32).eps


def assert_softmax_scores_close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=SOFTMAX_RTOL, atol=0)


def golden_case_model(golden, rule_model):
    """The rule-weight model that produced a golden case (from its meta)."""
    meta = golden["meta"]
    return rule_model(meta["config"].replace("_config", ""), meta["weight_seed"])


def golden_rgb(golden):
    """The golden image as uint8 [3,H,W] RGB (golden images are BGR HxWx3)."""
    return torch.from_numpy(np.ascontiguousarray(golden["image"][..., ::-1])).permute(2, 0, 1).contiguous()


def golden_masks(golden):
    """bool [n,H,W] official masks."""
    width = golden["image"].shape[1]
    packed = golden["masks_packed"].numpy()
    return torch.from_numpy(np.unpackbits(packed, axis=-1)[..., :width].astype(bool))
