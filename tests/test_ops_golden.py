"""The kernels reproduce the official implementation's recorded outputs (tests/data/golden)."""

import torch

from yolact_fast import configs, ops

from golden_data import golden_masks
from golden_data import assert_softmax_scores_close

CONFIG_OF = {"yolact_base_config": configs.yolact_base, "yolact_resnet50_config": configs.yolact_resnet50}


def foreground_scores(golden):
    return torch.softmax(golden["conf_logits"], dim=-1).t()[1:]


def golden_detections(golden):
    return golden["det_box"], golden["det_mask_coeffs"], golden["det_class"], golden["det_score"]


def test_priors(golden):
    config = CONFIG_OF[golden["meta"]["config"]]
    assert torch.equal(ops.make_priors(config, (550, 550)), golden["priors"])


def test_decode_bit_exact(golden):
    assert torch.equal(ops.decode_boxes(golden["loc"], golden["priors"]), golden["decoded_boxes"])


def test_fast_nms(golden):
    boxes, coeffs, labels, scores = ops.fast_nms(
        golden["decoded_boxes"], foreground_scores(golden), golden["mask_coeffs"]
    )
    want_boxes, want_coeffs, want_labels, want_scores = golden_detections(golden)
    assert torch.equal(boxes, want_boxes) and torch.equal(coeffs, want_coeffs)
    assert torch.equal(labels, want_labels)
    assert_softmax_scores_close(scores, want_scores)


def test_assemble_masks(golden):
    boxes, coeffs = golden["det_box"], golden["det_mask_coeffs"]
    got = ops.assemble_masks(golden["proto"], coeffs, boxes)
    torch.testing.assert_close(got, golden["masks_proto_res"], rtol=1e-5, atol=1e-6)


def test_paste_masks(golden):
    h, w = golden["image"].shape[:2]
    got = ops.paste_masks(golden["proto"], golden["det_mask_coeffs"], golden["det_box"], (h, w))
    assert torch.equal(got, golden_masks(golden))


def test_post_network_path(golden):
    """loc/conf/coeffs/proto -> final masks through the kernels alone."""
    h, w = golden["image"].shape[:2]
    config = CONFIG_OF[golden["meta"]["config"]]
    boxes = ops.decode_boxes(golden["loc"], ops.make_priors(config, (550, 550)))
    boxes, coeffs, labels, scores = ops.fast_nms(boxes, foreground_scores(golden), golden["mask_coeffs"])
    masks = ops.paste_masks(golden["proto"], coeffs, boxes, (h, w))
    assert torch.equal(labels, golden["classes"])
    assert_softmax_scores_close(scores, golden["scores"])
    assert torch.equal(masks, golden_masks(golden))


def test_detect(golden):
    """The fused detect from the raw head outputs: the official detections (scores within
    a few ulps: its softmax has its own vectorized exp)."""
    boxes, coeffs, labels, scores = ops.detect(
        golden["loc"], golden["conf_logits"], golden["mask_coeffs"], golden["priors"]
    )
    assert torch.equal(labels, golden["det_class"]) and torch.equal(boxes, golden["det_box"])
    assert torch.equal(coeffs, golden["det_mask_coeffs"])
    torch.testing.assert_close(scores, golden["det_score"], rtol=2e-6, atol=0)
