import numpy as np
import pytest
import torch

from golden_data import GOLDEN_DIRS, golden_cases, load_golden

GOLDEN_CASES = golden_cases()


@pytest.fixture(scope="session", params=GOLDEN_CASES or ["<missing>"])
def golden(request):
    if request.param == "<missing>":
        pytest.fail(f"no golden cases in {GOLDEN_DIRS}; set YOLACT_FAST_GOLDEN")
    return load_golden(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def rule_model():
    """Factory ``(config_name, seed) -> yf.Yolact`` with weight-rule weights, cached per session
    (a ResNet-101 costs seconds to build and fill)."""
    import yolact_fast as yf
    from yolact_fast.model.weight_rule import rule_weights

    cache = {}

    def get(config_name, seed=0):
        if (config_name, seed) not in cache:
            cache[config_name, seed] = yf.load(rule_weights(config_name, seed), config=config_name)
        return cache[config_name, seed]

    return get


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


def match_detections(actual, expected, score_tol=1e-4, box_tol=1.0, min_iou=0.99):
    """Pair each actual detection with an unused expected one (same label, score within
    ``score_tol``, boxes within ``box_tol`` px, best mask IoU), so that near-tied scores may
    swap places. ``expected`` may be an Instances or a dict with boxes/scores/labels/masks.

    Returns dict(fraction of matched detections, label agreement in order, max score diff in
    order, max box diff and min mask IoU over the matched pairs, count difference).
    """
    get = (lambda k: expected[k]) if isinstance(expected, dict) else (lambda k: getattr(expected, k))
    e_boxes, e_scores, e_labels, e_masks = (get(k) for k in ("boxes", "scores", "labels", "masks"))
    e_boxes = e_boxes.float()
    n, m = len(actual), e_scores.shape[0]
    used = torch.zeros(m, dtype=torch.bool)
    box_diffs, ious, matched = [], [], 0
    for i in range(n):
        ok = (~used) & (e_labels == actual.labels[i]) & ((e_scores - actual.scores[i]).abs() <= score_tol)
        ok &= ((e_boxes - actual.boxes[i]).abs() <= box_tol).all(dim=1)
        best_j, best_iou = None, -1.0
        for j in ok.nonzero().flatten().tolist():
            inter = (actual.masks[i] & e_masks[j]).sum().item()
            union = (actual.masks[i] | e_masks[j]).sum().item()
            iou = inter / union if union else 1.0
            if iou > best_iou:
                best_j, best_iou = j, iou
        if best_j is not None and best_iou >= min_iou:
            used[best_j] = True
            matched += 1
            box_diffs.append((e_boxes[best_j] - actual.boxes[i]).abs().max().item())
            ious.append(best_iou)
    k = min(n, m)
    return {
        "matched_fraction": matched / max(n, m) if max(n, m) else 1.0,
        "label_agreement": (actual.labels[:k] == e_labels[:k]).float().mean().item() if k else 1.0,
        "max_score_diff": (actual.scores[:k] - e_scores[:k].float()).abs().max().item() if k else 0.0,
        "max_box_diff": max(box_diffs, default=0.0),
        "min_mask_iou": min(ious, default=1.0),
        "count_diff": n - m,
    }


@pytest.fixture
def one_thread():
    """Tiny ops: one thread avoids OpenMP spin-waits when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
