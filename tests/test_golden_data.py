"""The vendored golden files (tests/data/golden) hold the cases the tests use and, where their
source folder is present beside the checkout, equal it byte for byte."""

import hashlib

import pytest

from golden_data import SHARED_DIR, VENDORED_DIR, golden_cases, golden_path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_vendored_copy_has_the_cases_and_files_the_tests_use():
    names = {p.name for p in VENDORED_DIR.iterdir()}
    assert {
        "golden_yolact_base_s0_480x640.npz",
        "golden_yolact_resnet50_s1_427x320.npz",
        "input_550_resnet_480x640.npz",
        "weights_fingerprint.json",
    } <= names
    assert set(golden_cases()) >= {n for n in names if n.startswith("golden_")}


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason=f"no golden source folder at {SHARED_DIR}")
def test_vendored_files_equal_the_shared_source():
    for vendored in sorted(p for p in VENDORED_DIR.iterdir() if p.is_file()):  # plus/: a subset
        shared = SHARED_DIR / vendored.name
        assert shared.is_file(), f"{vendored.name} is vendored but not in {SHARED_DIR}"
        assert digest(vendored) == digest(shared), f"{vendored.name} differs from {shared}"


def test_missing_golden_file_names_the_folders():
    with pytest.raises(FileNotFoundError, match="no_such_file"):
        golden_path("no_such_file.npz")
