"""Built-in flax models and user modules."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jopt
from jopt import JoptError
from jopt.data import Batching
from jopt.models import ACTIVATIONS, make_model
from jopt.train import LossSpec, init_train_state, make_train_epoch


def _init(model, x, seed=0):
    return model.init(jax.random.key(seed), x, train=False)


def test_mlp_depth_and_widths():
    m = make_model("mlp", num_outputs=10, hidden=[16, 8])
    p = _init(m, jnp.zeros((2, 8, 8)))["params"]  # images are flattened
    shapes = {k: v["kernel"].shape for k, v in p.items()}
    assert shapes == {"dense_0": (64, 16), "dense_1": (16, 8), "head": (8, 10)}


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_mlp_activation_is_applied(act, key):
    m = make_model("mlp", num_outputs=3, hidden=[5], activation=act)
    x = jax.random.normal(key, (4, 6))
    p = _init(m, x)["params"]
    h = ACTIVATIONS[act](x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"])
    expect = h @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(m.apply({"params": p}, x), expect, rtol=1e-5, atol=1e-6)


def test_initialization_follows_the_activation():
    x = jnp.zeros((1, 400))
    relu = _init(make_model("mlp", num_outputs=1, hidden=[400]), x)["params"]
    tanh = _init(make_model("mlp", num_outputs=1, hidden=[400], activation="tanh"), x)["params"]
    # He normal for ReLU-like units (std sqrt(2/fan_in)), LeCun normal otherwise (sqrt(1/fan_in))
    np.testing.assert_allclose(relu["dense_0"]["kernel"].std(), np.sqrt(2 / 400), rtol=0.05)
    np.testing.assert_allclose(tanh["dense_0"]["kernel"].std(), np.sqrt(1 / 400), rtol=0.05)
    assert float(jnp.abs(relu["dense_0"]["bias"]).max()) == 0.0


def test_linear_model():
    m = make_model("linear", num_outputs=3)
    p = _init(m, jnp.zeros((1, 4)))["params"]
    assert p["Dense_0"]["kernel"].shape == (4, 3)


@pytest.mark.parametrize(
    "shape,kernel",
    [((40,), (3, 1, 4)), ((8, 8), (3, 3, 1, 4)), ((8, 8, 2), (3, 3, 2, 4))],
)
def test_cnn_1d_and_2d(shape, kernel):
    m = make_model("cnn", num_outputs=10, channels=[4, 6], dense=16)
    x = jnp.ones((3, *shape))
    v = jax.eval_shape(lambda: _init(m, x))
    assert v["params"]["conv_0"]["kernel"].shape == kernel
    assert jax.eval_shape(lambda: m.apply(_init(m, x), x)).shape == (3, 10)


def test_batch_norm_keeps_running_statistics():
    m = make_model("mlp", num_outputs=2, hidden=[6], norm="batch")
    rng = np.random.default_rng(0)
    x = (5.0 + 3.0 * rng.standard_normal((64, 3))).astype(np.float32)
    y = (x[:, 0] > 5).astype(np.int32)
    tx = jopt.sgd(0.05)
    state = init_train_state(m, tx, x[:1], jax.random.key(0))
    assert set(state.model_state) == {"batch_stats"}
    mean0 = state.model_state["batch_stats"]["norm_0"]["mean"]
    epoch = jax.jit(make_train_epoch(m, tx, LossSpec("classification", 2), Batching("full")))
    state, _ = epoch(state, x, y)
    mean1 = state.model_state["batch_stats"]["norm_0"]["mean"]
    assert not np.allclose(mean0, mean1)  # updated from the training batch
    variables = {"params": state.params, **state.model_state}
    ev = m.apply(variables, x, train=False)
    tr, _ = m.apply(variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(ev, tr)  # evaluation uses the running averages


def test_layer_norm_has_scale_and_bias():
    m = make_model("mlp", num_outputs=2, hidden=[6], norm="layer")
    p = _init(m, jnp.zeros((1, 3)))["params"]
    assert set(p["norm_0"]) == {"scale", "bias"}


class _Mine(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(3)(x.reshape((x.shape[0], -1)))


class _NoTrain(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x


def test_user_module_passes_through():
    mine = _Mine()
    assert make_model(mine, num_outputs=3) is mine
    with pytest.raises(JoptError, match="must accept a 'train' argument"):
        make_model(_NoTrain(), num_outputs=3)
    with pytest.raises(JoptError, match="options cannot be given"):
        make_model(mine, num_outputs=3, hidden=[3])


def test_bad_model_options():
    with pytest.raises(JoptError, match="unknown model 'resnet'"):
        make_model("resnet", num_outputs=2)
    with pytest.raises(JoptError, match="unknown activation 'swish'"):
        make_model("mlp", num_outputs=2, activation="swish")
    with pytest.raises(JoptError, match="unknown norm"):
        make_model("mlp", num_outputs=2, norm="group")
    with pytest.raises(JoptError, match="unknown option"):
        make_model("mlp", num_outputs=2, widths=[3])
    with pytest.raises(JoptError, match="dropout must be in"):
        make_model("mlp", num_outputs=2, dropout=1.0)
    with pytest.raises(JoptError, match="positive integers"):
        make_model("cnn", num_outputs=2, channels=[0])
