"""The engine's options: precisions and runtimes, checked against the device they run on."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Tuple

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
RUNTIMES = ("torch", "onnxruntime", "openvino", "auto")
EXTERNAL_RUNTIMES = ("onnxruntime", "openvino")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: The precisions each external runtime runs (on the CPU).
RUNTIME_PRECISIONS = {"onnxruntime": ("fp32",), "openvino": ("fp32", "bf16")}
#: The optional extra that installs each runtime, and the module it imports.
RUNTIME_EXTRAS = {"onnxruntime": ("onnxruntime", "onnxruntime"), "openvino": ("openvino", "openvino")}


def check_precision(precision) -> str:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def check_runtime(runtime) -> str:
    if not isinstance(runtime, str) or runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    return runtime


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), which is what makes
    oneDNN's bf16 convolutions faster than float32 ones rather than emulated."""
    return bool(
        torch.backends.mkldnn.is_available()
        and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    )


def cuda_bf16(device: torch.device) -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(precision: str, device: torch.device, runtime: str = "torch") -> str:
    """``precision`` for a model on ``device`` run by ``runtime``: "auto" becomes the fastest
    precision they run well (fp16 on CUDA GPUs of compute capability 7.0+, bf16 on CPUs with
    native bf16, else fp32; onnxruntime: fp32); one they cannot run well is a ValueError
    naming the precision and the device or runtime."""
    precision, runtime = check_precision(precision), check_runtime(runtime)
    if runtime in EXTERNAL_RUNTIMES:
        supported, why = runtime_supports(runtime, "fp32", device)
        if not supported:
            raise ValueError(why)
        if precision == "auto":
            precision = "bf16" if "bf16" in RUNTIME_PRECISIONS[runtime] and native_bf16_cpu() else "fp32"
        supported, why = runtime_supports(runtime, precision, device)
        if not supported:
            raise ValueError(why)
    if device.type == "cuda":
        if precision == "auto":
            return "fp16" if torch.cuda.get_device_capability(device)[0] >= 7 else "fp32"
        if precision == "bf16" and not cuda_bf16(device):
            raise ValueError(
                f"precision='bf16' needs a GPU of compute capability 8.0 or newer; "
                f"{device} is {torch.cuda.get_device_name(device)}: use 'fp16' or 'fp32'"
            )
        return precision
    if device.type != "cpu":
        if precision in ("fp32", "auto"):
            return "fp32"
        raise ValueError(f"precision={precision!r} is not supported on {device.type} devices: use 'fp32'")
    if precision == "auto":
        return "bf16" if native_bf16_cpu() else "fp32"
    if precision == "fp16":
        raise ValueError(
            "precision='fp16' runs on CUDA devices, the model is on the CPU: use 'bf16' "
            "(CPUs with AVX512-BF16 or AMX) or 'fp32'"
        )
    if precision == "bf16" and not native_bf16_cpu():
        raise ValueError(
            "precision='bf16' needs a CPU with native bfloat16 (AVX512-BF16 or AMX); "
            "this CPU would emulate it slower than fp32: use 'fp32'"
        )
    return precision


def runtime_installed(runtime: str) -> bool:
    return runtime == "torch" or importlib.util.find_spec(RUNTIME_EXTRAS[runtime][1]) is not None


def import_runtime(runtime: str):
    """The module of an external runtime; ImportError naming the extra that installs it."""
    extra, module = RUNTIME_EXTRAS[runtime]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"runtime={runtime!r} needs the optional package {module!r}: pip install 'yolact_fast[{extra}]'"
        ) from error


def runtime_supports(runtime: str, precision: str, device: torch.device) -> Tuple[bool, str]:
    """(whether ``runtime`` runs ``precision`` on ``device``, why not)."""
    if runtime == "torch":
        return True, ""
    if device.type != "cpu":
        return False, f"runtime={runtime!r} runs models on the CPU, this one is on {device}"
    if precision not in RUNTIME_PRECISIONS[runtime]:
        return False, (
            f"runtime={runtime!r} runs precision {' or '.join(map(repr, RUNTIME_PRECISIONS[runtime]))} "
            f"on the CPU, not {precision!r}"
        )
    return True, ""
