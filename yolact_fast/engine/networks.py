"""Network variants the engine chooses from: callables ``batch [B,3,S,S] float32 -> YolactOutput``.

Every variant is built from a copy of the model's weights (:func:`yolact_fast.model.fuse.inference_copy`),
so a variant never reads the model's own parameters again: what it computes is fixed when it
is built. The torch variants differ in layout and kernels (oneDNN-packed convolutions with
fused activations, or plain convolutions in channels_last or NCHW) and in precision; none wins
for every model and machine, so the engine times them (:func:`time_networks`).
"""

from __future__ import annotations

import collections
import contextlib
import statistics
import threading
import time
from typing import Callable, Dict, Optional

import torch

from ..model import Yolact, YolactOutput
from ..model.fuse import inference_copy
from .options import DTYPES, import_runtime

Network = Callable[[torch.Tensor], YolactOutput]


class TorchNetwork:
    """A fused copy of the model run by PyTorch in ``dtype`` with inputs in ``memory_format``.

    Outputs are widened to float32: the post-network ops take float16/bfloat16, but they keep
    boxes in the dtype of ``loc``, and relative coordinates in bfloat16 are 1/256 apart (2.5
    pixels on a 640-pixel side), which would move boxes, crops and NMS. The head's outputs are
    small next to the network's activations (widening them costs well under 1% of a frame)."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype, memory_format: torch.memory_format):
        self.module, self.dtype, self.memory_format = module, dtype, memory_format

    def __call__(self, batch: torch.Tensor) -> YolactOutput:
        outputs = self.module(batch.to(self.dtype).contiguous(memory_format=self.memory_format))
        if self.dtype == torch.float32:
            return outputs
        return YolactOutput(*(output.float() for output in outputs))


def torch_variants(model: Yolact, precision: str) -> Dict[str, Callable[[], Network]]:
    """Builders of the torch variants worth timing for ``model``'s device and ``precision``."""
    dtype = DTYPES[precision]

    def copy(channels_last: bool, pack: bool) -> Network:
        module = inference_copy(model, channels_last=channels_last, pack_cpu=pack, dtype=dtype)
        return TorchNetwork(module, dtype, module.input_memory_format)

    variants = {"channels_last": lambda: copy(True, False), "nchw": lambda: copy(False, False)}
    if model.device.type == "cpu":
        del variants["nchw"]  # oneDNN reorders NCHW activations at every convolution
        if torch.backends.mkldnn.is_available():
            variants["onednn_packed"] = lambda: copy(True, True)
    return variants


_cuda_lock = threading.RLock()


@contextlib.contextmanager
def network_scope(device: torch.device):
    """What an eager or capturing network needs while it runs on ``device``: on CUDA, cuDNN's
    autotuner on and TF32 off (fp32 means fp32), the user's other cuDNN flags kept. These
    are process-wide settings, so the scope holds a lock: eager CUDA engines and captures
    run one at a time, and the settings are restored when the scope ends. Replaying a
    captured graph needs no scope."""
    if device.type != "cuda":
        yield
        return
    with (
        _cuda_lock,
        torch.backends.cudnn.flags(
            enabled=True, benchmark=True, allow_tf32=False, deterministic=torch.backends.cudnn.deterministic
        ),
    ):
        yield


class CudaGraphNetwork:
    """``network`` replayed from a CUDA graph per input shape: one launch of the whole forward
    instead of one per operator. Graphs are captured and replayed on a private stream that
    waits for the caller's stream and is waited on by it, so calls from threads with their
    own streams are ordered. The static outputs are cloned, so a batch's results stay valid
    while the next batch runs. At most ``max_graphs`` shapes are kept (least recent dropped);
    they share one memory pool."""

    def __init__(self, network: Network, warmup: int = 2, max_graphs: int = 8):
        self.network, self.warmup, self.max_graphs = network, warmup, max_graphs
        self.graphs: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
        self.lock = threading.Lock()
        self.stream: Optional[torch.cuda.Stream] = None
        self.pool = None

    def __call__(self, batch: torch.Tensor) -> YolactOutput:
        with self.lock, torch.cuda.device(batch.device):
            if self.stream is None:
                self.stream = torch.cuda.Stream(batch.device)
            caller = torch.cuda.current_stream(batch.device)
            key = (tuple(batch.shape), batch.dtype)
            if key not in self.graphs:
                self.graphs[key] = self._capture(batch, caller)
                while len(self.graphs) > self.max_graphs:
                    self.graphs.popitem(last=False)
            self.graphs.move_to_end(key)
            graph, static_input, static_output = self.graphs[key]
            self.stream.wait_stream(caller)
            batch.record_stream(self.stream)
            with torch.cuda.stream(self.stream):
                static_input.copy_(batch)
                graph.replay()
                outputs = YolactOutput(*(t.clone() for t in static_output))
            caller.wait_stream(self.stream)
            for output in outputs:
                output.record_stream(caller)
            return outputs

    def _capture(self, batch: torch.Tensor, caller: torch.cuda.Stream):
        self.stream.wait_stream(caller)
        with network_scope(batch.device), torch.cuda.stream(self.stream):
            static_input = batch.clone()
            for _ in range(self.warmup):  # cuDNN autotuning and allocations outside the graph
                self.network(static_input)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream, capture_error_mode="thread_local"):
                static_output = self.network(static_input)
        if self.pool is None:
            self.pool = graph.pool()
        caller.wait_stream(self.stream)
        return graph, static_input, static_output


class OnnxRuntimeNetwork:
    """The network exported to ONNX (:func:`yolact_fast.export.network_onnx`) run by
    onnxruntime on the CPU with torch's thread count."""

    def __init__(self, model: Yolact, threads: Optional[int] = None):
        ort = import_runtime("onnxruntime")
        from ..export import network_onnx

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Its threads would spin after each run while torch's post-processing wants the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        serialized = network_onnx(model).SerializeToString()
        self.session = ort.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> YolactOutput:
        outputs = self.session.run(None, {"images": batch.float().contiguous().numpy()})
        return YolactOutput(*(torch.from_numpy(output) for output in outputs))


class OpenVinoNetwork:
    """The exported network compiled by OpenVINO for the CPU in fp32 or bf16 (its
    ``INFERENCE_PRECISION_HINT``; OpenVINO's default on bf16 CPUs is bf16, so fp32 is asked
    for explicitly), latency mode, torch's thread count."""

    def __init__(self, model: Yolact, precision: str, threads: Optional[int] = None):
        ov = import_runtime("openvino")
        from ..export import network_onnx

        core = ov.Core()
        graph = core.read_model(network_onnx(model).SerializeToString(), b"")
        config = {
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(graph, "CPU", config)
        self.local = threading.local()  # an infer request serves one thread at a time

    def __call__(self, batch: torch.Tensor) -> YolactOutput:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        request.infer({0: batch.float().contiguous().numpy()})
        return YolactOutput(*(torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in range(4)))


def time_networks(
    networks: Dict[str, Network], batch: torch.Tensor, budget_s: float = 2.0, max_rounds: int = 10
) -> Dict[str, float]:
    """Median milliseconds of each network on ``batch``: one warm-up call each, then rounds
    that call them in turn (interleaved, so a change of machine load affects all of them
    alike), 3 to ``max_rounds`` of them as ``budget_s`` allows."""
    sync = torch.cuda.synchronize if batch.device.type == "cuda" else (lambda: None)
    times: Dict[str, list] = {name: [] for name in networks}

    def call(network) -> float:
        sync()
        start = time.perf_counter()
        network(batch)
        sync()
        return time.perf_counter() - start

    with torch.inference_mode(), network_scope(batch.device):
        round_s = sum(call(network) for network in networks.values())
        rounds = max(3, min(max_rounds, int(budget_s / max(round_s, 1e-6))))
        for _ in range(rounds):
            for name, network in networks.items():
                times[name].append(call(network) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}
