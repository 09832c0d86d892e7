#!/usr/bin/env bash
# Refreshes tests/data/golden, the golden files the tests use, from the folder the official
# implementation's outputs were written to ($GOLDEN_SOURCE, by default a "golden" folder in the
# checkout's sibling "shared"); tests/test_golden_data.py checks the two are equal.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${GOLDEN_SOURCE:-../shared/golden}
mkdir -p tests/data/golden
cp "$src"/golden_*.npz "$src"/input_550_*.npz "$src"/priors_*.npz "$src"/keys_*.json \
   "$src"/weights_fingerprint.json "$src"/configs.json tests/data/golden/
