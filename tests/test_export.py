"""yf.export: ONNX graphs run by onnxruntime against yf.segment and the reference ops,
torch.export and AOTInductor programs, the optional-dependency contract and the CLI."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import yolact_fast as yf
from yolact_fast import export, reference
from yolact_fast.cli import main as cli_main
from yolact_fast.configs import proto_size
from yolact_fast.data import synthetic_shapes
from yolact_fast.engine import get_engine
from yolact_fast.preprocess import preprocess
from yolact_fast.segment import SegmentOptions, postprocess

from comparisons import match_detections
from golden_data import golden_masks, golden_rgb, load_golden

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

STRICT = dict(score_tol=1e-4, box_tol=1.0, min_iou=0.99)  # parity with segment: score, box (px), mask IoU


def assert_same_detections(actual, expected):
    stats = match_detections(actual, expected, **STRICT)
    assert len(actual) == len(expected), stats
    assert stats["matched_fraction"] == 1.0, stats


@pytest.fixture(scope="module")
def demo():
    return yf.load("demo")


def shapes_image(seed, height, width):
    return synthetic_shapes(1, seed, (height, width))[0][0]


@pytest.fixture(scope="module", params=["fast", "cluster"])
def demo_onnx(request, demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / f"demo_{request.param}.onnx"
    export.onnx(demo, path, nms=request.param)
    return request.param, path


# --- the whole segment path in ONNX -------------------------------------------------------


def test_demo_onnx_matches_segment_at_any_image_size(demo, demo_onnx):
    nms, path = demo_onnx
    segmenter = export.OnnxSegmenter(path, threads=1)
    found = 0
    for seed, (height, width) in enumerate([(256, 256), (200, 300), (333, 161)]):
        image = shapes_image(seed, height, width)
        actual = segmenter(image)
        expected = yf.segment(image, model=demo, nms=nms)
        assert actual.masks.shape == (len(expected), height, width)
        assert actual.masks.dtype == torch.bool and actual.labels.dtype == torch.int64
        assert_same_detections(actual, expected)
        found += len(expected)
    assert found > 20  # the images hold real detections
    assert segmenter([image, image])[1].masks.shape[1:] == (333, 161)


def test_unit_normalization_config(demo, tmp_path):
    """DarkNet-style preprocessing (x / 255) on the demo weights."""
    model = yf.Yolact(demo.config.replace(normalize="unit"))
    model.load_state_dict(demo.state_dict())
    image = shapes_image(9, 140, 190)
    expected = yf.segment(image, model=model)
    assert len(expected) > 0
    path = export.onnx(model, tmp_path / "unit.onnx")
    assert_same_detections(export.OnnxSegmenter(path, threads=1)(image), expected)


def test_onnx_graph_is_standard_and_checked(demo_onnx):
    _, path = demo_onnx
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == list(export.SEGMENT_OUTPUTS)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["yolact_fast.config"] == "yolact_demo" and "circle" in metadata["yolact_fast.class_names"]


@pytest.mark.parametrize(
    "options",
    [
        dict(score_threshold=0.9, max_detections=3, top_k=5),
        dict(score_threshold=1.0),  # no candidate at all
        dict(iou_threshold=0.0),
        dict(iou_threshold=1.0, opset=20),
        dict(opset=18, nms="cluster", max_detections=7),
    ],
)
def test_demo_onnx_options(demo, tmp_path, options):
    options = dict(options)
    opset = options.pop("opset", export.DEFAULT_OPSET)
    path = export.onnx(demo, tmp_path / "demo.onnx", opset=opset, **options)
    image = shapes_image(7, 180, 240)
    actual = export.OnnxSegmenter(path, threads=1)(image)
    expected = yf.segment(image, model=demo, **options)
    assert_same_detections(actual, expected)
    if options.get("score_threshold") == 1.0:
        assert len(actual) == 0 and actual.masks.shape == (0, 180, 240)


def test_fixed_image_size_and_batched_input(demo, tmp_path):
    path = export.onnx(demo, tmp_path / "fixed.onnx", image_size=(120, 160), batched_input=True)
    image = shapes_image(3, 120, 160)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 120, 160]
    boxes, scores, labels, masks = session.run(None, {"image": image[None].numpy()})
    assert masks.shape == (len(scores), 120, 160)
    assert_same_detections(export.OnnxSegmenter(path)(image), yf.segment(image, model=demo))
    with pytest.raises(ValueError, match=r"\[1, 3, 120, 160\]"):
        export.OnnxSegmenter(path)(image[:, :100])
    with pytest.raises(Exception, match="invalid dimensions for input: image"):
        session.run(None, {"image": image[None, :, :100].numpy()})


def test_onnxruntime_segmenter_in_memory(demo):
    segmenter = export.onnxruntime_segmenter(demo, threads=1, nms="cluster", max_detections=10)
    image = shapes_image(8, 150, 170)
    assert_same_detections(segmenter(image), yf.segment(image, model=demo, nms="cluster", max_detections=10))


# --- the post-network graph against the reference ops, on arbitrary raw outputs ------------

TINY_CONFIGS = {
    "demo64": yf.configs.yolact_demo.replace(max_size=64),  # 172 priors, 6 classes
    "coco64": yf.configs.yolact_base.replace(max_size=64),  # 258 priors, 81 classes
}


def raw_outputs(config, seed, kind):
    """Random raw outputs of one image. ``kind``: "plain"; "ties" (few distinct class rows
    and integer offsets: exactly equal scores and duplicate boxes); "degenerate" (zero-size,
    infinite and NaN boxes, NaN and infinite logits)."""
    g = torch.Generator().manual_seed(seed)
    priors = reference.make_priors(config, (config.max_size,) * 2).shape[0]
    loc = torch.randn(priors, 4, generator=g) * 0.5
    conf = torch.randn(priors, config.num_classes, generator=g) * 3
    if kind == "ties":
        conf = conf[torch.randint(5, (priors,), generator=g)]
        loc = loc.round()
    elif kind == "degenerate":
        loc[::7, 2:] = -1000.0  # exp underflows: zero-size boxes, IoU 0/0
        loc[::11, 0] = float("inf")
        loc[::13, 1] = float("nan")
        conf[::17, 2] = float("nan")  # a NaN score row: never a candidate
        conf[::19, 3] = float("inf")
    coeffs = torch.randn(priors, config.mask_dim, generator=g)
    proto = torch.rand(*proto_size((config.max_size,) * 2), config.mask_dim, generator=g)
    return loc, conf, coeffs, proto


@pytest.mark.parametrize("config_name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize(
    "nms,kind", [("fast", "plain"), ("fast", "ties"), ("fast", "degenerate"), ("cluster", "plain"), ("cluster", "ties")]
)
@pytest.mark.parametrize("options", [dict(top_k=40), dict(top_k=9, max_detections=7, iou_threshold=0.3)])
def test_postprocess_graph_equals_reference(config_name, nms, kind, options, one_thread):
    config = TINY_CONFIGS[config_name]
    options = dict(dict(score_threshold=0.05, iou_threshold=0.5, top_k=200, max_detections=100), **options)
    session = ort.InferenceSession(
        export.postprocess_graph(config, nms=nms, **options).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    priors = reference.make_priors(config, (config.max_size,) * 2)
    image_size = (37, 53)
    for seed in range(2):
        loc, conf, coeffs, proto = raw_outputs(config, seed, kind)
        expected = postprocess(
            yf.model.YolactOutput(loc, conf, coeffs, proto),
            priors,
            image_size,
            SegmentOptions(nms=nms, **options),
            reference,
            config,
        )
        feeds = dict(zip(export.RAW_OUTPUTS, (t[None].numpy() for t in (loc, conf, coeffs, proto))))
        boxes, scores, labels, masks = session.run(None, dict(feeds, image_hw=np.array(image_size)))
        assert len(expected) > 0
        if kind == "ties":
            # Exactly tied scores (the same class rows) rank by prior index, as a stable sort.
            np.testing.assert_array_equal(labels, expected.labels.numpy())
            np.testing.assert_array_equal(boxes, expected.boxes.numpy())
            np.testing.assert_allclose(scores, expected.scores.numpy(), rtol=1e-5, atol=1e-7)
            assert (masks != expected.masks.numpy()).sum() <= 2  # bilinear ties at 0.5 only
        else:
            # onnxruntime's and ATen's softmax may differ in the last bits (per CPU ISA), which
            # may swap two nearly equal scores: match detections instead of positions.
            actual = yf.Instances(*(torch.from_numpy(a) for a in (boxes, scores, labels, masks)), config.class_names)
            stats = match_detections(actual, expected, score_tol=1e-5, box_tol=0, min_iou=0.999)
            assert len(actual) == len(expected) and stats["matched_fraction"] == 1.0, stats


# --- yolact_base with rule weights, against yf.segment and the official golden output ----


def test_yolact_base_onnx_matches_segment_and_golden(rule_model, tmp_path):
    golden = load_golden("golden_yolact_base_s0_480x640.npz")
    model = rule_model("yolact_base", golden["meta"]["weight_seed"])
    image = golden_rgb(golden)
    actual = export.OnnxSegmenter(export.onnx(model, tmp_path / "base.onnx"))(image)
    assert_same_detections(actual, yf.segment(image, model=model))
    official = {
        "boxes": golden["boxes"],
        "scores": golden["scores"],
        "labels": golden["classes"],
        "masks": golden_masks(golden),
    }
    stats = match_detections(actual, official)
    assert len(actual) == 100 and stats["matched_fraction"] >= 0.99, stats


# --- the network alone --------------------------------------------------------------------


def test_network_only_onnx(demo, tmp_path):
    path = export.onnx(demo, tmp_path / "net.onnx", postprocess=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(export.NETWORK_OUTPUTS)
    images = [shapes_image(1, 256, 256), shapes_image(2, 100, 300)]
    batch = preprocess(images, demo.config, "cpu")
    loc, conf, mask, proto, priors = session.run(None, {"images": batch.numpy()})
    with torch.inference_mode():
        expected = demo(batch)
    torch.testing.assert_close(torch.from_numpy(loc), expected.loc, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(conf), expected.conf_logits.softmax(-1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(mask), expected.mask_coeffs, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(proto), expected.proto, rtol=1e-4, atol=1e-4)
    assert torch.equal(torch.from_numpy(priors), yf.ops.make_priors(demo.config, (256, 256)))
    with pytest.raises(ValueError, match="not a postprocess=True"):
        export.OnnxSegmenter(path)


# --- bad input and the optional dependencies ------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(opset=13), ValueError, "opset must be one of"),
        (dict(nms="greedy"), ValueError, "'fast' or 'cluster'"),
        (dict(top_k=-1), ValueError, "top_k"),
        (dict(image_size=(0, 10)), ValueError, "image_size must be positive"),
        (dict(image_size=(10, 10), postprocess=False), ValueError, "image_size applies"),
        (dict(image_size=10), TypeError, "size must be a pair"),
    ],
)
def test_onnx_bad_arguments(demo, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        export.onnx(demo, tmp_path / "x.onnx", **kwargs)


def test_onnx_segmenter_needs_uint8(demo_onnx):
    with pytest.raises(TypeError, match="uint8"):
        export.OnnxSegmenter(demo_onnx[1])(torch.rand(3, 20, 20))


def test_missing_extra_raises_import_error_naming_it(demo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(ImportError, match=r"yolact_fast\[export\]"):
        export.onnx(demo, tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"'onnxruntime'.*yolact_fast\[export\]"):
        export.OnnxSegmenter(tmp_path / "x.onnx")


def test_import_yolact_fast_does_not_import_onnx():
    code = "import sys, yolact_fast; assert not {'onnx', 'onnxruntime'} & set(sys.modules), 'onnx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- torch.export and AOTInductor -----------------------------------------------------------


def test_torch_export_of_segment_and_network(demo):
    image = shapes_image(4, 120, 160)
    program = export.torch_export(demo, (120, 160), max_detections=50)
    boxes, scores, labels, masks, count = program.module()(image)
    n = int(count)
    assert boxes.shape == (50, 4) and masks.shape == (50, 120, 160) and n > 0
    actual = yf.Instances(boxes[:n], scores[:n], labels[:n], masks[:n], demo.config.class_names)
    assert_same_detections(actual, yf.segment(image, model=demo, max_detections=50))
    targets = {node.target for node in program.graph.nodes if node.op == "call_function"}
    assert torch.ops.yolact_fast.detect.default in targets  # the fused detect, as yf.segment runs

    network = export.torch_export(demo, (120, 160), postprocess=False)
    batch = preprocess([image], demo.config, "cpu")
    with torch.inference_mode():
        fused = get_engine(demo).module
        expected = fused(batch.contiguous(memory_format=fused.input_memory_format))
    for got, want in zip(network.module()(batch), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="apply to postprocess=True"):
        export.torch_export(demo, (120, 160), postprocess=False, top_k=5)


def test_aoti_package_loads_and_runs(demo, tmp_path):
    """The slowest test here: AOTInductor compiles C++ (93 s in the full suite on 2 busy cores)."""
    image = shapes_image(5, 96, 128)
    path = export.aoti_package(demo, tmp_path / "demo.pt2", (96, 128))
    segmenter = export.load_aoti(path, demo.config.class_names)
    actual = segmenter(image)
    assert len(actual) > 0
    assert_same_detections(actual, yf.segment(image, model=demo))


# --- command line ---------------------------------------------------------------------------


def test_cli_export(demo, tmp_path, capsys):
    out = tmp_path / "demo.onnx"
    assert (
        cli_main(
            [
                "export",
                "--weights",
                "demo",
                "--out",
                str(out),
                "--image-size",
                "90",
                "120",
                "--nms",
                "cluster",
                "--max-detections",
                "20",
            ]
        )
        == 0
    )
    assert "yolact_demo" in capsys.readouterr().out
    image = shapes_image(6, 90, 120)
    assert_same_detections(
        export.OnnxSegmenter(out)(image), yf.segment(image, model=demo, nms="cluster", max_detections=20)
    )
    assert cli_main(["export", "--weights", "demo", "--format", "aoti", "--out", str(tmp_path / "x.pt2")]) == 1
    assert "needs --image-size" in capsys.readouterr().err


def test_yolact_plus_postprocess_export_is_refused_clearly(tmp_path):
    """The re-scoring of YOLACT++ is not in the exported graph: say so, never export
    detections scored without it."""
    config = yf.configs.yolact_plus_resnet50
    with torch.device("meta"):
        model = yf.Yolact(config)
    with pytest.raises(NotImplementedError, match="maskiou_net"):
        yf.export.onnx(model, tmp_path / "plus.onnx")
    with pytest.raises(NotImplementedError, match="maskiou_net"):
        yf.export.segment_program(model)
