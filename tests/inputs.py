"""Random inputs for the op tests: realistic, degenerate and hostile boxes, prototypes,
coefficients and scores, from a seed."""

import torch


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


def random_scores(num_classes, num_priors, generator, dtype=torch.float32, concentration=4.0):
    """[C, P] foreground probabilities: softmax over C + 1 logits, background dropped."""
    logits = torch.randn(num_priors, num_classes + 1, generator=generator, dtype=torch.float64)
    probs = torch.softmax(logits * concentration, dim=1)
    return probs[:, 1:].t().contiguous().to(dtype)


def clustered_boxes(num_priors, generator, dtype=torch.float32):
    """Boxes jittered around a few centres, so that many pairs overlap (NMS has work)."""
    centres = torch.rand(max(num_priors // 20, 1), 4, dtype=torch.float64, generator=generator)
    centres = torch.cat([centres[:, :2] * 0.7, centres[:, :2] * 0.7 + 0.1 + centres[:, 2:] * 0.2], 1)
    pick = torch.randint(0, centres.shape[0], (num_priors,), generator=generator)
    jitter = torch.randn(num_priors, 4, dtype=torch.float64, generator=generator) * 0.02
    return (centres[pick] + jitter).to(dtype)


def random_head(num_priors, num_classes, k, generator, dtype=torch.float32, concentration=4.0,
                clustered=False):
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
