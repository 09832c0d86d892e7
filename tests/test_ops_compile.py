"""torch.library.opcheck on every op, and torch.compile(fullgraph=True) of the
post-network path (static shapes: fast_nms pads and returns a count)."""

import pytest
import torch

from yolact_fast import configs, ops, reference
from inputs import random_boxes, random_coeffs, random_head, random_proto, random_scores

g = torch.Generator().manual_seed(0)
OPCHECK_CASES = {
    "make_priors": (torch.tensor([[0.1, 0.1], [0.2, 0.2]], dtype=torch.float64), [3, 4, 2, 2], [1, 1]),
    "decode_boxes": (torch.randn(2, 30, 4, generator=g), torch.rand(30, 4, generator=g), 0.1, 0.2),
    "fast_nms": (random_boxes(40, g), random_scores(3, 40, g), random_coeffs(40, 4, g), 0.5, 10, 0.05, 7, "fast"),
    "detect": (*random_head(40, 3, 4, g), 0.1, 0.2, 0.5, 10, 0.05, 7, "cluster"),
    "assemble_masks": (random_proto(9, 7, 4, g), random_coeffs(3, 4, g), random_boxes(3, g), 1.0),
    "paste_masks": (random_proto(9, 7, 4, g), random_coeffs(3, 4, g), random_boxes(3, g), [20, 17], 0.5, 1.0),
    "bits_checksum": ([torch.randn(5, 3, generator=g), torch.arange(7), torch.zeros(0, dtype=torch.float16)],),
}


@pytest.mark.parametrize("name", sorted(OPCHECK_CASES))
def test_opcheck(name):
    # test_aot_dispatch_dynamic only for the differentiable op: the others have no autograd
    # formula (their outputs are indices, thresholds and masks).
    utils = ["test_schema", "test_autograd_registration", "test_faketensor"]
    if name == "assemble_masks":
        utils.append("test_aot_dispatch_dynamic")
    torch.library.opcheck(getattr(torch.ops.yolact_fast, name), OPCHECK_CASES[name], test_utils=utils)


def test_assemble_masks_gradients():
    g = torch.Generator().manual_seed(3)
    proto = random_proto(7, 9, 3, g, torch.float64).requires_grad_()
    coeffs = random_coeffs(4, 3, g, torch.float64).requires_grad_()
    boxes = random_boxes(4, g, torch.float64, hostile=False)
    assert torch.autograd.gradcheck(lambda p, c: ops.assemble_masks(p, c, boxes), (proto, coeffs))
    # And equal to autograd through the reference.
    ops.assemble_masks(proto, coeffs, boxes).square().sum().backward()
    got = proto.grad.clone(), coeffs.grad.clone()
    proto.grad = coeffs.grad = None
    reference.assemble_masks(proto, coeffs, boxes).square().sum().backward()
    torch.testing.assert_close(got, (proto.grad, coeffs.grad))


def post_network(loc, scores, coeffs, proto, priors):
    boxes = torch.ops.yolact_fast.decode_boxes(loc, priors, 0.1, 0.2)
    boxes, coeffs, labels, det_scores, count = torch.ops.yolact_fast.fast_nms(
        boxes, scores, coeffs, 0.5, 200, 0.05, 100, "fast"
    )
    masks = torch.ops.yolact_fast.paste_masks(proto, coeffs, boxes, [60, 80], 0.5, 1.0)
    return boxes, labels, det_scores, masks, count


def test_compile_fullgraph_post_network():
    config = configs.yolact_base.replace(name="tiny", class_names=("a", "b", "c"))
    priors = ops.make_priors(config, (64, 64))
    P = priors.shape[0]
    g = torch.Generator().manual_seed(1)
    loc, coeffs = torch.randn(P, 4, generator=g) * 0.5, random_coeffs(P, 8, g)
    scores, proto = random_scores(3, P, g), random_proto(16, 16, 8, g)
    compiled = torch.compile(post_network, fullgraph=True, backend="aot_eager")
    got, want = compiled(loc, scores, coeffs, proto, priors), post_network(loc, scores, coeffs, proto, priors)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    n = int(got[4])
    ref_boxes, _, ref_labels, ref_scores = reference.fast_nms(reference.decode_boxes(loc, priors), scores, coeffs)
    assert torch.equal(got[0][:n], ref_boxes) and torch.equal(got[1][:n], ref_labels)


def detect_and_paste(loc, logits, coeffs, proto, priors):
    boxes, coeffs, labels, scores, count = torch.ops.yolact_fast.detect(
        loc, logits, coeffs, priors, 0.1, 0.2, 0.5, 200, 0.05, 100, "fast"
    )
    masks = torch.ops.yolact_fast.paste_masks(proto, coeffs, boxes, [60, 80], 0.5, 1.0)
    return boxes, labels, scores, masks, count


def test_compile_fullgraph_detect():
    config = configs.yolact_base.replace(name="tiny", class_names=("a", "b", "c"))
    priors = ops.make_priors(config, (64, 64))
    g = torch.Generator().manual_seed(2)
    loc, logits, coeffs, _ = random_head(priors.shape[0], 3, 8, g)
    proto = random_proto(16, 16, 8, g)
    compiled = torch.compile(detect_and_paste, fullgraph=True, backend="aot_eager")
    got = compiled(loc, logits, coeffs, proto, priors)
    want = detect_and_paste(loc, logits, coeffs, proto, priors)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert int(got[4]) > 0
