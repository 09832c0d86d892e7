"""yf.segment end to end against the golden cases, input forms, batches and bad input."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import yolact_fast as yf
from yolact_fast.data.synthetic import golden_image
from yolact_fast.engine import get_engine
from yolact_fast.preprocess import preprocess
from yolact_fast.segment import SegmentOptions

from golden_data import golden_path
from comparisons import match_detections
from golden_data import golden_case_model, golden_masks, golden_rgb


def golden_expected(golden):
    return {
        "boxes": golden["boxes"],
        "scores": golden["scores"],
        "labels": golden["classes"],
        "masks": golden_masks(golden),
    }


@pytest.fixture(scope="module")
def golden_results(golden, rule_model):
    model = golden_case_model(golden, rule_model)
    image = golden_rgb(golden)
    return model, image, yf.segment(image, model=model)


def test_golden_parity_fast_path(golden, golden_results):
    _, image, inst = golden_results
    stats = match_detections(inst, golden_expected(golden))
    print(f"\n{golden['meta']['config']}: {stats}")
    assert len(inst) == len(golden["classes"]) == 100
    assert stats["matched_fraction"] >= 0.99, stats
    assert stats["label_agreement"] >= 0.99, stats
    assert stats["max_box_diff"] <= 1 and stats["min_mask_iou"] >= 0.99
    assert inst.masks.shape == (100, *image.shape[1:]) and inst.masks.dtype == torch.bool
    assert inst.boxes.dtype == torch.float32 and inst.scores.dtype == torch.float32
    assert inst.labels.dtype == torch.int64
    assert bool((inst.scores[:-1] >= inst.scores[1:]).all())
    assert torch.equal(inst.boxes, inst.boxes.trunc())


def test_golden_eager_path_is_exact(golden, rule_model):
    model = golden_case_model(golden, rule_model)
    inst = yf.segment_eager(golden_rgb(golden), model=model)
    assert torch.equal(inst.labels, golden["classes"])
    torch.testing.assert_close(inst.scores, golden["scores"], rtol=0, atol=1e-5)
    assert torch.equal(inst.boxes.long(), golden["boxes"])
    assert torch.equal(inst.masks, golden_masks(golden))


def fast_base_transform(bgr: np.ndarray) -> torch.Tensor:
    """The official FastBaseTransform (yolact/utils/augmentations.py) of an HxWx3 BGR image,
    as its evaluation calls it: float, [1,H,W,3] -> [1,3,550,550] RGB, normalized."""
    image = torch.from_numpy(bgr).float()[None].permute(0, 3, 1, 2).contiguous()
    image = F.interpolate(image, (550, 550), mode="bilinear", align_corners=False)
    mean = torch.tensor(yf.configs.IMAGENET_MEAN_BGR).float()[None, :, None, None]
    std = torch.tensor(yf.configs.IMAGENET_STD_BGR).float()[None, :, None, None]
    return ((image - mean) / std)[:, (2, 1, 0), :, :].contiguous()


def test_preprocess_equals_fast_base_transform():
    """Bit for bit against the official transform run here. The golden file's tensor equals it
    bit for bit under the AVX2/AVX512 ATen CPU kernels; the scalar kernels
    (ATEN_CPU_CAPABILITY=default) interpolate with other rounding: at most 1.9e-5 apart
    (0.001 of an 8-bit level; AMD EPYC, torch 2.14.1, 2026-12-08)."""
    data = np.load(golden_path("input_550_resnet_480x640.npz"))
    bgr = data["image"]
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    official = fast_base_transform(bgr)
    torch.testing.assert_close(official, torch.from_numpy(data["input_tensor"]), rtol=0, atol=1e-4)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    for form in (chw, chw.contiguous(), rgb, Image.fromarray(rgb)):
        image = yf.io.as_image_tensor(form)
        assert torch.equal(preprocess([image], yf.configs.yolact_base, "cpu"), official)
    as_float = preprocess([chw.float() / 255], yf.configs.yolact_base, "cpu")
    torch.testing.assert_close(as_float, official, rtol=0, atol=1e-5)


def test_darknet_preprocess_divides_by_255():
    image = torch.full((3, 4, 4), 51, dtype=torch.uint8)
    out = preprocess([image], yf.configs.yolact_darknet53, "cpu")
    assert out.shape == (1, 3, 550, 550)
    torch.testing.assert_close(out, torch.full_like(out, 0.2))


def test_file_path_input(tmp_path, golden, golden_results):
    model, image, inst = golden_results
    path = tmp_path / "image.png"
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    from_file = yf.segment(str(path), model=model)
    assert torch.equal(from_file.labels, inst.labels) and torch.equal(from_file.masks, inst.masks)


def test_batch_runs_network_once_and_matches_single(golden_results):
    model, image, inst = golden_results
    small = image[:, 50:250, 100:400]
    calls = []
    network = get_engine(model).module
    handle = network.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        results = yf.segment([image, small], model=model)
        stacked = yf.segment(torch.stack([image, image]), model=model)
    finally:
        handle.remove()
    assert calls == [2, 2]
    assert isinstance(results, list) and len(results) == 2 and len(stacked) == 2
    assert results[1].masks.shape[1:] == small.shape[1:]
    for batched in (results[0], stacked[0], stacked[1]):
        assert match_detections(batched, inst)["matched_fraction"] >= 0.99
    single_small = yf.segment(small, model=model)
    assert match_detections(results[1], single_small)["matched_fraction"] >= 0.99


def test_options_change_the_result(golden_results):
    model, image, inst = golden_results
    strict = yf.segment(image, model=model, score_threshold=0.3, max_detections=10)
    assert len(strict) == 10 and torch.equal(strict.labels, inst.labels[:10])
    none = yf.segment(image, model=model, score_threshold=1.0)
    assert len(none) == 0 and none.masks.shape == (0, *image.shape[1:])
    assert none.to_coco(1) == [] and torch.equal(yf.draw(image, none), image)


def test_cluster_nms(golden_results):
    model, image, _ = golden_results
    inst = yf.segment(image, model=model, nms="cluster", max_detections=30)
    assert 0 < len(inst) <= 30
    assert bool((inst.scores[:-1] >= inst.scores[1:]).all())
    # Cluster-NMS equals greedy NMS (the eager path runs reference.cluster_nms, a greedy loop).
    greedy = yf.segment_eager(image, model=model, nms="cluster", max_detections=30)
    assert match_detections(inst, greedy)["matched_fraction"] >= 0.99


def test_weights_changed_after_first_call_are_used(rule_model):
    model = yf.load(rule_model("yolact_resnet50", 1).state_dict(), config="yolact_resnet50")
    image = golden_image(3, 120, 160)
    before = yf.segment(image, model=model)
    with torch.no_grad():
        model.prediction_layers[0].conf_layer.bias[1::81] += 5.0  # favour class 0 ("person")
    after = yf.segment(image, model=model)
    assert (after.labels == 0).float().mean() > (before.labels == 0).float().mean()
    eager = yf.segment_eager(image, model=model)
    assert match_detections(after, eager)["matched_fraction"] >= 0.99


def test_instances_api(golden_results):
    _, image, inst = golden_results
    assert len(inst) == 100 and inst.image_size == tuple(image.shape[1:])
    assert inst.class_names[0] == "person" and len(inst.label_names) == 100
    top = inst[:5]
    assert len(top) == 5 and torch.equal(top.scores, inst.scores[:5])
    assert len(inst[0]) == 1 and len(inst[-1]) == 1 and len(inst[inst.scores > 0.3]) >= 1
    moved = inst.to("cpu")
    assert torch.equal(moved.masks, inst.masks) and "Instances(num=100" in repr(inst)


def test_to_coco(golden_results):
    from pycocotools import mask as mask_utils

    _, _, inst = golden_results
    results = inst.to_coco(image_id=7)
    assert len(results) == len(inst)
    first = results[0]
    assert first["image_id"] == 7 and isinstance(first["segmentation"]["counts"], str)
    decoded = mask_utils.decode(first["segmentation"])
    assert np.array_equal(decoded.astype(bool), inst.masks[0].numpy())
    x1, y1, x2, y2 = inst.boxes[0].tolist()
    assert first["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert first["score"] == pytest.approx(inst.scores[0].item())
    label = inst.labels[0].item()
    assert first["category_id"] == yf.instances.COCO_CATEGORY_IDS[label]
    assert yf.instances.COCO_CATEGORY_IDS[0] == 1 and yf.instances.COCO_CATEGORY_IDS[79] == 90


def test_draw(golden_results):
    _, image, inst = golden_results
    canvas = yf.draw(image, inst[:5])
    assert canvas.dtype == torch.uint8 and canvas.shape == image.shape
    changed = (canvas != image).any(0)
    assert changed[inst.masks[0]].float().mean() > 0.9  # the best mask is painted
    far = torch.ones_like(changed)  # pixels outside every drawn mask and box (+ label margin)
    for x1, y1, x2, y2 in inst[:5].boxes.long().tolist():
        far[max(y1 - 20, 0) : y2 + 3, max(x1 - 3, 0) : x2 + 100] = False  # text may overhang
    far &= ~inst[:5].masks.any(0)
    assert not changed[far].any()
    assert torch.equal(yf.draw(image.float() / 255, inst[:0]), image)
    with pytest.raises(ValueError, match="does not match"):
        yf.draw(image[:, :10], inst)


# --- bad input ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def any_model(rule_model):
    return rule_model("yolact_resnet50", 1)


@pytest.mark.parametrize(
    "image,error,match",
    [
        (torch.zeros(3, 10, dtype=torch.uint8), ValueError, r"\[3,H,W\]"),
        (torch.zeros(1, 2, 3, 10, 10, dtype=torch.uint8), ValueError, r"\[3,H,W\]"),
        (torch.zeros(4, 10, 10, dtype=torch.uint8), ValueError, "3 \\(RGB\\) channels"),
        (torch.zeros(10, 10, 3, dtype=torch.uint8), ValueError, "channels first"),
        (torch.zeros(3, 10, 10, dtype=torch.int64), TypeError, "uint8 or float"),
        (torch.zeros(3, 10, 10, dtype=torch.bool), TypeError, "uint8 or float"),
        (torch.zeros(3, 0, 10, dtype=torch.uint8), ValueError, "empty image"),
        (torch.full((3, 10, 10), float("nan")), ValueError, "NaN"),
        (
            torch.full((3, 10, 10), 0.5).index_put_(
                (torch.tensor(1), torch.tensor(4), torch.tensor(7)), torch.tensor(float("nan"))
            ),
            ValueError,
            "NaN",
        ),
        (
            torch.full((3, 10, 10), 0.5).index_put_(
                (torch.tensor(2), torch.tensor(9), torch.tensor(0)), torch.tensor(float("inf"))
            ),
            ValueError,
            "infinite",
        ),
        (
            torch.full((3, 10, 10), 0.5).index_put_(
                (torch.tensor(0), torch.tensor(0), torch.tensor(3)), torch.tensor(-float("inf"))
            ),
            ValueError,
            "infinite",
        ),
        (torch.full((3, 10, 10), 2.0), ValueError, r"\[0,1\]"),
        (torch.full((3, 10, 10), -0.5), ValueError, r"\[0,1\]"),
        (np.zeros((10, 10, 3), np.int32), TypeError, "uint8, uint16 or float"),
        (np.full((10, 10, 3), 1.5, np.float32), ValueError, r"\[0,1\]"),
        (np.zeros((10, 10), np.uint8), ValueError, "HxWx3"),
        (np.zeros((10, 10, 4), np.uint8), ValueError, "HxWx3"),
        ([], ValueError, "empty list"),
        (torch.zeros(0, 3, 10, 10, dtype=torch.uint8), ValueError, "empty batch"),
        (12, TypeError, "image must be"),
        ("no/such/image.png", FileNotFoundError, "no/such/image.png"),
    ],
)
def test_bad_images(any_model, image, error, match):
    with pytest.raises(error, match=match):
        yf.segment(image, model=any_model)


def test_unreadable_file(any_model, tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="cannot read image.*broken.jpg"):
        yf.segment(str(path), model=any_model)


@pytest.mark.parametrize(
    "options,error,match",
    [
        ({"score_threshold": None}, TypeError, "score_threshold"),
        ({"score_threshold": float("nan")}, ValueError, "score_threshold"),
        ({"iou_threshold": -0.5}, ValueError, "iou_threshold"),
        ({"iou_threshold": None}, TypeError, "iou_threshold"),
        ({"top_k": -1}, ValueError, "top_k"),
        ({"top_k": True}, TypeError, "top_k"),
        ({"max_detections": 2.5}, TypeError, "max_detections must be an int"),
        ({"max_detections": None}, TypeError, "max_detections"),
        ({"nms": "greedy"}, ValueError, "'fast' or 'cluster'"),
    ],
)
def test_bad_options(any_model, options, error, match):
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    with pytest.raises(error, match=match):
        yf.segment(image, model=any_model, **options)


@pytest.mark.parametrize("segment_fn", [yf.segment, yf.segment_eager])
def test_edge_options_are_legal(segment_fn):
    """The ops' rules: top_k / max_detections 0 give no detections, any iou_threshold >= 0
    and any score_threshold are accepted."""
    model, image = yf.load("demo"), torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)
    for options in (dict(top_k=0), dict(max_detections=0)):
        result = segment_fn(image, model, **options)
        assert len(result) == 0 and result.masks.shape == (0, 64, 80)
    assert len(segment_fn(image, model, score_threshold=-1.0, iou_threshold=2.0, max_detections=5)) == 5


def test_options_are_checked_once_in_a_frozen_dataclass():
    options = SegmentOptions(top_k=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.top_k = -1
    with pytest.raises(ValueError, match="top_k"):
        SegmentOptions(top_k=-1)


def test_bad_model_argument():
    with pytest.raises(TypeError, match="model must be"):
        yf.segment(torch.zeros(3, 8, 8, dtype=torch.uint8), model=42)


def test_default_model_is_the_demo_model(monkeypatch):
    monkeypatch.delenv("YOLACT_FAST_WEIGHTS", raising=False)
    image, target = yf.data.synthetic_shapes(1, seed=4321)[0]
    inst = yf.segment(image)
    assert inst.class_names == yf.configs.SHAPE_CLASSES and inst.masks.shape[1:] == image.shape[1:]
    assert len(inst) > 0 and (inst.labels == target["labels"][:, None]).any(0).any()


def test_default_model_from_environment(monkeypatch, tmp_path, any_model):
    path = tmp_path / "yolact_resnet50_54_800000.pth"
    torch.save(any_model.state_dict(), path)
    monkeypatch.setenv("YOLACT_FAST_WEIGHTS", str(path))
    image = golden_image(2, 64, 96)
    inst = yf.segment(image)
    expected = yf.segment(image, model=any_model)
    assert torch.equal(inst.labels, expected.labels) and torch.equal(inst.masks, expected.masks)
    monkeypatch.setenv("YOLACT_FAST_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        yf.segment(image)


def test_segment_leaves_the_fused_copy_in_eval_mode_without_walking_it(any_model, monkeypatch):
    """The fused copy is made in eval mode and never trained: segment does not walk its
    modules twice per call to set and restore a mode; the user's model, run in training
    mode, gives what it gives in eval mode and is left in training mode."""
    from yolact_fast.engine import get_engine

    image = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    want = yf.segment(image, model=any_model, score_threshold=0.0)
    fused = get_engine(any_model).module

    def refuse(*args, **kwargs):
        raise AssertionError("segment set the fused copy's mode")

    monkeypatch.setattr(fused, "train", refuse)
    monkeypatch.setattr(fused, "eval", refuse)
    assert torch.equal(yf.segment(image, model=any_model, score_threshold=0.0).scores, want.scores)
    monkeypatch.undo()
    any_model.train()
    try:
        eager = yf.segment_eager(image, model=any_model, score_threshold=0.0)
        assert any_model.training and all(m.training for m in any_model.modules())
    finally:
        any_model.eval()
    assert torch.equal(eager.labels, want.labels)


def test_a_batch_reads_its_detection_counts_back_once(any_model):
    """On a GPU each read of a detection count is a synchronization: a batch reads all its
    images' counts at once (one .tolist(); no more item() reads for 3 images than one image
    makes), and gets what the images get one by one."""
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator().manual_seed(4)
    images = [torch.randint(0, 256, (3, 50 + 10 * i, 70), dtype=torch.uint8, generator=g) for i in range(3)]
    yf.segment(images, model=any_model)  # builds the fused copy

    def reads(batch):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            results = yf.segment(batch, model=any_model, score_threshold=0.0)
        return sum(e.name in ("aten::item", "aten::_local_scalar_dense") for e in prof.events()), results

    one, _ = reads(images[:1])
    three, batch = reads(images)
    assert one > 0 and three <= one
    for image, got in zip(images, batch):
        alone = yf.segment(image, model=any_model, score_threshold=0.0)
        assert len(got) == len(alone) > 0
        assert torch.equal(got.scores, alone.scores) and torch.equal(got.masks, alone.masks)
