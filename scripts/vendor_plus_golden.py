"""Copy what tests/test_plus.py needs from the shared YOLACT++ golden data into
tests/data/golden/plus/ (so the parity tests run on a bare clone): the image, the final detections, a digest of the
priors, and the key manifests. Usage: python scripts/vendor_plus_golden.py [GOLDEN_DIR]"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KEPT = (
    "image",
    "classes",
    "box_scores",
    "mask_scores",
    "maskiou",
    "display_order",
    "boxes",
    "masks_packed",
    "masks_shape",
    "meta",
)


def main(golden_dir: Path) -> None:
    out = REPO / "tests" / "data" / "golden" / "plus"
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((golden_dir / "plus").glob("golden_*.npz")):
        data = np.load(path)
        arrays = {k: data[k] for k in KEPT}
        arrays["priors_shape"] = np.array(data["priors"].shape)
        arrays["priors_sha256"] = np.array(hashlib.sha256(data["priors"].tobytes()).hexdigest())
        np.savez_compressed(out / path.name, **arrays)
    for path in sorted((golden_dir / "plus").glob("keys_*.json")):
        manifest = json.loads(path.read_text())
        kept = {k: manifest[k] for k in ("config", "num_keys", "keys", "weight_rule_roles")}
        (out / path.name).write_text(json.dumps(kept, separators=(",", ":")))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "golden")
