"""An inference copy of a :class:`Yolact`: BatchNorm folded into the convolutions, the three
head convolutions merged into one; optionally channels_last weights, a lower precision, and
(CPU) convolutions with oneDNN weights packed once (instead of at every call) with ReLU /
LeakyReLU and the ResNet residual sum fused into them. The inference engine
(:mod:`yolact_fast.engine`) builds the variants and keeps the fastest measured one.

The copy computes the same function up to float rounding (differences ~1e-5 relative in
float32); ``Yolact`` itself keeps the official, unfused structure so checkpoints load strictly.
"""

from __future__ import annotations

import copy
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .backbone import Bottleneck
from .deform import ModulatedDeformConv2d
from .heads import PredictionHead, _flatten_anchors
from .yolact import Yolact


@torch.no_grad()
def fold_batchnorm(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """A conv equal to ``bn(conv(x))`` in eval mode (folded in float64, stored in conv's dtype).

    ``conv``: an ``nn.Conv2d`` or a :class:`ModulatedDeformConv2d` (its offsets and mask come
    from ``x`` through ``conv_offset_mask``, which BatchNorm does not touch)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    if isinstance(conv, ModulatedDeformConv2d):
        fused = copy.deepcopy(conv)
    else:
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            bias=True,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
    fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean.double()) * scale + bn.bias.double())
    return fused


def _conv_partner(module: nn.Module, bn_name: str):
    """Name of the conv feeding BatchNorm ``bn_name`` in ``module``: bnN -> convN; in a
    Sequential, the previous entry."""
    if bn_name.startswith("bn"):
        return "conv" + bn_name[2:]
    if bn_name.isdigit() and int(bn_name) > 0:
        return str(int(bn_name) - 1)
    return None


def fold_all_batchnorms(root: nn.Module) -> int:
    """Fold every BatchNorm2d of ``root`` into its conv in place (BN -> Identity); returns the
    number folded. Raises if a BatchNorm has no conv partner."""
    folded = 0
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, nn.BatchNorm2d):
                continue
            conv_name = _conv_partner(module, name)
            conv = getattr(module, conv_name, None) if conv_name else None
            if not isinstance(conv, (nn.Conv2d, ModulatedDeformConv2d)):
                raise RuntimeError(f"BatchNorm {name!r} in {type(module).__name__} follows no conv")
            setattr(module, conv_name, fold_batchnorm(conv, child))
            setattr(module, name, nn.Identity())
            folded += 1
    return folded


class MergedPredictionHead(nn.Module):
    """:class:`PredictionHead` with bbox, conf and mask convs as one conv (one larger GEMM)."""

    def __init__(self, head: PredictionHead):
        super().__init__()
        self.upfeature = head.upfeature
        self.num_classes = head.num_classes
        self.mask_dim = head.mask_dim
        layers = (head.bbox_layer, head.conf_layer, head.mask_layer)
        self.splits = tuple(layer.out_channels for layer in layers)
        first = layers[0]
        self.merged = nn.Conv2d(
            first.in_channels,
            sum(self.splits),
            first.kernel_size,
            padding=first.padding,
            device=first.weight.device,
            dtype=first.weight.dtype,
        )
        with torch.no_grad():
            self.merged.weight.copy_(torch.cat([layer.weight for layer in layers]))
            self.merged.bias.copy_(torch.cat([layer.bias for layer in layers]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.merged(self.upfeature(x))
        loc, conf, coeffs = out.split(self.splits, dim=1)
        return (
            _flatten_anchors(loc, 4),
            _flatten_anchors(conf, self.num_classes),
            torch.tanh(_flatten_anchors(coeffs, self.mask_dim)),
        )


def inference_copy(
    model: Yolact, channels_last: Optional[bool] = None, pack_cpu: bool = True, dtype: Optional[torch.dtype] = None
) -> Yolact:
    """A fused eval-mode copy of ``model`` for inference (see module docstring).

    ``channels_last``: convert the weights to channels_last (None: when the model is on the
    CPU). The copy's ``input_memory_format`` is the layout its inputs should have.

    ``pack_cpu``: pack the convolutions for oneDNN when the model is a float32 or bfloat16
    CPU model (falls back to plain convolutions, with a warning, where this PyTorch build
    cannot).

    ``dtype``: the copy's floating-point type (None: the model's); BatchNorm is folded in
    float64 first, then the weights are rounded once to ``dtype``.
    """
    fused = copy.deepcopy(model).eval()
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    fold_all_batchnorms(fused.backbone)
    fused.prediction_layers[0] = MergedPredictionHead(fused.prediction_layers[0])
    del fused.semantic_seg_conv  # training only
    if dtype is not None:
        fused.to(dtype)
    if channels_last is None:
        channels_last = next(model.parameters()).device.type == "cpu"
    fused.input_memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    if pack_cpu and can_pack(fused):
        try:
            pack_convolutions(fused)
        except RuntimeError as error:  # an unusual oneDNN build: keep the plain convolutions
            warnings.warn(f"oneDNN weight packing unavailable, using plain convolutions: {error}")
            return inference_copy(model, channels_last, pack_cpu=False, dtype=dtype)
    return fused


def can_pack(model: nn.Module) -> bool:
    parameter = next(model.parameters())
    return (
        parameter.device.type == "cpu"
        and parameter.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    )


class PackedConv2d(nn.Module):
    """A conv with its weight pre-packed for oneDNN and an optional fused activation
    ("relu", or "leaky_relu" with ``scalars=[slope]``). Same values as conv + activation.

    oneDNN picks the packed layout from the input's spatial size, so a conv that sees several
    sizes (the prediction head, shared by the five pyramid levels) keeps one packing per size:
    a weight packed for another size would be reordered again at every call, by a slow generic
    reorder (2.7-3.1 ms per call of the demo model's head; 2-core AMD EPYC, 2026-12-08)."""

    def __init__(
        self,
        conv: nn.Conv2d,
        input_shapes: Sequence[Tuple[int, ...]],
        activation: str = "none",
        scalars: Optional[List[float]] = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.activation, self.scalars = activation, list(scalars or [])
        weight = conv.weight.detach().contiguous().to_mkldnn()
        # Plain attributes: the packed (opaque) tensors cannot be parameters or be copied.
        self.packed_weights = {
            tuple(shape[2:]): torch._C._nn.mkldnn_reorder_conv2d_weight(
                weight, self.padding, self.stride, self.dilation, self.groups, list(shape)
            )
            for shape in input_shapes
        }
        self.packed_weight = next(iter(self.packed_weights.values()))  # for sizes not seen when packing
        self.bias_ = None if conv.bias is None else conv.bias.detach().clone()

    def _weight(self, x: torch.Tensor):
        return self.packed_weights.get(tuple(x.shape[2:]), self.packed_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            self._weight(x),
            self.bias_,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            self.activation,
            self.scalars,
            "",
        )

    def forward_add_relu(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """relu(conv(x) + other) in one oneDNN call."""
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x,
            other,
            self._weight(x),
            self.bias_,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            "add",
            1.0,
            "relu",
            [],
            "",
        )

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, activation={self.activation}"


class PackedBottleneck(nn.Module):
    """A BN-folded :class:`Bottleneck` with packed convs: ReLUs and the residual sum fused.
    A deformable 3x3 conv stays torchvision's (its offset conv is packed later)."""

    def __init__(self, block: Bottleneck, shapes: Dict[nn.Module, List[Tuple[int, ...]]]):
        super().__init__()
        self.conv1 = PackedConv2d(block.conv1, shapes[block.conv1], "relu")
        if isinstance(block.conv2, ModulatedDeformConv2d):
            self.conv2 = nn.Sequential(block.conv2, nn.ReLU(inplace=True))
        else:
            self.conv2 = PackedConv2d(block.conv2, shapes[block.conv2], "relu")
        self.conv3 = PackedConv2d(block.conv3, shapes[block.conv3])
        self.downsample = None
        if block.downsample is not None:
            self.downsample = PackedConv2d(block.downsample[0], shapes[block.downsample[0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.conv3.forward_add_relu(self.conv2(self.conv1(x)), residual)


def _conv_input_shapes(model: Yolact) -> Dict[nn.Module, List[Tuple[int, ...]]]:
    """The input shapes every conv sees for one image at the model's size (a packing hint
    only: other sizes and batch sizes still work)."""
    shapes: Dict[nn.Module, List[Tuple[int, ...]]] = {}

    def record(module, args):
        seen = shapes.setdefault(module, [])
        if tuple(args[0].shape) not in seen:
            seen.append(tuple(args[0].shape))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    size = model.config.max_size
    parameter = next(model.parameters())
    example = torch.zeros(1, 3, size, size, dtype=parameter.dtype).contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            proto = model(example).proto
            if model.maskiou_net is not None:
                model.maskiou_net(proto[:1, :, :, 0].unsqueeze(1))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _activation_of(module: nn.Module) -> Optional[Tuple[str, List[float]]]:
    if isinstance(module, nn.ReLU):
        return "relu", []
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu", [module.negative_slope]
    return None


@torch.no_grad()
def pack_convolutions(model: Yolact) -> None:
    """Replace every conv of a fused copy with :class:`PackedConv2d`, in place; fuse the
    activation that directly follows a conv in a Sequential (BN already folded to Identity)."""
    shapes = _conv_input_shapes(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Bottleneck):
                setattr(module, name, PackedBottleneck(child, shapes))
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module)
            for i, child in enumerate(children):
                if not isinstance(child, nn.Conv2d):
                    continue
                after = i + 1
                while after < len(children) and isinstance(children[after], nn.Identity):
                    after += 1
                activation = _activation_of(children[after]) if after < len(children) else None
                if activation is not None:
                    module[i] = PackedConv2d(child, shapes[child], *activation)
                    module[after] = nn.Identity()
                else:
                    module[i] = PackedConv2d(child, shapes[child])
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d):
                setattr(module, name, PackedConv2d(child, shapes[child]))
