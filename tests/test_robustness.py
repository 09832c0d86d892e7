"""Defined behaviour for NaN/Inf network outputs, re-entrancy from several threads, bitwise
determinism across runs and processes, and image inputs of any size, bit depth and mode."""

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import yolact_fast as yf
from yolact_fast import configs, ops
from inputs import random_boxes, random_coeffs, random_proto, random_scores

TINY = configs.yolact_base.replace(
    name="tiny_test",
    backbone=configs.BackboneConfig("resnet", (1, 1, 1, 1), (1, 2, 3), (256, 512, 1024, 2048)),
    max_size=96,
    class_names=("a", "b", "c"),
)


def post_network(golden, loc=None, conf_logits=None, coeffs=None, proto=None):
    """The golden raw outputs (optionally replaced) -> (detections, masks) via the kernels."""
    loc = golden["loc"] if loc is None else loc
    conf_logits = golden["conf_logits"] if conf_logits is None else conf_logits
    coeffs = golden["mask_coeffs"] if coeffs is None else coeffs
    proto = golden["proto"] if proto is None else proto
    boxes = ops.decode_boxes(loc, golden["priors"])
    scores = torch.softmax(conf_logits, -1).t()[1:]
    det = ops.fast_nms(boxes, scores, coeffs, max_detections=1000)
    return det, ops.paste_masks(proto, det[1], det[0], golden["image"].shape[:2])


def test_nan_and_inf_box_offsets_are_never_selected(golden):
    loc = golden["loc"].clone()
    bad = torch.arange(0, loc.shape[0], 7)
    loc[bad[::2], 0] = float("nan")
    loc[bad[1::2], 3] = float("inf")  # exp -> inf width
    (boxes, _, _, scores), masks = post_network(golden, loc=loc)
    assert len(boxes) > 0 and torch.isfinite(boxes).all() and torch.isfinite(scores).all()
    decoded = ops.decode_boxes(loc, golden["priors"])
    chosen = torch.isin(boxes.view(-1, 1, 4), decoded[bad].view(1, -1, 4)).all(-1).any(-1)
    assert not chosen.any()


def test_nan_class_scores_are_never_selected(golden):
    conf = golden["conf_logits"].clone()
    conf[::3, 5] = float("nan")
    (boxes, _, _, scores), _ = post_network(golden, conf_logits=conf)
    decoded = ops.decode_boxes(golden["loc"], golden["priors"])
    assert len(boxes) > 0 and torch.isfinite(scores).all()
    chosen = torch.isin(boxes.view(-1, 1, 4), decoded[::3].view(1, -1, 4)).all(-1).any(-1)
    assert not chosen.any()


def test_nan_coefficients_give_empty_masks(golden):
    coeffs = golden["mask_coeffs"].clone()
    coeffs[:, 0] = float("nan")
    (boxes, det_coeffs, _, _), masks = post_network(golden, coeffs=coeffs)
    assert len(boxes) > 0 and torch.isnan(det_coeffs[:, 0]).all()
    assert not masks.any()


def test_non_finite_prototypes_stay_local(golden):
    """NaN prototypes make their pixels False; Inf ones saturate the sigmoid; masks away
    from the damaged region (beyond the bilinear taps) are those of the clean run."""
    proto = golden["proto"].clone()
    proto[10:20, 10:20] = float("inf")
    proto[50:60, 50:60] = float("nan")
    (_, coeffs, _, _), masks = post_network(golden, proto=proto)
    _, clean = post_network(golden)
    h, w = golden["image"].shape[:2]
    rows = torch.arange(h, dtype=torch.float64)[:, None] * 138 / h
    cols = torch.arange(w, dtype=torch.float64)[None, :] * 138 / w
    near = lambda lo, hi: (rows > lo - 2) & (rows < hi + 1) & (cols > lo - 2) & (cols < hi + 1)
    damaged = near(10, 20) | near(50, 60)
    assert torch.equal(masks[:, ~damaged], clean[:, ~damaged])
    inside_nan = (rows > 51) & (rows < 58) & (cols > 51) & (cols < 58)
    assert not masks[:, inside_nan].any()


def run_ops_case(seed):
    g = torch.Generator().manual_seed(seed)
    boxes, scores, coeffs = random_boxes(3000, g), random_scores(20, 3000, g), random_coeffs(3000, 32, g)
    det = ops.fast_nms(boxes, scores, coeffs)
    masks = ops.paste_masks(random_proto(138, 138, 32, g), det[1], det[0], (240, 320))
    return det + (masks,)


def test_ops_are_reentrant():
    serial = [run_ops_case(seed) for seed in range(8)]
    results = [None] * 8

    def work(i):
        for _ in range(2):
            results[i] = run_ops_case(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def tiny_model_and_images():
    torch.manual_seed(0)
    model = yf.Yolact(TINY).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 70 + 9 * i, 90 - 5 * i), dtype=torch.uint8, generator=g) for i in range(4)]
    return model, images


def same_instances(a, b):
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("boxes", "scores", "labels", "masks"))


def test_segment_from_four_threads_matches_serial():
    model, images = tiny_model_and_images()
    serial = [yf.segment(image, model=model, score_threshold=0.0) for image in images]
    results = [None] * len(images)

    def work(i):
        results[i] = yf.segment(images[i], model=model, score_threshold=0.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(r) > 0 for r in serial)
    assert all(same_instances(r, s) for r, s in zip(results, serial))


def digest(instances):
    h = hashlib.sha256()
    for inst in instances:
        for f in ("boxes", "scores", "labels", "masks"):
            h.update(getattr(inst, f).numpy().tobytes())
    return h.hexdigest()


DIGEST_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(2)
from test_robustness import tiny_model_and_images, digest
import yolact_fast as yf
model, images = tiny_model_and_images()
print(digest([yf.segment(image, model=model, score_threshold=0.0) for image in images]))
"""


def test_bitwise_deterministic_across_runs_and_processes():
    torch.set_num_threads(2)
    model, images = tiny_model_and_images()
    first = digest([yf.segment(image, model=model, score_threshold=0.0) for image in images])
    second = digest([yf.segment(image, model=model, score_threshold=0.0) for image in images])
    assert first == second
    script = DIGEST_SCRIPT.format(tests=str(Path(__file__).resolve().parent))
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == first


# --- image files and images in memory: sizes, bit depths and modes ---------------------------


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    from PIL import Image

    from inputs import png_claiming_size

    for width, height, message in ((20000, 20000, "exceeds limit"), (9000, 9000, "MAX_IMAGE_PIXELS")):
        path = png_claiming_size(tmp_path / f"{width}.png", width, height)
        with pytest.raises(ValueError, match=f"image .*{width}.png' is too large.*{message}"):
            yf.io.read_image(path)
        with pytest.raises(ValueError, match="too large"):
            yf.segment(str(path), model=yf.load("demo"))
    assert Image.MAX_IMAGE_PIXELS == 89478485  # PIL's global setting is left alone
    with Image.open(png_claiming_size(tmp_path / "lazy.png", 9000, 9000)) as lazy:
        with pytest.raises(ValueError, match="PIL image is too large"):
            yf.io.as_image_tensor(lazy)


def test_sixteen_bit_and_float_images_are_scaled_to_eight_bits(tmp_path):
    from PIL import Image

    values = np.array([[0, 128, 257, 32896, 65535, 1000]], np.uint16)
    expected = torch.tensor([[0, 0, 1, 128, 255, 4]], dtype=torch.uint8).expand(3, 1, 6)
    Image.fromarray(values).save(tmp_path / "16.png")
    big_endian = Image.frombytes("I;16B", (6, 1), values.astype(">u2").tobytes())
    for image in (
        Image.fromarray(values),
        Image.fromarray(values.astype(np.int32)),
        big_endian,
        str(tmp_path / "16.png"),
    ):
        assert torch.equal(yf.io.as_image_tensor(image), expected)
    rgb16 = np.repeat(values[..., None], 3, axis=2)
    assert torch.equal(yf.io.as_image_tensor(rgb16), expected)
    floats = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    scaled = yf.io.as_image_tensor(Image.fromarray(floats))
    assert scaled.dtype == torch.uint8 and scaled[0].tolist() == [[0, 64, 128, 255]]
    as_float = yf.io.as_image_tensor(np.repeat(floats[..., None], 3, axis=2).astype(np.float64))
    assert as_float.dtype == torch.float32 and as_float[0].tolist() == floats.tolist()


@pytest.mark.parametrize(
    "image,error,message",
    [
        (lambda Image: Image.fromarray(np.array([[0.0, 2.0]], np.float32)), ValueError, "mode 'F' images must hold"),
        (lambda Image: Image.fromarray(np.array([[0.0, np.nan]], np.float32)), ValueError, "mode 'F' images must hold"),
        (lambda Image: Image.fromarray(np.array([[-1, 70000]], np.int32)), ValueError, "0..65535"),
        (lambda Image: Image.new("RGB", (0, 10)), ValueError, "empty: 0x10 pixels"),
        (lambda Image: Image.new("L", (10, 0)), ValueError, "empty"),
        (lambda Image: np.full((4, 4, 3), 2.0), ValueError, r"\[0,1\]"),
        (lambda Image: np.zeros((4, 4, 3), np.int32), TypeError, "uint8, uint16 or float"),
        (lambda Image: np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
    ],
)
def test_images_that_cannot_be_scaled_are_refused(image, error, message):
    from PIL import Image

    with pytest.raises(error, match=message):
        yf.io.as_image_tensor(image(Image))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr"])
def test_every_other_pil_mode_is_converted_to_rgb(mode):
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 7, 3), np.uint8)).convert(mode)
    expected = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(yf.io.as_image_tensor(image), expected)


IMAGE = torch.randint(1, 256, (3, 8, 12), dtype=torch.uint8)  # no zeros: as many values per batch (CSR)
WITHOUT_VALUES = {
    "sparse_coo": lambda t: t.to_sparse(),
    "sparse_csr": lambda t: t.to_sparse_csr(),
    "sparse_csc": lambda t: t.to_sparse_csc(),
    "sparse_bsr": lambda t: t.to_sparse_bsr((2, 2)),
    "sparse_bsc": lambda t: t.to_sparse_bsc((2, 2)),
    "meta": lambda t: t.to("meta"),
    "nested": lambda t: torch.nested.nested_tensor(list(t) if t.ndim == 4 else [t], layout=torch.jagged),
}


@pytest.fixture(scope="module")
def demo_model():
    return yf.load("demo")


@pytest.mark.parametrize("kind", sorted(WITHOUT_VALUES))
@pytest.mark.parametrize("form", ["image", "float image", "batch", "list"])
def test_images_without_dense_values_are_refused_by_name(kind, form, demo_model):
    """Sparse, nested and meta tensors reached ATen's kernels (NotImplementedError) before."""
    image = IMAGE.float() / 255 if form == "float image" else IMAGE
    convert = WITHOUT_VALUES[kind]
    if form == "batch":
        images = convert(torch.stack([image, image]))
    elif form == "list":
        images = [image, convert(image)]
    else:
        images = convert(image)
    with pytest.raises(ValueError, match=r"^images must be dense \(strided\) tensors on the CPU or a CUDA device"):
        yf.segment(images, model=demo_model)


HOSTILE_ALLOCATIONS = """
import resource, sys, torch
import yolact_fast as yf
from yolact_fast import configs, ops
torch.set_num_threads(1)
# Room for 2 GiB more than the process holds: an op that tried to allocate what its
# arguments ask for would get a MemoryError/RuntimeError here, not a clear ValueError.
status = open("/proc/self/status").read()
held = int(status.split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (held + (2 << 30), resource.RLIM_INFINITY))
one = torch.zeros(())  # expanded views of one float: huge shapes, no memory
proto, coeffs, boxes = torch.rand(138, 138, 4), torch.rand(3, 4), torch.rand(3, 4)
lots = one.expand(10**6, 4)
wide = dict(boxes=one.expand(10**5, 4), scores=one.expand(10**4, 10**5), coeffs=one.expand(10**5, 1000))
head = dict(loc=one.expand(10**5, 4), conf_logits=one.expand(10**5, 10**4 + 1),
            coeffs=one.expand(10**5, 1000), priors=one.expand(10**5, 4))
meta = lambda d: {{k: v.to("meta") for k, v in d.items()}}
raw = torch.ops.yolact_fast
cases = {{
    "paste 2^63": lambda: ops.paste_masks(proto, coeffs, boxes, (2**63, 1)),
    "paste 2^20 x 2^20": lambda: ops.paste_masks(proto, coeffs, boxes, (2**20, 2**20)),
    "paste 1 x 2^33": lambda: ops.paste_masks(proto, coeffs[:1], boxes[:1], (1, 2**33)),
    "paste meta 2^20 x 2^20": lambda: raw.paste_masks(proto.to("meta"), coeffs.to("meta"), boxes.to("meta"),
                                                      [2**20, 2**20], 0.5, 1.0),
    "assemble 10^6 boxes": lambda: ops.assemble_masks(proto, lots, lots),
    "assemble meta 10^6 boxes": lambda: raw.assemble_masks(proto.to("meta"), lots.to("meta"), lots.to("meta"), 1.0),
    "nms 2^63 - 1": lambda: ops.fast_nms(**wide, top_k=2**63 - 1, max_detections=2**63 - 1),
    "nms 2^64": lambda: ops.fast_nms(**wide, top_k=2**64),
    "nms meta 2^63 - 1": lambda: raw.fast_nms(*meta(wide).values(), 0.5, 2**63 - 1, 0.05, 2**63 - 1, "fast"),
    "detect 2^63 - 1": lambda: ops.detect(**head, top_k=2**63 - 1, max_detections=2**63 - 1),
    "detect meta 2^63 - 1": lambda: raw.detect(*meta(head).values(), 0.1, 0.2, 0.5, 2**63 - 1, 0.05,
                                               2**63 - 1, "fast"),
    "nms expanded scores": lambda: ops.fast_nms(wide["boxes"], one.expand(10**5, 10**5), wide["coeffs"]),
    "decode expanded loc": lambda: ops.decode_boxes(one.expand(10**6, 10**5, 4), head["priors"]),
    "decode meta expanded loc": lambda: raw.decode_boxes(one.expand(10**6, 10**5, 4).to("meta"),
                                                         head["priors"].to("meta"), 0.1, 0.2),
    "priors 2^62": lambda: ops.make_priors(configs.yolact_base, (2**62, 2**62)),
    "priors 2^31": lambda: ops.make_priors(configs.yolact_base, (2**31, 2**31)),
    "priors raw 2^62": lambda: raw.make_priors(torch.ones(1, 2, dtype=torch.float64), [2**62, 2**62], [1]),
    "priors meta 2^31": lambda: raw.make_priors(torch.ones(1, 2, dtype=torch.float64, device="meta"),
                                                [2**31, 2**31], [1]),
}}
for label, call in cases.items():
    try:
        call()
        print(label, "|", "no error")
    except Exception as error:
        print(label, "|", type(error).__name__, "|", str(error).split()[0].split("[")[0].rstrip(":"))
"""

HOSTILE_EXPECTED = {
    "paste 2^63": "size",
    "paste 2^20 x 2^20": "size",
    "paste 1 x 2^33": "size",
    "paste meta 2^20 x 2^20": "size",
    "assemble 10^6 boxes": "boxes",
    "assemble meta 10^6 boxes": "boxes",
    "nms 2^63 - 1": "max_detections",
    "nms 2^64": "top_k",
    "nms meta 2^63 - 1": "max_detections",
    "detect 2^63 - 1": "max_detections",
    "detect meta 2^63 - 1": "max_detections",
    "nms expanded scores": "scores",
    "decode expanded loc": "loc",
    "decode meta expanded loc": "loc",
    "priors 2^62": "image_size",
    "priors 2^31": "image_size",
    "priors raw 2^62": "feature_sizes",
    "priors meta 2^31": "feature_sizes",
}


def test_absurd_sizes_are_refused_before_allocating():
    """Sizes that would need terabytes (or overflow int64) raise a ValueError naming the
    argument, in a process whose address space is capped 2 GiB above what it holds."""
    run = subprocess.run(
        [sys.executable, "-c", HOSTILE_ALLOCATIONS.format()], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = dict(line.split(" | ", 1) for line in run.stdout.splitlines())
    assert results.keys() == HOSTILE_EXPECTED.keys()
    for label, name in HOSTILE_EXPECTED.items():
        assert results[label] == f"ValueError | {name}", label


# Every atomic write under a file-size limit (a stand-in for a full disk): OSError naming the
# path, the previous file unchanged, no temporary left. And a link planted at the output is
# replaced, never followed.
SIZE_LIMITED_WRITES = """
import json, os, resource, signal, sys, torch
from yolact_fast.jobs import save_png
from yolact_fast.files import atomic_output
def raw(path):
    with atomic_output(path) as file:
        file.write(os.urandom(3 << 20))
def results(path):
    with atomic_output(path, "w") as file:
        json.dump(list(range(10 ** 6)), file)
writers = {{"raw.bin": raw, "results.json": results,
           "overlay.png": lambda path: save_png(torch.randint(0, 256, (3, 800, 800), dtype=torch.uint8), path)}}
try:
    from yolact_fast import export
    import onnx
    writers["model.onnx"] = lambda path: export.onnx("demo", path, image_size=(64, 64))
except ImportError:
    pass
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
for name, write in writers.items():
    path = os.path.join(sys.argv[1], name)
    try:
        write(path)
    except OSError as error:
        print(name, "|", error)
    else:
        print(name, "| written")
"""


def test_failed_writes_name_the_path_and_keep_the_previous_file(tmp_path):
    names = ["raw.bin", "overlay.png", "results.json"] + (["model.onnx"] if _has("onnx") else [])
    for name in names:
        (tmp_path / name).write_bytes(b"previous good file")
    run = subprocess.run(
        [sys.executable, "-c", SIZE_LIMITED_WRITES.format(), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    lines = dict(line.split(" | ", 1) for line in run.stdout.splitlines())
    assert sorted(lines) == sorted(names)
    for name in names:
        assert f"cannot write {str(tmp_path / name)!r}" in lines[name] and "File too large" in lines[name]
        assert (tmp_path / name).read_bytes() == b"previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary left


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not _has("onnx"), reason="onnx is an optional dependency")
def test_export_replaces_a_planted_link_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    path = tmp_path / "model.onnx"
    path.symlink_to(victim)
    from yolact_fast import export

    export.onnx("demo", str(path), image_size=(64, 64))
    assert victim.read_text() == "keep me" and not path.is_symlink() and path.stat().st_size > 1 << 20


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"image_id": 1.7}, "image_id must be an integer, got 1.7"),
        ({"image_id": float("nan")}, "image_id must be an integer, got nan"),
        ({"image_id": "3"}, "image_id must be an integer"),
        ({"image_id": True}, "image_id must be an integer"),
        ({"image_id": 1, "category_ids": [1.5] * 5}, r"category_ids\[0\] must be an integer, got 1.5"),
        ({"image_id": 1, "category_ids": [1, 2, "a", 4, 5]}, r"category_ids\[2\] must be an integer, got 'a'"),
        ({"image_id": 1, "category_ids": [1, 2, 3, 4, None]}, r"category_ids\[4\] must be an integer"),
    ],
)
def test_to_coco_ids_must_be_integers(arguments, message):
    instances = yf.segment(torch.zeros(3, 32, 32, dtype=torch.uint8), model="demo")
    with pytest.raises(TypeError, match=message):
        instances.to_coco(**arguments)
    for image_id in (3, np.int64(3), torch.tensor(3)):
        assert instances.to_coco(image_id, category_ids=np.arange(1, 6)) == []


def test_a_pil_mode_that_cannot_become_rgb_names_the_image():
    from PIL import Image

    from yolact_fast.io import pil_to_tensor

    with pytest.raises(ValueError, match="image 'x.png': cannot convert PIL mode 'La' to RGB"):
        pil_to_tensor(Image.new("La", (8, 8)), "image 'x.png'")


def test_a_folder_as_checkpoint_says_it_is_a_folder(tmp_path):
    for load in (yf.load, lambda path: yf.segment(torch.zeros(3, 32, 32, dtype=torch.uint8), model=path)):
        with pytest.raises(IsADirectoryError, match="is a directory, not a checkpoint file"):
            load(str(tmp_path))
