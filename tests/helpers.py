"""Fixtures shared by several test files and the benchmarks: the golden synthetic image,
the ground truth of a COCO dataset as detections, and hostile image files."""

import struct
import zlib

import numpy as np
import torch
from PIL import Image


def png_claiming_size(path, width, height):
    """A small valid PNG whose header claims ``width`` x ``height`` pixels (a decompression
    bomb as far as any reader that trusts the header is concerned)."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(open(path, "rb").read())
    ihdr = bytearray(data[12:29])  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    open(path, "wb").write(bytes(data))
    return path
