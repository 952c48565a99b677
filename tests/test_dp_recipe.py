"""The DP-SGD recipe options of experiments/trustworthy/config.py (Papernot et al. 2021's knobs): LeNet's tanh
activation, clipping norm, expected batch, epochs -> steps, the validation split, and σ recalibrated by the
accountant for the exact q and steps (checked against dp-accounting's RDP and the tighter PLD accountant)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdl import config as config_lib
from jaxdl import models
from jaxdl.ablate import _load_module
from jaxdl.privacy import accounting

CONFIG = "experiments/trustworthy/config.py"


def test_tanh_lenet_is_lenet_with_tanh():
    """Same parameters (init does not depend on the activation); the tanh model's logits equal a forward pass
    written here from those parameters with jnp.tanh; relu gives other logits."""
    with nnx.use_eager_sharding(False):
        make = lambda act: models.make(
            {"name": "lenet", "activation": act}, input_shape=(28, 28, 1), num_classes=10, rngs=nnx.Rngs(0)
        )
        tanh, relu = make("tanh"), make("relu")
    x = jax.random.normal(jax.random.key(1), (2, 28, 28, 1))
    p = nnx.state(tanh, nnx.Param)
    conv = lambda h, layer, pad: (
        jax.lax.conv_general_dilated(h, layer["kernel"][...], (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        + layer["bias"][...]
    )
    pool = lambda h: jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = pool(jnp.tanh(conv(x, p["conv1"], "SAME")))
    h = pool(jnp.tanh(conv(h, p["conv2"], "VALID"))).reshape(2, -1)
    dense = lambda h, layer: h @ layer["kernel"][...] + layer["bias"][...]
    ref = dense(jnp.tanh(dense(jnp.tanh(dense(h, p["fc1"])), p["fc2"])), p["head"])
    np.testing.assert_allclose(tanh(x), ref, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(tanh(x) - relu(x)))) > 1e-2
    with pytest.raises(ValueError, match=r"config.model.activation='gelu'"):
        with nnx.use_eager_sharding(False):
            make("gelu")


def test_recipe_config_recalibrates_sigma_for_its_own_run():
    c = _load_module(CONFIG).get_config("dp,epsilon=3,epochs=1,batch=1024,clip=0.1,act=tanh,lr=8,val")
    config_lib.validate(c)
    assert c.train.steps == round(55_000 / 1024) == 54
    assert (c.data.name, c.data.eval_split, c.task.dataset) == ("fashion_mnist_val", "validation", "fashion_mnist_val")
    assert (c.task.clip_norm, c.task.expected_batch_size, c.model.activation, c.optim.lr) == (0.1, 1024, "tanh", 8.0)
    sigma, q = c.task.noise_multiplier, 1024 / 55_000
    eps_rdp = accounting.epsilon(sigma, q, 54, 1e-5)
    assert 2.95 < eps_rdp < 3.0 + 2e-3, eps_rdp  # σ is rounded to 4 digits
    assert accounting.epsilon(sigma, q, 54, 1e-5, accountant="pld") < eps_rdp  # PLD is tighter than RDP
    # twice the epochs at the same ε needs more noise; the full train split (q = 1024/60000) a little less
    longer = _load_module(CONFIG).get_config("dp,epsilon=3,epochs=2,batch=1024,clip=0.1,act=tanh,val")
    full = _load_module(CONFIG).get_config("dp,epsilon=3,epochs=1,batch=1024,clip=0.1,act=tanh")
    assert longer.task.noise_multiplier > sigma and full.train.steps == 59 and full.data.eval_split == "test"


@pytest.mark.parametrize(
    "arg,message",
    [
        ("dp,act=gelu", r"act='gelu'"),
        ("dp,clip=0", r"clip=0.0 > 0"),
        ("dp,batch=70000", r"batch=70000 must be in \[1, 60000\]"),
    ],
)
def test_bad_recipe_args_fail_naming_them(arg, message):
    with pytest.raises(ValueError, match=message):
        _load_module(CONFIG).get_config(arg)
