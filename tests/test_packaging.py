"""Packaging: the extension refuses a torch other than the one it was built against, and
pyproject.toml builds against the installed torch (torch is no build requirement)."""

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import yolact_fast
from yolact_fast import _build_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "built,built_cuda,running,running_cuda",
    [
        ("2.14.1+cu130", "13.0", "2.14.1+cu130", "13.0"),
        ("2.14.1+cu130", None, "2.14.1+cpu", None),  # CPU-only build: any variant of its release
        ("2.14.1+cpu", None, "2.14.1+cu130", "13.0"),
        ("2.14.1", None, "2.14.1", None),
    ],
)
def test_same_release_loads(built, built_cuda, running, running_cuda):
    _build_check.check_torch(built, built_cuda, running, running_cuda)


@pytest.mark.parametrize(
    "built,built_cuda,running,running_cuda",
    [
        ("2.14.1+cu130", "13.0", "2.14.0+cu130", "13.0"),  # another patch release
        ("2.14.1", None, "2.15.0", None),
        ("2.14.0.dev20260101", None, "2.14.0", None),
        ("2.14.1+cu130", "13.0", "2.14.1+cpu", None),  # CUDA kernels without CUDA
        ("2.14.1+cu130", "13.0", "2.14.1+cu128", "12.8"),
    ],
)
def test_another_torch_is_refused_naming_both(built, built_cuda, running, running_cuda):
    pattern = rf"built against torch {re.escape(built)}\b.*but torch {re.escape(running)}\b.*--no-build-isolation"
    with pytest.raises(ImportError, match=pattern):
        _build_check.check_torch(built, built_cuda, running, running_cuda)


def test_import_checks_the_recorded_torch(monkeypatch):
    record = types.SimpleNamespace(TORCH_VERSION="2.0.0+cpu", CUDA_VERSION=None)
    monkeypatch.setitem(sys.modules, "yolact_fast._build_info", record)
    monkeypatch.setattr(yolact_fast, "_build_info", record, raising=False)
    with pytest.raises(
        ImportError, match=rf"built against torch 2\.0\.0\+cpu, but torch {re.escape(torch.__version__)} "
    ):
        _build_check.check_extension_torch()
    monkeypatch.setattr(record, "TORCH_VERSION", torch.__version__)
    _build_check.check_extension_torch()


def test_the_check_runs_before_the_extension_loads():
    """Under another torch, loading the extension itself may fail (an undefined symbol): the
    versions must be compared first."""
    code = (
        "import sys, types\n"
        "sys.modules['yolact_fast._build_info'] = types.SimpleNamespace(TORCH_VERSION='1.0.0', CUDA_VERSION=None)\n"
        "try:\n"
        "    import yolact_fast\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "print('yolact_fast._C' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    message, loaded = result.stdout.strip().splitlines()
    assert message.startswith("yolact_fast's extension was built against torch 1.0.0, but torch ")
    assert loaded == "False"


def test_the_build_recorded_this_torch():
    """setup.py's build_ext writes yolact_fast/_build_info.py (CI builds with it)."""
    try:
        from yolact_fast import _build_info
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("extension built without a record of its torch (by an older setup.py)")
    assert _build_info.TORCH_VERSION == torch.__version__
    assert _build_info.CUDA_VERSION == (torch.version.cuda if yolact_fast.ops.cuda_kernels_available() else None)


def test_pyproject_builds_against_the_installed_torch():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert not any(requirement.startswith("torch") for requirement in project["build-system"]["requires"])
    assert "torch" in project["project"]["dependencies"]  # unpinned: the user's torch stays
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "yolact_fast.__version__"}
    assert project["project"]["scripts"] == {"yolact-fast": "yolact_fast.cli:main"}
