"""Inputs shared by the tests and benchmarks: the float dtypes swept, a seeded generator,
random realistic, degenerate and hostile boxes, prototypes, coefficients and scores from a seed; synthetic videos; hostile image files; the ground truth of a
COCO dataset as detections."""

import math
import struct
import zlib

import torch

DTYPES = [torch.float32, torch.float64]
REDUCED_DTYPES = [torch.float16, torch.bfloat16]


def gen(seed):
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def random_boxes(n, generator, dtype=torch.float32, hostile=True):
    """[n, 4] relative x1, y1, x2, y2: mostly ordinary boxes of log-uniform size; with
    ``hostile`` also zero-area, inverted, tiny, full-image and out-of-[0, 1] boxes."""
    size = torch.exp(torch.empty(n, 2, dtype=torch.float64).uniform_(-4, 0, generator=generator))
    center = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    boxes = torch.cat([center - size / 2, center + size / 2], dim=1)
    if hostile and n:
        kind = torch.randint(0, 8, (n,), generator=generator)
        boxes[kind == 1, 2:] = boxes[kind == 1, :2]  # zero area
        boxes[kind == 2] = boxes[kind == 2][:, [2, 3, 0, 1]]  # inverted
        boxes[kind == 3] = boxes[kind == 3] * 3 - 1  # far outside the image
        boxes[kind == 4] = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
        boxes[kind == 5, 2:] = boxes[kind == 5, :2] + 1e-4  # tiny
    return boxes.to(dtype)


def random_proto(h, w, k, generator, dtype=torch.float32):
    """[h, w, k] non-negative prototypes (ReLU output) with realistic scale."""
    return torch.relu(torch.randn(h, w, k, generator=generator, dtype=torch.float64) * 1.5).to(dtype)


def random_coeffs(n, k, generator, dtype=torch.float32):
    return torch.tanh(torch.randn(n, k, generator=generator, dtype=torch.float64) * 1.5).to(dtype)


def coco_like_detections(n, generator, proto_size=138, k=32):
    """Prototypes [S, S, k], coefficients [n, k] and relative boxes [n, 4] whose sides are
    log-uniform in [5%, 90%] of the image, all inside it: a COCO-like mask workload."""
    sides = torch.exp(torch.empty(n, 2).uniform_(math.log(0.05), math.log(0.9), generator=generator))
    corner = torch.rand(n, 2, generator=generator) * (1 - sides)
    boxes = torch.cat([corner, corner + sides], 1)
    return random_proto(proto_size, proto_size, k, generator), random_coeffs(n, k, generator), boxes


def random_scores(num_classes, num_priors, generator, dtype=torch.float32, concentration=4.0):
    """[C, P] foreground probabilities: softmax over C + 1 logits, background dropped."""
    logits = torch.randn(num_priors, num_classes + 1, generator=generator, dtype=torch.float64)
    probs = torch.softmax(logits * concentration, dim=1)
    return probs[:, 1:].t().contiguous().to(dtype)


def misaligned_copy(tensor):
    """A contiguous copy of ``tensor`` whose storage starts one element past an allocation,
    so that its data pointer is not 16-byte aligned (the kernels' vector paths must not run)."""
    storage = torch.empty(tensor.numel() + 1, dtype=tensor.dtype)
    return storage[1:].view(tensor.shape).copy_(tensor)


def clustered_boxes(num_priors, generator, dtype=torch.float32):
    """Boxes jittered around a few centres, so that many pairs overlap (NMS has work)."""
    centres = torch.rand(max(num_priors // 20, 1), 4, dtype=torch.float64, generator=generator)
    centres = torch.cat([centres[:, :2] * 0.7, centres[:, :2] * 0.7 + 0.1 + centres[:, 2:] * 0.2], 1)
    pick = torch.randint(0, centres.shape[0], (num_priors,), generator=generator)
    jitter = torch.randn(num_priors, 4, dtype=torch.float64, generator=generator) * 0.02
    return (centres[pick] + jitter).to(dtype)


def random_head(num_priors, num_classes, k, generator, dtype=torch.float32, concentration=4.0, clustered=False):
    """One image's raw head outputs: loc [P, 4], conf_logits [P, C + 1], coeffs [P, k] and
    priors [P, 4] (cx, cy, w, h)."""
    if clustered:  # priors near a few centres, so that NMS has work
        boxes = clustered_boxes(num_priors, generator, torch.float64)
        priors = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]).abs()], 1)
    else:
        priors = torch.rand(num_priors, 4, dtype=torch.float64, generator=generator) * 0.5 + 0.1
    loc = torch.randn(num_priors, 4, dtype=torch.float64, generator=generator) * 0.5
    logits = torch.randn(num_priors, num_classes + 1, dtype=torch.float64, generator=generator) * concentration
    coeffs = random_coeffs(num_priors, k, generator, torch.float64)
    return tuple(t.to(dtype) for t in (loc, logits, coeffs, priors))


def png_claiming_size(path, width, height):
    """A small valid PNG whose header claims ``width`` x ``height`` pixels (a decompression
    bomb as far as any reader that trusts the header is concerned)."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(open(path, "rb").read())
    ihdr = bytearray(data[12:29])  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    open(path, "wb").write(bytes(data))
    return path


def perfect_results(dataset):
    """The ground truth of a CocoDataset as detections with score 1 (COCO AP 1.0)."""
    from yolact_fast.data import rle

    results = []
    for image_id in dataset.image_ids:
        image = dataset.coco.imgs[image_id]
        for ann in dataset.coco.imgToAnns.get(image_id, []):
            if ann["iscrowd"]:
                continue
            mask = rle.decode(ann["segmentation"], image["height"], image["width"])
            results.append(
                {
                    "image_id": image_id,
                    "category_id": ann["category_id"],
                    "bbox": list(ann["bbox"]),
                    "score": 1.0,
                    "segmentation": rle.encode(mask[None])[0],
                }
            )
    return results


def shape_frames(count, size=(128, 160), seed=700):
    """Synthetic-shapes frames (what the demo model was trained on) as uint8 [3,H,W]."""
    from yolact_fast.data import synthetic_shapes

    frames = [synthetic_shapes(1, seed=seed + i)[0][0] for i in range(count)]
    return [torch.nn.functional.interpolate(f[None].float(), size, mode="nearest")[0].to(torch.uint8) for f in frames]


def write_video(path, frames, container_format="mp4", codec="mpeg4", fps=10):
    """Encodes uint8 [3,H,W] frames with PyAV directly (independent of VideoWriter)."""
    import av

    container = av.open(str(path), "w", format=container_format)
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames[0].shape[1:]
    stream.pix_fmt = "yuv420p"
    for frame in frames:
        rgb = frame.permute(1, 2, 0).contiguous().numpy()
        for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path


def read_video(path):
    """(frames as HxWx3 uint8 RGB arrays, the stream's average rate) of a video file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)], stream.average_rate
