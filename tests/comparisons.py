"""Comparisons of detections shared by the tests and benchmarks: bit-exact NMS outputs,
detect against its reference, and detections matched up to near-tied scores."""

import torch

from fuzz_ops import detections_mismatch


def assert_nms_equal(got, want):
    names = ("boxes", "coeffs", "labels", "scores")
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape, f"{name}: {tuple(g.shape)} vs {tuple(w.shape)}"
        assert torch.equal(g, w), f"{name} differ"


def assert_detections_close(got, want, rtol=2e-6, box_rtol=0.0):
    """detect against its reference (see fuzz_ops.detections_mismatch)."""
    problem = detections_mismatch(got, want, rtol, box_rtol)
    assert problem is None, problem


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
