"""yolact_fast: YOLACT instance segmentation with fused CPU and CUDA kernels."""

from . import _build_check

_build_check.check_extension_torch()  # before anything loads the extension (_C): ops, reference, ...
from . import configs, ops, reference  # noqa: E402,F401

__version__ = "0.1.0"
from .model import Yolact, load  # noqa: E402,F401
from .engine import engine_info, refresh  # noqa: E402,F401
from .instances import Instances  # noqa: E402,F401
from .segment import segment, segment_eager  # noqa: E402,F401
from .video import segment_video  # noqa: E402,F401
from .visualize import draw  # noqa: E402,F401
from . import data  # noqa: E402,F401
from . import export  # noqa: E402,F401  (onnx/onnxruntime imported only when used)
from .benchmarking import benchmark  # noqa: E402,F401
from .jobs import segment_files  # noqa: E402,F401
