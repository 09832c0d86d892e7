"""preprocess.resize: large images are resized in bands, equal to resizing the whole image
converted to float up to an ulp or two (bit-identical for most sizes), without that copy."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import yolact_fast as yf
from yolact_fast import configs
from yolact_fast.preprocess import preprocess, resize


def _whole_image(image, size):
    as_255 = image.float() if image.dtype == torch.uint8 else image.float() * 255
    return F.interpolate(as_255[None], size, mode="bilinear", align_corners=False)


def _image(generator, height, width, kind):
    if kind == "uint8 chw":
        return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    if kind == "uint8 hwc view":  # what numpy images become
        return torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator).permute(2, 0, 1)
    if kind == "float64":
        return torch.rand((3, height, width), dtype=torch.float64, generator=generator)
    return torch.rand((3, height, width), generator=generator)


@pytest.mark.parametrize("kind", ["uint8 chw", "uint8 hwc view", "float32", "float64"])
def test_banded_resize_equals_the_whole_image_resize(kind):
    generator = torch.Generator().manual_seed(len(kind))
    for case in range(12):
        height, width = (int(v) for v in torch.randint(1, 600, (2,), generator=generator))
        size = [(550, 550), (256, 256), (700, 700), (37, 91)][case % 4]
        image = _image(generator, height, width, kind)
        band_bytes = int(torch.randint(1, 12 * width * 5, (), generator=generator))  # 1 to ~5 rows
        got, want = resize(image, size, 0, band_bytes), _whole_image(image, size)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4, msg=f"{(height, width, size)}")


def test_small_images_take_the_whole_image_path():
    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    assert torch.equal(resize(image, (37, 37)), _whole_image(image, (37, 37)))
    assert preprocess([image], yf.configs.yolact_demo, "cpu").shape == (1, 3, 256, 256)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux")
def test_large_image_needs_no_float_copy():
    """6000x6000 uint8 (108 MB; 432 MB as float32): the peak grows by far less than the
    float copy (band 32 MB + float [3,6000,256] 18 MB + output). Max RSS also counts the
    allocator's and OpenMP's own growth (86-182 MiB measured on a shared 2-core machine), so
    the bound sits between that and the 432 MB a whole-image float copy adds."""
    script = textwrap.dedent("""
        import resource, torch
        from yolact_fast.configs import yolact_demo
        from yolact_fast.preprocess import preprocess
        image = torch.full((3, 6000, 6000), 7, dtype=torch.uint8)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        batch = preprocess([image], yolact_demo, "cpu")
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        cwd=os.path.dirname(os.path.dirname(yf.__file__)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 300 * 2**20


def test_unknown_normalize_mode_is_refused_by_the_config():
    with pytest.raises(ValueError, match=r"normalize must be one of \('imagenet', 'unit'\), got 'bgr'"):
        configs.yolact_demo.replace(normalize="bgr")


def test_normalization_constants_are_made_once_per_device():
    """On a GPU each torch.tensor(..., device=...) is a blocking host-to-device copy: the
    mean and std are made on the first call for a device only (and are usable with autograd
    though the first call ran in inference mode)."""
    from torch.profiler import ProfilerActivity, profile

    from yolact_fast.configs import yolact_base
    from yolact_fast.preprocess import preprocess

    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    with torch.inference_mode():
        first = preprocess([image], yolact_base, "cpu")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        again = preprocess([image], yolact_base, "cpu")
    assert torch.equal(first, again)
    assert not [e.name for e in prof.events() if e.name in ("aten::lift_fresh", "aten::lift_fresh_copy")]
    grad_image = (image.float() / 255).requires_grad_()
    preprocess([grad_image], yolact_base, "cpu").sum().backward()
    assert grad_image.grad is not None
