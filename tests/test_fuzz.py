"""A few hundred fuzz cases per op in every run (tests/fuzz_ops.py runs 10,000+)."""

import pytest

import fuzz_ops


@pytest.mark.parametrize("op", sorted(fuzz_ops.FUZZERS))
def test_fuzz(op):
    fuzz_ops.run(op, cases=300, seed=1)


def test_fuzz_detects_a_wrong_kernel(monkeypatch):
    """The harness can fail: a paste kernel that drops the last row is caught."""
    real = fuzz_ops.ops.paste_masks

    def broken(*args, **kwargs):
        masks = real(*args, **kwargs).clone()
        masks[:, -1] = ~masks[:, -1]
        return masks

    monkeypatch.setattr(fuzz_ops.ops, "paste_masks", broken)
    with pytest.raises(AssertionError, match="paste_masks"):
        fuzz_ops.run("paste_masks", cases=50, seed=1)
