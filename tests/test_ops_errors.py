"""Bad arguments raise a clear ValueError/TypeError that names the argument."""

import math
import warnings

import numpy as np
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


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(loc=torch.rand(5, 3), priors=torch.rand(5, 4)), ValueError, r"loc must be \[\.\.\., P, 4\]"),
        (dict(loc=torch.rand(6, 4), priors=torch.rand(5, 4)), ValueError, "P = priors.shape"),
        (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 3)), ValueError, "priors must be"),
        (
            dict(loc=torch.ones(5, 4, dtype=torch.int32), priors=torch.rand(5, 4)),
            TypeError,
            "loc must be float16, bfloat16, float32 or float64",
        ),
        (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 4).double()), TypeError, "priors must have the dtype"),
        (dict(loc=[[0.0] * 4], priors=torch.rand(1, 4)), TypeError, "loc must be a torch.Tensor"),
        (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 4), variances=(0.1,)), ValueError, "variances"),
        (dict(loc=torch.rand(5, 4), priors=torch.rand(5, 4), variances=(0.1, math.nan)), ValueError, r"variances\[1\]"),
    ],
)
def test_decode_bad_args(kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.decode_boxes(**kwargs)


@pytest.mark.parametrize(
    "changes, error, match",
    [
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
    ],
)
def test_nms_bad_args(changes, error, match):
    with pytest.raises(error, match=match):
        ops.fast_nms(**nms_args(**changes))


def detect_args(**changes):
    args = dict(
        loc=torch.rand(10, 4), conf_logits=torch.rand(10, 4), coeffs=torch.rand(10, 5), priors=torch.rand(10, 4)
    )
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes, error, match",
    [
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
    ],
)
def test_detect_bad_args(changes, error, match):
    with pytest.raises(error, match=match):
        ops.detect(**detect_args(**changes))


def test_detect_raw_op_checks():
    with pytest.raises(ValueError, match="conf_logits must be"):
        torch.ops.yolact_fast.detect(
            torch.rand(5, 4),
            torch.rand(4, 3),
            torch.rand(5, 2),
            torch.rand(5, 4),
            0.1,
            0.2,
            0.5,
            200,
            0.05,
            100,
            "fast",
        )
    with pytest.raises(ValueError, match="method"):
        torch.ops.yolact_fast.detect(
            torch.rand(5, 4),
            torch.rand(5, 3),
            torch.rand(5, 2),
            torch.rand(5, 4),
            0.1,
            0.2,
            0.5,
            200,
            0.05,
            100,
            "greedy",
        )


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(proto=torch.rand(8, 9)), ValueError, r"proto must be \[H, W, k\]"),
        (dict(coeffs=torch.rand(3, 5)), ValueError, "coeffs must be"),
        (dict(boxes=torch.rand(2, 4)), ValueError, "boxes must be"),
        (dict(boxes=torch.rand(3, 2)), ValueError, "boxes must be"),
        (dict(coeffs=torch.rand(3, 4).double()), TypeError, "coeffs must have the dtype"),
        (dict(proto=torch.randint(0, 5, (8, 9, 4))), TypeError, "proto must be float16, bfloat16, float32 or float64"),
        (dict(crop_padding=-1), ValueError, "crop_padding"),
        (dict(crop_padding=math.inf), ValueError, "crop_padding"),
    ],
)
def test_assemble_bad_args(changes, error, match):
    with pytest.raises(error, match=match):
        ops.assemble_masks(**mask_args(**changes))


@pytest.mark.parametrize(
    "changes, error, match",
    [
        (dict(size=(5,)), TypeError, "size must be a pair"),
        (dict(size=(5, -1)), ValueError, r"size must be \(h, w\) with h, w >= 0"),
        (dict(size=(5.5, 4)), TypeError, r"size\[0\] must be an int"),
        (dict(threshold=1.5), ValueError, r"threshold must be in \[0, 1\]"),
        (dict(threshold=-0.1), ValueError, "threshold"),
        (dict(threshold=math.nan), ValueError, "threshold"),
        (dict(size=(2**21, 2**21)), ValueError, "size.*more than the limit"),
        (dict(proto=torch.rand(0, 9, 4)), ValueError, "proto must have H, W > 0"),
    ],
)
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
    with pytest.raises(TypeError, match="image_size must be a pair"):
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


# --- every argument of every op against hostile values -----------------------------------

NOT_NUMBERS = [None, "0.5", b"0.5", [0.5], True, torch.tensor(0.5), 1j]
NOT_INTS = [None, "5", 2.5, True, [5], np.float64(5.0), torch.tensor(5)]
NOT_TENSORS = [None, [[0.0] * 4], np.zeros((3, 4), np.float32), 1.0, "boxes"]
BAD_INTS = [-1, -(2**63) - 1, 2**63, 2**64]
FLOAT_RULES = {  # values each float option's rule refuses (ValueError)
    "iou_threshold": [math.nan, -1e-9, -math.inf],
    "score_threshold": [math.nan],
    "threshold": [math.nan, -0.1, 1.0000001, math.inf],
    "crop_padding": [math.nan, -1.0, math.inf],
}
NMS_OPTIONS = dict(iou_threshold=0.5, top_k=200, score_threshold=0.05, max_detections=100, method="fast")


def wrapper_calls():
    """(op name, wrapper, valid kwargs factory)."""
    return [
        ("decode_boxes", ops.decode_boxes, lambda: dict(loc=torch.rand(10, 4), priors=torch.rand(10, 4))),
        ("fast_nms", ops.fast_nms, lambda: nms_args(**NMS_OPTIONS)),
        ("cluster_nms", ops.cluster_nms, lambda: nms_args(**{k: v for k, v in NMS_OPTIONS.items() if k != "method"})),
        ("detect", ops.detect, lambda: detect_args(**NMS_OPTIONS)),
        ("assemble_masks", ops.assemble_masks, lambda: mask_args(crop_padding=1.0)),
        ("paste_masks", ops.paste_masks, lambda: mask_args(size=(20, 30), threshold=0.5, crop_padding=1.0)),
    ]


# The argument whose device and dtype the others must share.
FIRST_TENSOR = dict(
    decode_boxes="loc", fast_nms="boxes", cluster_nms="boxes", detect="loc", assemble_masks="proto", paste_masks="proto"
)


def other_layouts(t):
    """t in every other layout this torch build can make (their constructors warn: beta,
    deprecated, prototype)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layouts = [
            t.to_sparse(),
            t.reshape(t.shape[0], -1).to_sparse_csr() if t.dim() > 1 else t.to_sparse(),
            torch.quantize_per_tensor(t.float(), 0.1, 0, torch.quint8),
            torch.nested.nested_tensor([t, t]),
        ]
        if torch.backends.mkldnn.is_available():
            layouts.append(t.to_mkldnn())
    return layouts


def hostile_cases():
    """(op, wrapper, kwargs, argument, exception type) for one bad argument at a time."""
    cases = []
    for op, wrapper, valid in wrapper_calls():
        for arg, value in valid().items():
            bad = []  # (value, error)
            if isinstance(value, torch.Tensor):
                bad += [(v, TypeError) for v in NOT_TENSORS]
                bad += [(v, TypeError) for v in other_layouts(value)]
                bad += [(value.to(torch.int32), TypeError), (value.flatten(), ValueError)]
                if arg != FIRST_TENSOR[op]:
                    bad.append((value.to("meta"), ValueError))  # meta mixed with real tensors
            elif arg in ("top_k", "max_detections"):
                bad += [(v, TypeError) for v in NOT_INTS] + [(v, ValueError) for v in BAD_INTS]
            elif arg == "method":
                bad += [(v, TypeError) for v in (None, 3, b"fast", ["fast"])]
                bad += [(v, ValueError) for v in ("greedy", "", "Fast", "fast ")]
            elif arg == "size":
                bad += [
                    (v, TypeError)
                    for v in (None, 5, "ab", (5,), (5, 5, 5), torch.tensor([5, 5]), (5.5, 4), (None, 4), (True, 4))
                ]
                bad += [
                    (v, ValueError)
                    for v in ((-1, 4), (4, -(2**63)), (2**63, 4), (2**20, 2**20), (1, 2**40), (2**62, 2**62))
                ]
            else:
                bad += [(v, TypeError) for v in NOT_NUMBERS]
                bad += [(v, ValueError) for v in FLOAT_RULES[arg] + [10**400]]
            for bad_value, error in bad:
                kwargs = valid()
                kwargs[arg] = bad_value
                cases.append(pytest.param(op, wrapper, kwargs, arg, error, id=f"{op}-{arg}-{len(cases)}"))
    return cases


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("op, wrapper, kwargs, arg, error", hostile_cases())
def test_hostile_argument_names_itself(op, wrapper, kwargs, arg, error):
    with pytest.raises(error) as caught:
        wrapper(**kwargs)
    message = str(caught.value)
    # A bad tensor may break a rule stated relative to another argument ("coeffs must be
    # [P, k] with P = boxes.shape[0]"): the message names the argument either way.
    assert arg in message, f"{op}({arg}=...) raised {error.__name__} not naming {arg}: {message}"


def test_options_at_their_legal_edges():
    """Values the rule accepts: iou_threshold > 1 and inf (suppresses nothing), top_k and
    max_detections 0 (no detections) and 2^63 - 1 (no limit), infinite score thresholds,
    numpy scalars."""
    boxes, scores, coeffs = nms_args().values()
    everything = ops.fast_nms(
        boxes,
        scores,
        coeffs,
        iou_threshold=math.inf,
        top_k=2**63 - 1,
        score_threshold=-math.inf,
        max_detections=2**63 - 1,
    )
    assert len(everything[0]) == scores.numel()
    assert torch.equal(everything[0], ops.fast_nms(boxes, scores, coeffs, 1.5, 10, -math.inf, 30)[0])
    for top_k, max_detections in ((0, 100), (200, 0)):
        assert len(ops.fast_nms(boxes, scores, coeffs, top_k=top_k, max_detections=max_detections)[0]) == 0
    assert len(ops.detect(**detect_args(top_k=np.int64(3), score_threshold=np.float32(math.inf)))[0]) == 0
    assert ops.paste_masks(**mask_args(), size=(0, 2**40)).shape == (3, 0, 2**40)
    assert ops.paste_masks(**mask_args(coeffs=torch.rand(0, 4), boxes=torch.rand(0, 4)), size=(2**16, 2**16)).shape == (
        0,
        2**16,
        2**16,
    )


# --- ops.check_nms_options is the ops' own rule ---------------------------------------------

OPTION_VALUES = dict(
    score_threshold=[0.05, -math.inf, math.inf, math.nan, None, "0.05"],
    iou_threshold=[0.5, 0.0, 1.5, math.inf, -0.1, math.nan, None],
    top_k=[200, 0, 2**63 - 1, -1, 2**64, 2.0, None],
    max_detections=[100, 0, 2**63 - 1, -5, 2**63, "100"],
    method=["fast", "cluster", "greedy", None],
)


def option_sweep():
    """Each option through its values with the others valid, then seeded random mixes."""
    valid = {name: values[0] for name, values in OPTION_VALUES.items()}
    cases = [dict(valid, **{name: value}) for name, values in OPTION_VALUES.items() for value in values]
    rng = np.random.default_rng(12)
    for _ in range(40):
        cases.append({name: values[rng.integers(len(values))] for name, values in OPTION_VALUES.items()})
    return cases


def outcome(call):
    try:
        call()
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    return None


@pytest.mark.parametrize("options", option_sweep(), ids=lambda o: ",".join(map(repr, o.values())))
def test_check_nms_options_agrees_with_the_ops(options):
    expected = outcome(lambda: ops.check_nms_options(**options))
    for call in (lambda: ops.fast_nms(**nms_args(), **options), lambda: ops.detect(**detect_args(), **options)):
        assert outcome(call) == expected
    if expected is not None:
        name = expected[1].split()[0].split("[")[0]
        assert name in options, expected


def test_check_nms_options_signature():
    assert ops.check_nms_options(0.05, 0.5, 200, 100, "fast") is None
    assert (
        ops.check_nms_options(score_threshold=0.0, iou_threshold=2.0, top_k=0, max_detections=0, method="cluster")
        is None
    )
    with pytest.raises(ValueError, match="top_k must be >= 0"):
        ops.check_nms_options(0.05, 0.5, -1, 100, "fast")
    with pytest.raises(TypeError, match="score_threshold must be a real number, got NoneType"):
        ops.check_nms_options(None, 0.5, 200, 100, "fast")


# --- the fake kernels refuse what the device kernels refuse --------------------------------


def raw_cases():
    """(op, valid args factory, {label: (index, bad value)}) for torch.ops.yolact_fast."""
    big = torch.zeros(()).expand(10**5, 10**5)  # a 10^10-element view of one float
    return {
        "make_priors": (
            lambda: [torch.rand(2, 2, dtype=torch.float64), [3, 4, 2, 2], [1, 1]],
            {
                "int dtype": (0, torch.ones(2, 2, dtype=torch.int32)),
                "rank": (0, torch.rand(2, dtype=torch.float64)),
                "levels": (1, [3, 4, 2]),
                "negative": (1, [3, -4, 2, 2]),
                "overflow": (1, [2**62, 2**62, 1, 1]),
                "too large": (1, [2**31, 2**31, 1, 1]),
                "anchor rows": (2, [1, 2]),
            },
        ),
        "decode_boxes": (
            lambda: [torch.rand(2, 30, 4), torch.rand(30, 4), 0.1, 0.2],
            {
                "int dtype": (0, torch.ones(2, 30, 4, dtype=torch.int64)),
                "priors dtype": (1, torch.rand(30, 4, dtype=torch.float64)),
                "priors shape": (1, torch.rand(30, 3)),
                "P": (0, torch.rand(2, 29, 4)),
                "nan variance": (2, math.nan),
                "inf variance": (3, math.inf),
                "expanded loc": (0, torch.zeros(()).expand(10**8, 30, 4)),
            },
        ),
        "fast_nms": (
            lambda: [torch.rand(10, 4), torch.rand(3, 10), torch.rand(10, 5), 0.5, 200, 0.05, 100, "fast"],
            {
                "boxes shape": (0, torch.rand(10, 5)),
                "boxes dtype": (0, torch.ones(10, 4, dtype=torch.int32)),
                "scores shape": (1, torch.rand(3, 11)),
                "scores dtype": (1, torch.rand(3, 10, dtype=torch.float64)),
                "coeffs shape": (2, torch.rand(9, 5)),
                "iou nan": (3, math.nan),
                "iou negative": (3, -1.0),
                "top_k": (4, -1),
                "score nan": (5, math.nan),
                "max_detections": (6, -1),
                "method": (7, "greedy"),
                "expanded scores": (1, torch.zeros(()).expand(10**9, 10)),
            },
        ),
        "detect": (
            lambda: [
                torch.rand(10, 4),
                torch.rand(10, 4),
                torch.rand(10, 5),
                torch.rand(10, 4),
                0.1,
                0.2,
                0.5,
                200,
                0.05,
                100,
                "cluster",
            ],
            {
                "loc batched": (0, torch.rand(2, 10, 4)),
                "conf shape": (1, torch.rand(10, 0)),
                "conf dtype": (1, torch.rand(10, 4, dtype=torch.float64)),
                "coeffs shape": (2, torch.rand(9, 5)),
                "priors shape": (3, torch.rand(9, 4)),
                "variance": (4, math.nan),
                "iou": (6, -0.5),
                "top_k": (7, -3),
                "score": (8, math.nan),
                "max_detections": (9, -1),
                "method": (10, "matrix"),
            },
        ),
        "assemble_masks": (
            lambda: [torch.rand(8, 9, 4), torch.rand(3, 4), torch.rand(3, 4), 1.0],
            {
                "proto rank": (0, torch.rand(8, 9)),
                "proto dtype": (0, torch.ones(8, 9, 4, dtype=torch.int64)),
                "coeffs k": (1, torch.rand(3, 5)),
                "boxes N": (2, torch.rand(2, 4)),
                "padding": (3, -1.0),
                "padding nan": (3, math.nan),
            },
        ),
        "paste_masks": (
            lambda: [torch.rand(8, 9, 4), torch.rand(3, 4), torch.rand(3, 4), [20, 30], 0.5, 1.0],
            {
                "proto rank": (0, torch.rand(8, 9)),
                "coeffs dtype": (1, torch.rand(3, 4, dtype=torch.float64)),
                "size negative": (3, [-1, 5]),
                "size huge": (3, [2**20, 2**20]),
                "size wide": (3, [1, 2**40]),
                "threshold": (4, 1.5),
                "threshold nan": (4, math.nan),
                "empty proto": (0, torch.rand(0, 9, 4)),
            },
        ),
    }, big


def raw_sweep():
    cases, big = raw_cases()
    out = [(op, valid, label, change) for op, (valid, changes) in cases.items() for label, change in changes.items()]
    # Outputs and workspaces past the 16 GiB cap, from expanded (unallocated) inputs.
    out += [
        (
            "fast_nms",
            lambda: [big[:, :4], big[: 10**4], big[:, :1000], 0.5, 2**63 - 1, 0.05, 2**63 - 1, "fast"],
            "nms output",
            None,
        ),
        (
            "assemble_masks",
            lambda: [torch.rand(138, 138, 4), torch.zeros(()).expand(10**6, 4), torch.zeros(()).expand(10**6, 4), 1.0],
            "10^6 boxes",
            None,
        ),
        # A small output whose CPU workspace (H + 2 rows of w values per thread) is not.
        (
            "paste_masks",
            lambda: [torch.zeros(()).expand(2**20, 1, 4), torch.rand(1, 4), torch.rand(1, 4), [1, 2**15], 0.5, 1.0],
            "tall proto",
            None,
        ),
    ]
    return out


def first_word(error):
    return str(error).split()[0].split("[")[0].rstrip(":")


@pytest.mark.parametrize("op, valid, label, change", raw_sweep(), ids=lambda x: x if isinstance(x, str) else "")
def test_fake_kernels_raise_what_the_cpu_kernels_raise(op, valid, label, change):
    args = valid()
    if change is not None:
        args[change[0]] = change[1]
    meta = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in args]
    kernel = getattr(torch.ops.yolact_fast, op)
    with pytest.raises((TypeError, ValueError)) as on_cpu:
        kernel(*args)
    with pytest.raises((TypeError, ValueError)) as on_meta:
        kernel(*meta)
    assert type(on_meta.value) is type(on_cpu.value), (str(on_cpu.value), str(on_meta.value))
    assert first_word(on_meta.value) == first_word(on_cpu.value), (str(on_cpu.value), str(on_meta.value))


@pytest.mark.parametrize("op", ["make_priors", "decode_boxes", "fast_nms", "detect", "assemble_masks", "paste_masks"])
def test_fake_kernels_accept_what_the_cpu_kernels_accept(op):
    """Shapes and dtypes of the fake kernel's outputs equal the CPU kernel's, on valid
    arguments at the edges of the rules."""
    valid, _ = raw_cases()[0][op]
    variants = [valid()]
    if op in ("fast_nms", "detect"):
        first = 3 if op == "fast_nms" else 6
        for options in ((math.inf, 2**63 - 1, -math.inf, 2**63 - 1), (0.0, 0, 0.0, 7), (2.0, 3, math.inf, 0)):
            args = valid()
            args[first : first + 4] = options
            variants.append(args)
        half = valid()
        variants.append([a.half() if isinstance(a, torch.Tensor) else a for a in half])
    if op == "paste_masks":
        variants.append([torch.rand(8, 9, 4), torch.rand(0, 4), torch.rand(0, 4), [2**16, 2**16], 0.0, 0.0])
        variants.append([torch.rand(8, 9, 4), torch.rand(2, 4), torch.rand(2, 4), [0, 2**40], 1.0, 0.0])
    kernel = getattr(torch.ops.yolact_fast, op)
    for args in variants:
        got = kernel(*args)
        fake = kernel(*[a.to("meta") if isinstance(a, torch.Tensor) else a for a in args])
        got, fake = (got, fake) if isinstance(got, tuple) else ((got,), (fake,))
        assert [(t.shape, t.dtype) for t in fake] == [(t.shape, t.dtype) for t in got]
        assert all(t.device.type == "meta" for t in fake)


def test_fake_kernel_checks_trace_with_symbolic_shapes():
    """The mirrored checks compare symbolic sizes under torch.compile(dynamic=True)."""
    Y = torch.ops.yolact_fast

    def post_network(loc, conf_logits, coeffs, priors, proto):
        boxes, coeffs, _, _, count = Y.detect(loc, conf_logits, coeffs, priors, 0.1, 0.2, 0.5, 200, 0.05, 100, "fast")
        size = [proto.shape[0] * 4, proto.shape[1] * 4]
        return Y.assemble_masks(proto, coeffs, boxes, 1.0), Y.paste_masks(proto, coeffs, boxes, size, 0.5, 1.0), count

    compiled = torch.compile(post_network, fullgraph=True, backend="aot_eager", dynamic=True)
    g = torch.Generator().manual_seed(5)
    for P, C, H in ((50, 3, 8), (70, 5, 10)):
        args = (
            torch.randn(P, 4, generator=g) * 0.1,
            torch.randn(P, C + 1, generator=g),
            torch.rand(P, 6, generator=g),
            torch.rand(P, 4, generator=g),
            torch.rand(H, H + 1, 6, generator=g),
        )
        assert all(torch.equal(a, b) for a, b in zip(compiled(*args), post_network(*args)))
