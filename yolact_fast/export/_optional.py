"""What every export path checks first: the optional packages it needs, and a model it can
export."""

import importlib

EXTRA = "export"


def refuse_rescoring(model) -> None:
    if getattr(model, "maskiou_net", None) is not None:
        raise NotImplementedError(
            f"{model.config.name}: the YOLACT++ mask re-scoring (maskiou_net) is not exported yet; "
            "export the network alone (postprocess=False) and re-score with yolact_fast.rescore"
        )


def require(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"yolact_fast.export needs the optional package {module_name!r}: "
            f"pip install 'yolact_fast[{EXTRA}]' (installs onnx and onnxruntime)"
        ) from error
