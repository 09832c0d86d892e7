#!/usr/bin/env bash
# Refreshes tests/data/golden, the golden files the tests use, from their source folder
# ../shared/golden beside the checkout; tests/test_golden_data.py checks the two are equal.
set -euo pipefail
cd "$(dirname "$0")/.."
src=../shared/golden
mkdir -p tests/data/golden
cp "$src"/golden_*.npz "$src"/input_550_*.npz "$src"/priors_*.npz "$src"/keys_*.json \
   "$src"/weights_fingerprint.json "$src"/configs.json tests/data/golden/
