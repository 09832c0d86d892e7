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
