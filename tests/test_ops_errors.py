"""Bad arguments raise a clear ValueError/TypeError that names the argument."""

import math

import pytest
import torch

from yolact_fast import configs, ops

f32 = torch.float32


def nms_args(**changes):
    args = dict(boxes=torch.rand(10, 4), scores=torch.rand(3, 10), coeffs=torch.rand(10, 5))
    args.update(changes)
    return args


def mask_args(**changes):
    args = dict(proto=torch.rand(8, 9, 4), coeffs=torch.rand(3, 4), boxes=torch.rand(3, 4))
    args.update(changes)
    return args


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(loc=torch.rand(5, 3), priors=torch.rand(5, 4)), ValueError, r"loc must be \[\.\.\., P, 4\]"),
    (dict(loc=torch.rand(6, 4), priors=torch.rand(5, 4)), ValueError, "P = priors.shape"),
    (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 3)), ValueError, "priors must be"),
    (dict(loc=torch.ones(5, 4, dtype=torch.int32), priors=torch.rand(5, 4)), TypeError,
     "loc must be float16, bfloat16, float32 or float64"),
    (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 4).double()), TypeError, "priors must have the dtype"),
    (dict(loc=[[0.0] * 4], priors=torch.rand(1, 4)), TypeError, "loc must be a torch.Tensor"),
    (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 4), variances=(0.1,)), ValueError, "variances"),
    (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 4), variances=(0.1, math.nan)), ValueError, r"variances\[1\]"),
])
def test_decode_bad_args(kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.decode_boxes(**kwargs)


@pytest.mark.parametrize("changes, error, match", [
    (dict(boxes=torch.rand(10, 5)), ValueError, "boxes must be"),
    (dict(boxes=torch.rand(10)), ValueError, "boxes must be"),
    (dict(scores=torch.rand(3, 11)), ValueError, "scores must be"),
    (dict(scores=torch.rand(10)), ValueError, "scores must be"),
    (dict(coeffs=torch.rand(9, 5)), ValueError, "coeffs must be"),
    (dict(scores=torch.rand(3, 10).double()), TypeError, "scores must have the dtype"),
    (dict(boxes=torch.randint(0, 5, (10, 4))), TypeError, "boxes must be float16, bfloat16, float32 or float64"),
    (dict(iou_threshold=math.nan), ValueError, "iou_threshold"),
    (dict(iou_threshold=-0.1), ValueError, "iou_threshold"),
    (dict(score_threshold=math.nan), ValueError, "score_threshold"),
    (dict(top_k=-1), ValueError, "top_k"),
    (dict(top_k=2.5), TypeError, "top_k"),
    (dict(max_detections=-3), ValueError, "max_detections"),
    (dict(method="greedy"), ValueError, "method"),
    (dict(scores="x"), TypeError, "scores must be a torch.Tensor"),
])
def test_nms_bad_args(changes, error, match):
    with pytest.raises(error, match=match):
        ops.fast_nms(**nms_args(**changes))


def detect_args(**changes):
    args = dict(loc=torch.rand(10, 4), conf_logits=torch.rand(10, 4), coeffs=torch.rand(10, 5),
                priors=torch.rand(10, 4))
    args.update(changes)
    return args


@pytest.mark.parametrize("changes, error, match", [
    (dict(loc=torch.rand(2, 10, 4)), ValueError, r"loc must be \[P, 4\]"),
    (dict(loc=torch.rand(10, 3)), ValueError, "loc must be"),
    (dict(priors=torch.rand(9, 4)), ValueError, "P = priors.shape"),
    (dict(conf_logits=torch.rand(9, 4)), ValueError, r"conf_logits must be \[P, C \+ 1\]"),
    (dict(conf_logits=torch.rand(10, 0)), ValueError, "conf_logits must be"),
    (dict(conf_logits=torch.rand(10)), ValueError, "conf_logits must be"),
    (dict(coeffs=torch.rand(9, 5)), ValueError, r"coeffs must be \[P, k\]"),
    (dict(conf_logits=torch.rand(10, 4).double()), TypeError, "conf_logits must have the dtype"),
    (dict(coeffs=torch.rand(10, 5).half()), TypeError, "coeffs must have the dtype"),
    (dict(loc=torch.ones(10, 4, dtype=torch.int64)), TypeError, "loc must be float16"),
    (dict(variances=(0.1, math.inf)), ValueError, r"variances\[1\]"),
    (dict(variances=0.1), ValueError, "variances"),
    (dict(iou_threshold=-1.0), ValueError, "iou_threshold"),
    (dict(score_threshold=math.nan), ValueError, "score_threshold"),
    (dict(top_k=-2), ValueError, "top_k"),
    (dict(max_detections=1.5), TypeError, "max_detections"),
    (dict(method="matrix"), ValueError, "method"),
    (dict(conf_logits=None), TypeError, "conf_logits must be a torch.Tensor"),
])
def test_detect_bad_args(changes, error, match):
    with pytest.raises(error, match=match):
        ops.detect(**detect_args(**changes))


def test_detect_raw_op_checks():
    with pytest.raises(ValueError, match="conf_logits must be"):
        torch.ops.yolact_fast.detect(torch.rand(5, 4), torch.rand(4, 3), torch.rand(5, 2), torch.rand(5, 4),
                                     0.1, 0.2, 0.5, 200, 0.05, 100, "fast")
    with pytest.raises(ValueError, match="method"):
        torch.ops.yolact_fast.detect(torch.rand(5, 4), torch.rand(5, 3), torch.rand(5, 2), torch.rand(5, 4),
                                     0.1, 0.2, 0.5, 200, 0.05, 100, "greedy")


@pytest.mark.parametrize("changes, error, match", [
    (dict(proto=torch.rand(8, 9)), ValueError, r"proto must be \[H, W, k\]"),
    (dict(coeffs=torch.rand(3, 5)), ValueError, "coeffs must be"),
    (dict(boxes=torch.rand(2, 4)), ValueError, "boxes must be"),
    (dict(boxes=torch.rand(3, 2)), ValueError, "boxes must be"),
    (dict(coeffs=torch.rand(3, 4).double()), TypeError, "coeffs must have the dtype"),
    (dict(proto=torch.randint(0, 5, (8, 9, 4))), TypeError, "proto must be float16, bfloat16, float32 or float64"),
    (dict(crop_padding=-1), ValueError, "crop_padding"),
    (dict(crop_padding=math.inf), ValueError, "crop_padding"),
])
def test_assemble_bad_args(changes, error, match):
    with pytest.raises(error, match=match):
        ops.assemble_masks(**mask_args(**changes))


@pytest.mark.parametrize("changes, error, match", [
    (dict(size=(5,)), TypeError, "size must be a pair"),
    (dict(size=(5, -1)), ValueError, r"size must be \(h, w\) with h, w >= 0"),
    (dict(size=(5.5, 4)), TypeError, r"size\[0\] must be an int"),
    (dict(threshold=1.5), ValueError, r"threshold must be in \[0, 1\]"),
    (dict(threshold=-0.1), ValueError, "threshold"),
    (dict(threshold=math.nan), ValueError, "threshold"),
    (dict(size=(2**21, 2**21)), ValueError, "size.*more than the limit"),
    (dict(proto=torch.rand(0, 9, 4)), ValueError, "proto must have H, W > 0"),
])
def test_paste_bad_args(changes, error, match):
    args = mask_args(size=(20, 30))
    args.update(changes)
    with pytest.raises(error, match=match):
        ops.paste_masks(**args)


def test_make_priors_bad_args():
    with pytest.raises(TypeError, match="config must be a YolactConfig"):
        ops.make_priors("yolact_base", (550, 550))
    with pytest.raises(ValueError, match="image_size must be positive"):
        ops.make_priors(configs.yolact_base, (0, 550))
    with pytest.raises(TypeError, match="size must be a pair"):
        ops.make_priors(configs.yolact_base, 550)
    with pytest.raises(ValueError, match="anchor_wh must have"):
        torch.ops.yolact_fast.make_priors(torch.zeros(2, 2, dtype=torch.float64), [3, 3], [3])


def test_unknown_config():
    with pytest.raises(ValueError, match="unknown config 'yolact_huge'"):
        configs.get_config("yolact_huge")


@pytest.mark.parametrize("moved", ["coeffs", "boxes", "proto"])
def test_meta_tensors_mixed_with_real_ones(moved):
    """Fake kernels see meta tensors mixed with real ones and reject them as the device
    kernels reject mixed devices."""
    args = mask_args()
    args[moved] = args[moved].to("meta")
    with pytest.raises(ValueError, match="must be on the device of proto"):
        ops.assemble_masks(**args)
    with pytest.raises(ValueError, match="must be on the device of proto"):
        ops.paste_masks(**args, size=(5, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mixed_devices_raise_value_error_before_the_device_guard():
    args = mask_args()
    args["coeffs"] = args["coeffs"].cuda()
    with pytest.raises(ValueError, match="coeffs must be on the device of proto"):
        ops.assemble_masks(**args)
    with pytest.raises(ValueError, match="must be on the device of boxes"):
        ops.fast_nms(**nms_args(scores=torch.rand(3, 10).cuda()))


def test_raw_ops_check_too():
    """The registered ops validate on their own (torch.ops callers skip the wrappers)."""
    with pytest.raises(ValueError, match="threshold"):
        torch.ops.yolact_fast.paste_masks(torch.rand(4, 4, 2), torch.rand(1, 2), torch.rand(1, 4), [4, 4], 2.0, 1.0)
    with pytest.raises(ValueError, match="top_k"):
        torch.ops.yolact_fast.fast_nms(torch.rand(3, 4), torch.rand(1, 3), torch.rand(3, 1), 0.5, -1, 0.05, 5, "fast")
