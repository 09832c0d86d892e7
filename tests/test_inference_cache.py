"""segment's fused copy follows the model's weights however they change (version counter,
checksum of the values), and yf.refresh drops it."""

import copy

import pytest
import torch

import yolact_fast as yf
from yolact_fast.model.inference import inference_network, weights_key

IMAGE = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def model():
    return copy.deepcopy(yf.load("demo"))


def _conf_bias(model):
    return model.prediction_layers[0].conf_layer.bias


def _edit_data(model):
    _conf_bias(model).data[1::6] += 4.0  # "circle" logits of every anchor


def _edit_numpy(model):
    _conf_bias(model).detach().numpy()[1::6] += 4.0


def _load_state_dict(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["prediction_layers.0.conf_layer.bias"][1::6] += 4.0
    model.load_state_dict(state)


def _optimizer_step(model):
    optimizer = torch.optim.SGD([_conf_bias(model)], lr=1.0)
    _conf_bias(model).grad = torch.zeros_like(_conf_bias(model))
    _conf_bias(model).grad[1::6] = -4.0
    optimizer.step()


@pytest.mark.parametrize("edit", [_edit_data, _edit_numpy, _load_state_dict, _optimizer_step])
def test_weight_edits_after_a_first_call_are_seen(model, edit):
    before = yf.segment(IMAGE, model=model, score_threshold=0.2)
    edit(model)
    after = yf.segment(IMAGE, model=model, score_threshold=0.2)
    fresh = yf.segment(IMAGE, model=copy.deepcopy(model), score_threshold=0.2)  # no cached copy
    assert torch.equal(after.scores, fresh.scores) and torch.equal(after.labels, fresh.labels)
    assert not torch.equal(before.scores, after.scores) or not torch.equal(before.labels, after.labels)


def test_unchanged_weights_keep_the_copy(model):
    network = inference_network(model)
    yf.segment(IMAGE, model=model)
    assert inference_network(model) is network and weights_key(model) == weights_key(model)


def test_checksum_sees_a_swap_of_two_values(model):
    weight = model.proto_net[0].weight
    key = weights_key(model)
    flat = weight.data.view(-1)  # .data: the version counter does not move
    flat[[0, 1]] = flat[[1, 0]].clone()
    assert weights_key(model) != key


def test_refresh_drops_the_copy(model):
    network = inference_network(model)
    yf.refresh(model)
    assert inference_network(model) is not network
    yf.refresh(copy.deepcopy(model))  # a model never run: nothing to drop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                                   torch.int32, torch.uint8, torch.bool, torch.complex64])
def test_checksum_sees_every_bit_change_even_beside_nan_and_inf(dtype):
    """Bit flips anywhere (first block, a later one, the tail), a swap of two values one block
    apart and -0.0 for 0.0, in tensors that already hold NaN and infinity."""
    from yolact_fast.model.inference import weights_checksum

    block = 1 << 16  # a CUDA block's words (kChecksumChunkWords)

    generator = torch.Generator().manual_seed(0)
    numel = 3 * block + 17
    tensor = (torch.randn(numel, generator=generator, dtype=torch.float64) * 100).to(dtype)
    if dtype.is_floating_point:
        tensor[[5, 6, block + 7]] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=dtype)
    if dtype == torch.bool:
        tensor = torch.rand(numel, generator=generator) < 0.5
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
    key = weights_checksum([tensor])
    positions = torch.randint(0, numel, (40,), generator=generator).tolist() + [0, 5, 6, numel - 1]
    for position in positions:
        for bit in (0, 8 * tensor.element_size() - 1) if dtype != torch.bool else (0,):
            edited = tensor.clone()
            bits = edited.view(width)
            bits[position] ^= torch.tensor(1 << bit if bit < 63 else -(1 << 63), dtype=torch.int64).to(width)
            assert weights_checksum([edited]) != key, (position, bit)
    swapped = tensor.clone()
    swapped[[9, 9 + block]] = tensor[[9 + block, 9]]
    assert torch.equal(swapped.view(width), tensor.view(width)) or weights_checksum([swapped]) != key
    if dtype.is_floating_point:
        zero = tensor.clone()
        zero[0] = 0.0
        assert weights_checksum([zero]) != weights_checksum([zero.index_fill(0, torch.tensor([0]), -0.0)])


def test_edits_after_a_nan_weight_are_seen(model):
    bias = _conf_bias(model)
    bias.data[0] = float("nan")
    yf.segment(IMAGE, model=model, score_threshold=0.2)
    bias.data[1::6] += 4.0  # the per-tensor float sum was NaN before and after this edit
    after = yf.segment(IMAGE, model=model, score_threshold=0.2)
    fresh = yf.segment(IMAGE, model=copy.deepcopy(model), score_threshold=0.2)
    assert torch.equal(after.scores, fresh.scores) and torch.equal(after.labels, fresh.labels)


def test_checksum_is_one_op_call_and_one_read_back_per_device():
    """On a GPU the checksum must not cost a launch sequence and a synchronization per tensor
    (yolact_base has 660): one bits_checksum call (one kernel, test_checksum.py) and one
    read-back for all the tensors of a device."""
    from torch.profiler import ProfilerActivity, profile

    from yolact_fast.model.inference import weights_checksum

    tensors = [torch.ones(n, dtype=torch.int64 if n == 1 else torch.float32) for n in [27, 64, 1] * 220]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        key = weights_checksum(tensors)
    names = [e.name for e in prof.events()]
    assert names.count("yolact_fast::bits_checksum") == 1
    assert names.count("aten::_local_scalar_dense") + names.count("aten::item") == 0  # one tolist()
    assert len(key) == len(tensors)
