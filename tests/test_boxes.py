"""yolact_fast.ops.boxes against torchvision.ops and hand-worked cases, degenerate boxes included."""

import pytest
import torch
import torchvision

from yolact_fast.ops.boxes import box_convert, box_ioa, box_iou, boxes_to_pixels, crop_bounds, point_form

from inputs import gen, random_boxes


def ordered_boxes(n, seed):
    """[n, 4] float32 xyxy with x1 <= x2, y1 <= y2 (zero-area ones included)."""
    boxes = random_boxes(n, gen(seed)).float()
    return torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)


@pytest.mark.parametrize("n,m", [(0, 3), (5, 0), (7, 11), (64, 64)])
def test_box_iou_matches_torchvision(n, m):
    a, b = ordered_boxes(n, 0), ordered_boxes(m, 1)
    a[:1] = 0  # a zero-area box at the origin against the others
    ours, theirs = box_iou(a, b), torchvision.ops.box_iou(a, b)
    assert ours.shape == (n, m)
    defined = theirs.isfinite() & ours.isfinite()
    assert torch.equal(defined, theirs.isfinite())  # NaN (0/0) exactly where torchvision's is
    torch.testing.assert_close(ours[defined], theirs[defined], rtol=1e-6, atol=0)


def test_box_iou_hand_cases_and_batches():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    want = torch.tensor([[1 / 7, 0.0, 1.0], [0.0, 0.0, 0.25]])
    torch.testing.assert_close(box_iou(a, b), want)
    assert torch.equal(box_iou(torch.stack([a, a]), torch.stack([b, b])), torch.stack([box_iou(a, b)] * 2))
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert box_iou(point, point).isnan().all()  # 0 / 0, as the official code


def test_box_ioa_hand_cases():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [-1.0, -1.0, 4.0, 4.0]])
    ioa = box_ioa(a, b)
    torch.testing.assert_close(ioa[0], torch.tensor([0.25, 1.0]))
    assert ioa[1].isnan().all()  # a zero-area box: 0 / 0
    assert box_ioa(a[:0], b).shape == (0, 2)


@pytest.mark.parametrize("fmt_in,fmt_out", [("xyxy", "cxcywh"), ("cxcywh", "xyxy"), ("xyxy", "xyxy")])
def test_box_convert_matches_torchvision(fmt_in, fmt_out):
    boxes = ordered_boxes(50, 2)
    torch.testing.assert_close(
        box_convert(boxes, fmt_in, fmt_out), torchvision.ops.box_convert(boxes, fmt_in, fmt_out), rtol=1e-6, atol=1e-7
    )
    assert torch.equal(box_convert(boxes, "cxcywh", "xyxy"), point_form(boxes))
    with pytest.raises(ValueError, match="box formats"):
        box_convert(boxes, "xywh", "xyxy")


def test_crop_bounds_orders_pads_and_clamps():
    lo, hi = torch.tensor([0.5, 0.9, -0.2, 0.3]), torch.tensor([0.7, 0.1, 1.5, 0.3])
    x1, x2 = crop_bounds(lo, hi, 10, 1)
    assert torch.equal(x1, torch.tensor([4.0, 0.0, 0.0, 2.0]))
    assert torch.equal(x2, torch.tensor([8.0, 10.0, 10.0, 4.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_boxes_to_pixels_is_crop_bounds_per_axis(dtype):
    """Both axes in one pass equal crop_bounds on each axis (no padding) for boxes in any
    order, inside and outside the image, non-finite ones, and image sides float16/bfloat16
    cannot represent (scaled in float32 and rounded once, as a product by an int is)."""
    g = torch.Generator().manual_seed(5)
    for trial in range(60):
        n = int(torch.randint(0, 40, (1,), generator=g))
        boxes = (torch.rand(n, 4, generator=g) * 1.6 - 0.3).to(dtype)
        if n > 3:
            boxes[0, 0], boxes[1, 2], boxes[2, 1], boxes[3, 3] = float("nan"), float("inf"), -float("inf"), -0.0
        h, w = (int(v) for v in torch.randint(1, 5000, (2,), generator=g))
        x1, x2 = crop_bounds(boxes[:, 0], boxes[:, 2], w, 0)
        y1, y2 = crop_bounds(boxes[:, 1], boxes[:, 3], h, 0)
        got = boxes_to_pixels(boxes, (h, w))
        assert got.dtype == dtype
        torch.testing.assert_close(got, torch.stack([x1, y1, x2, y2], 1), rtol=0, atol=0, equal_nan=True)


def test_boxes_to_pixels_hand_case_and_empty():
    boxes = torch.tensor([[0.25, 0.5, 0.75, 1.5], [0.6, 0.4, 0.2, -0.1]])
    want = torch.tensor([[50.0, 50.0, 150.0, 100.0], [40.0, 0.0, 120.0, 40.0]])
    torch.testing.assert_close(boxes_to_pixels(boxes, (100, 200)), want)  # 0.6 * 200 rounds in float32
    assert boxes_to_pixels(boxes[:0], (100, 200)).shape == (0, 4)
