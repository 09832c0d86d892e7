"""Files that are not YOLACT checkpoints, and checkpoints whose shapes lie: a clear error
naming the file (and the key), never torch's advice to disable ``weights_only``, and no
allocation sized by a lying shape."""

import io
import json
import os
import pickle
import re
import resource
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch

import yolact_fast as yf
from yolact_fast.model import infer_config
from yolact_fast.model.checkpoint import DEMO_PATH


@pytest.fixture(scope="module")
def demo_state_dict():
    return torch.load(DEMO_PATH, map_location="cpu", weights_only=True)["state_dict"]


def _write(path, kind):
    if kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "json":
        path.write_text(json.dumps({"state_dict": {"a": [1, 2]}}))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a checkpoint")
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps({"x": 1}, protocol=4))
    elif kind == "pickled objects":
        path.write_bytes(pickle.dumps({"x": object()}, protocol=2))
    return path


@pytest.mark.parametrize(
    "kind,what",
    [
        ("random bytes", "neither a zip archive nor a pickle"),
        ("empty", "the file is empty"),
        ("json", "neither a zip archive nor a pickle"),
        ("zip", "a zip archive, but not one written by torch.save"),
        ("plain pickle", "a Python pickle holding objects other than tensors"),
        ("pickled objects", "a Python pickle holding objects other than tensors"),
    ],
)
def test_garbage_file_says_what_it_is_not(tmp_path, kind, what):
    path = _write(tmp_path / "weights.pth", kind)
    with pytest.raises(RuntimeError) as error:
        yf.load(path)
    message = str(error.value)
    assert str(path) in message and "not a torch checkpoint" in message and what in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_garbage_open_file_is_read_from_its_start(tmp_path):
    path = _write(tmp_path / "weights.pth", "zip")
    with open(path, "rb") as file:
        with pytest.raises(RuntimeError, match="a zip archive, but not one written by torch.save"):
            yf.load(file)


@pytest.mark.parametrize(
    "content,match",
    [
        (
            {"a": 1, "b": "text"},
            r"'.*weights.pth' does not hold a state dict.*0 of them tensors: not a YOLACT state dict",
        ),
        ([torch.zeros(1)], "does not hold a state dict.*list: not a YOLACT state dict"),
    ],
)
def test_torch_file_without_a_state_dict(tmp_path, content, match):
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    with pytest.raises(RuntimeError, match=match):
        yf.load(path)


def test_tensors_that_are_not_yolact_keys(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match=r"'.*weights.pth' is not a YOLACT state dict: missing keys backbone"):
        yf.load(path)


LYING = {
    "a head claiming 10^9 classes": ("prediction_layers.0.conf_layer.weight", (2 * 10**9, 128, 3, 3)),
    "a 2^26-channel mask layer": ("prediction_layers.0.mask_layer.weight", (2 * 2**26, 128, 3, 3)),
    "a huge backbone conv": ("backbone.conv1.weight", (2**40, 3, 7, 7)),
}


def _lying_file(tmp_path, demo_state_dict, key, shape):
    state_dict = dict(demo_state_dict)
    state_dict[key] = torch.zeros((1,) * len(shape)).expand(shape)  # stores one float
    path = tmp_path / "lying.pth"
    torch.save(state_dict, path)
    assert os.path.getsize(path) < 2 * os.path.getsize(DEMO_PATH)
    return path


@pytest.mark.parametrize("case", sorted(LYING))
def test_lying_shapes_are_refused_before_building(tmp_path, demo_state_dict, case):
    key, shape = LYING[case]
    path = _lying_file(tmp_path, demo_state_dict, key, shape)
    for config in (None, "yolact_demo"):
        with pytest.raises(ValueError, match=rf"'.*lying.pth': {key} claims shape .* but the file stores 4 bytes"):
            yf.load(path, config=config)


def test_meta_tensors_are_refused(tmp_path, demo_state_dict):
    state_dict = dict(demo_state_dict)
    state_dict["proto_net.0.weight"] = torch.empty(state_dict["proto_net.0.weight"].shape, device="meta")
    path = tmp_path / "meta.pth"
    torch.save(state_dict, path)
    with pytest.raises(ValueError, match="proto_net.0.weight is a torch.strided tensor on meta"):
        yf.load(path)


def test_head_sizes_are_bounded_when_inferring_the_config(demo_state_dict):
    state_dict = dict(demo_state_dict)
    state_dict["prediction_layers.0.conf_layer.weight"] = torch.zeros(1, 1, 1, 1).expand(2 * 10**9, 128, 3, 3)
    with pytest.raises(ValueError, match=r"conf_layer.weight claims 1000000000 classes"):
        infer_config(state_dict, "lying.pth")
    state_dict = dict(demo_state_dict)
    state_dict["prediction_layers.0.mask_layer.weight"] = torch.zeros(1, 1, 1, 1).expand(2 * 2**26, 128, 3, 3)
    with pytest.raises(ValueError, match=r"mask_layer.weight claims 67108864 mask prototypes"):
        infer_config(state_dict, "lying.pth")


def test_mismatched_shapes_are_checked_on_the_meta_device(tmp_path, demo_state_dict, monkeypatch):
    """A checkpoint that does not fit its config fails before a real model is built."""
    from yolact_fast.model import checkpoint

    built = []
    real = checkpoint.Yolact
    monkeypatch.setattr(checkpoint, "Yolact", lambda config: built.append(torch.get_default_device()) or real(config))
    state_dict = dict(demo_state_dict)
    state_dict["semantic_seg_conv.bias"] = torch.zeros(7)
    with pytest.raises(RuntimeError, match="semantic_seg_conv.bias: checkpoint \\(7,\\) vs model \\(5,\\)"):
        yf.load(state_dict)
    assert [device.type for device in built] == ["meta"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_lying_checkpoint_allocates_nothing_large(tmp_path, demo_state_dict):
    """Under an address-space limit of 1 GiB above what the process maps after import, the
    lying file raises the ValueError (a model built from its shapes would hit MemoryError)."""
    key, shape = LYING["a head claiming 10^9 classes"]
    path = _lying_file(tmp_path, demo_state_dict, key, shape)
    script = textwrap.dedent(f"""
        import resource, sys
        import yolact_fast as yf
        vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
        try:
            yf.load({str(path)!r})
        except ValueError as error:
            print("ValueError", error)
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(os.path.dirname(yf.__file__)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ValueError") and key in done.stdout
    assert resource.RLIMIT_AS  # the limit exists on this platform


def test_garbage_streams_without_a_name():
    class Unseekable(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            return 0

    for stream, reason in (
        (io.BytesIO(b"garbage"), "neither a zip archive nor a pickle"),
        (Unseekable(), "not seekable"),
    ):
        with pytest.raises(RuntimeError, match=f"from an unnamed file: not a torch checkpoint .*{reason}"):
            yf.load(stream)


def _demo_keys(demo_state_dict):
    """A conv weight, a bias, a BatchNorm running statistic and a prediction-head weight."""
    conv = next(k for k, v in demo_state_dict.items() if k.endswith("weight") and v.ndim == 4)
    bias = next(k for k in demo_state_dict if k.endswith(".bias"))
    running = next(k for k in demo_state_dict if k.endswith("running_var"))
    return conv, bias, running, "prediction_layers.0.conf_layer.weight"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", range(4))
def test_non_finite_weights_are_refused_naming_file_and_key(tmp_path, demo_state_dict, value, which):
    key = _demo_keys(demo_state_dict)[which]
    state_dict = dict(demo_state_dict, **{key: demo_state_dict[key].clone()})
    state_dict[key].view(-1)[-1] = value  # one element, the last one
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": state_dict}, path)
    for source, named in ((str(path), "bad.pt"), (state_dict, "the state dict")):
        with pytest.raises(ValueError, match=f"{named}.*{re.escape(key)} holds NaN or infinite"):
            yf.load(source)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int32, torch.int64, torch.uint8, torch.complex64])
@pytest.mark.parametrize("which", range(4))
def test_weights_that_are_not_floats_are_refused(demo_state_dict, dtype, which):
    key = _demo_keys(demo_state_dict)[which]
    state_dict = dict(demo_state_dict, **{key: demo_state_dict[key].to(dtype)})
    with pytest.raises(ValueError, match=f"{re.escape(key)} is a {dtype}"):
        yf.load(state_dict)


def test_float_widths_and_integer_counters_load(demo_state_dict):
    counter = next(k for k in demo_state_dict if k.endswith("num_batches_tracked"))
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in demo_state_dict.items()}
    assert demo_state_dict[counter].dtype == torch.int64 and yf.load(half) is not None
    assert yf.load(dict(demo_state_dict, **{counter: demo_state_dict[counter].int()})) is not None
    with pytest.raises(ValueError, match=f"{re.escape(counter)} is a torch.float32"):
        yf.load(dict(demo_state_dict, **{counter: demo_state_dict[counter].float()}))
