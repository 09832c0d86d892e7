"""Building an engine: resolve the options for the model's device, build the candidate
networks, keep the fastest measured one."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from typing import Callable, Dict, Hashable, Optional, Tuple

import torch

from ..model import Yolact
from .networks import (
    CudaGraphNetwork,
    Network,
    OnnxRuntimeNetwork,
    OpenVinoNetwork,
    network_scope,
    time_networks,
    torch_variants,
)
from .options import EXTERNAL_RUNTIMES, import_runtime, resolve_precision, runtime_installed, runtime_supports


@dataclasses.dataclass(frozen=True)
class EngineInfo:
    """What an engine runs: ``precision`` and ``runtime`` as resolved for the device ("auto"
    replaced by the choice), ``network`` the variant kept (e.g. "torch/onednn_packed",
    "torch/channels_last", "onnxruntime", "openvino"), ``timings_ms`` the candidates measured
    for the choice (median ms for one image; empty when there was one candidate; measured once
    per config and machine in a process), ``skipped`` candidates that could not
    be built and why."""

    config: str
    device: str
    precision: str
    runtime: str
    network: str
    cuda_graphs: bool
    timings_ms: Tuple[Tuple[str, float], ...]
    skipped: Tuple[Tuple[str, str], ...]
    build_seconds: float


class Engine:
    """A model's network for one (device, precision, runtime), with the weights it was built
    from (``identity``: :func:`yolact_fast.engine.identity.weights_identity`)."""

    def __init__(self, network: Network, info: EngineInfo, identity):
        self.network, self.info, self.identity = network, info, identity

    @property
    def module(self) -> Optional[torch.nn.Module]:
        """The torch module a torch engine runs (None for the other runtimes)."""
        network = getattr(self.network, "network", self.network)  # under a CUDA graph
        return getattr(network, "module", None)

    def scope(self):
        """What a call needs set while it runs, restored afterwards: for an eager CUDA network
        :func:`~yolact_fast.engine.networks.network_scope` (a CUDA graph's replay needs none);
        for onnxruntime and OpenVINO, torch's own ops (preprocessing, post-processing) on one
        thread, because torch's OpenMP threads spin after each parallel region and would take
        the cores from the runtime's threads (the demo model's OpenVINO bf16 network took 14 ms
        after torch's preprocessing instead of 10 ms: 2-core AMD EPYC, 2026-12-08)."""
        if self.info.runtime != "torch":
            return _torch_threads(1)
        if self.info.cuda_graphs:
            return contextlib.nullcontext()
        return network_scope(torch.device(self.info.device))


#: Set to 0 to run CUDA engines without CUDA graphs (read when an engine is built).
CUDA_GRAPHS_ENV = "YOLACT_FAST_CUDA_GRAPHS"

#: The torch variant chosen per (config, device, threads, precision, candidates): the choice
#: depends on shapes and the machine, not on the weights' values, so models sharing a config
#: share it within a process.
_choices: Dict[Hashable, Tuple[str, Tuple[Tuple[str, float], ...]]] = {}
_choices_lock = threading.Lock()


def build_engine(model: Yolact, precision: str, runtime: str, identity) -> Engine:
    start = time.perf_counter()
    device = model.device
    resolved = resolve_precision(precision, device, runtime)
    candidates, skipped = _candidates(model, resolved, runtime)
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):  # new layers draw initial weights: leave the caller's RNG
        name, network, timings = _fastest(model, resolved, candidates, skipped)
    graphs = device.type == "cuda" and name.startswith("torch/") and os.environ.get(CUDA_GRAPHS_ENV, "1") != "0"
    if graphs:
        network = CudaGraphNetwork(network)
    info = EngineInfo(
        config=model.config.name,
        device=str(device),
        precision=resolved,
        runtime=name.split("/")[0],
        network=name,
        cuda_graphs=graphs,
        timings_ms=timings,
        skipped=tuple(skipped.items()),
        build_seconds=time.perf_counter() - start,
    )
    return Engine(network, info, identity)


def _candidates(model: Yolact, precision: str, runtime: str):
    """Builders of the candidate networks, by name, and the runtimes skipped (with why)."""
    device = model.device
    skipped: Dict[str, str] = {}
    if runtime == "auto":
        runtimes = ["torch"]
        for name in EXTERNAL_RUNTIMES:
            supported, why = runtime_supports(name, precision, device)
            if not runtime_installed(name):
                skipped[name] = "not installed"
            elif not supported:
                skipped[name] = why
            else:
                runtimes.append(name)
    else:
        if runtime != "torch":
            import_runtime(runtime)  # the ImportError naming the extra
        runtimes = [runtime]
    candidates: Dict[str, Callable[[], Network]] = {}
    for name in runtimes:
        if name == "torch":
            candidates.update(
                {f"torch/{variant}": build for variant, build in torch_variants(model, precision).items()}
            )
        elif name == "onnxruntime":
            candidates[name] = lambda: OnnxRuntimeNetwork(model)
        else:
            candidates[name] = lambda: OpenVinoNetwork(model, precision)
    return candidates, skipped


def _fastest(
    model: Yolact, precision: str, candidates: Dict[str, Callable[[], Network]], skipped: Dict[str, str]
) -> Tuple[str, Network, Tuple[Tuple[str, float], ...]]:
    """Build the candidates and keep the fastest on one image of the model's input size; a
    choice made before in this process for the same config and machine is reused unbuilt."""
    device = model.device
    memo = (
        model.config,
        str(device),
        next(model.parameters()).dtype,
        torch.get_num_threads(),
        precision,
        tuple(sorted(candidates)),
    )
    with _choices_lock:
        known = _choices.get(memo)
    if len(candidates) == 1 or known is not None:
        name, measured = (next(iter(candidates)), ()) if known is None else known
        return name, _build(name, candidates[name]), measured
    networks: Dict[str, Network] = {}
    for name, build in candidates.items():
        try:
            networks[name] = build()
        except Exception as error:  # an exporter or runtime that cannot take this model
            if name.startswith("torch/"):
                raise
            skipped[name] = f"{type(error).__name__}: {error}"
    size = model.config.max_size
    generator = torch.Generator(device=device).manual_seed(0)
    batch = torch.rand(1, 3, size, size, device=device, generator=generator) * 4 - 2
    timings = time_networks(networks, batch)
    name = min(timings, key=timings.get)
    measured = tuple(sorted(timings.items(), key=lambda item: item[1]))
    with _choices_lock:
        _choices[memo] = (name, measured)
    return name, networks[name], measured


def _build(name: str, build: Callable[[], Network]) -> Network:
    try:
        return build()
    except Exception as error:
        if name.startswith("torch/") or isinstance(error, (ImportError, ValueError)):
            raise
        raise RuntimeError(
            f"runtime={name!r} cannot run this model: {type(error).__name__}: {error}; use runtime='torch'"
        ) from error


@contextlib.contextmanager
def _torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def clear_choices() -> None:
    """Forget the measured choices: the next engine built measures again."""
    with _choices_lock:
        _choices.clear()


__all__ = ["Engine", "EngineInfo", "build_engine", "clear_choices", "network_scope"]
