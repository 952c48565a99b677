"""Generative models and the autoencode task: output shapes, a short autoencoder run beating the mean image, the
reconstruction PNG, and clear errors for images of the wrong shape or range."""

import baselines  # noqa: F401  (tests/ on sys.path)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from run_helpers import short_run

from jaxdl import data, models, tasks


def _make(name, shape=(8, 8, 1), **kw):
    with nnx.use_eager_sharding(False):
        return models.make(dict(name=name, **kw), input_shape=shape, num_classes=10, rngs=nnx.Rngs(0))


def test_shapes():
    """Output shapes by abstract evaluation (no compute): autoencoders and the U-Net map images to images."""
    x = jax.ShapeDtypeStruct((3, 8, 8, 1), jnp.float32)
    assert jax.eval_shape(_make("conv_ae", latent=3, width=4), x).shape == (3, 8, 8, 1)
    vae = _make("vae", latent=3, width=4)
    assert [a.shape for a in jax.eval_shape(vae.encode, x)] == [(3, 3), (3, 3)]
    assert jax.eval_shape(vae.decode, jax.ShapeDtypeStruct((5, 2, 3), jnp.float32)).shape == (5, 2, 8, 8, 1)
    unet = _make("unet", channels=8, mults=(1, 1, 2), heads=2)
    assert jax.eval_shape(unet, x, jax.ShapeDtypeStruct((3,), jnp.int32)).shape == (3, 8, 8, 1)
    gan = _make("dcgan", latent=4, width=4)
    g = gan.generator(jnp.zeros((3, 4)))
    assert g.shape == (3, 8, 8, 1) and float(g.min()) >= 0 and float(g.max()) <= 1
    assert jax.eval_shape(gan, x).shape == (3,)


@pytest.mark.parametrize("name", ["conv_ae", "vae", "unet", "dcgan"])
def test_wrong_image_shape_fails_naming_the_model(name):
    with pytest.raises(ValueError, match=rf"model '{name}' takes images .*input_shape=\(30, 30, 1\)"):
        _make(name, shape=(30, 30, 1))
    with pytest.raises(ValueError, match=rf"model '{name}' takes images"):
        _make(name, shape=(40,))


def test_unet_rejects_a_mismatched_timestep_batch():
    with pytest.raises(ValueError, match=r"unet: expected x \[b, \(8, 8, 1\)\] and t \[b\]"):
        _make("unet", channels=8, heads=2)(jnp.zeros((2, 8, 8, 1)), jnp.zeros((3,), jnp.int32))


def test_autoencoder_short_run_beats_the_mean_image(tmp_path, data_dir):
    final, losses = short_run(
        tmp_path,
        data_dir,
        data="digits_unit",
        task="autoencode",
        model=dict(name="conv_ae", latent=16, width=8),
        steps=150,
        log_every=50,
        batch=32,
        eval_batch=250,
        lr=3e-3,
    )
    x = data.preprocess("digits_unit", data.memory.read(data.load("digits_unit", "train", data_dir), range(1297)))
    t = data.preprocess("digits_unit", data.memory.read(data.load("digits_unit", "test", data_dir), range(500)))
    mean_image_mse = float(np.mean((t["input"] - x["input"].mean(0)) ** 2))  # the best constant reconstruction
    assert final["eval/mse"] < 0.5 * mean_image_mse, (final, mean_image_mse)
    assert (tmp_path / "samples" / "reconstruction_step150.png").exists()


def test_normalized_images_fail_before_training(tmp_path, data_dir):
    """`digits` is mean/std normalized (values < 0): the trainer's first-batch check (`task.check_batch`) refuses
    it before compiling; every generative task has the check."""
    with pytest.raises(ValueError, match=r"diffusion batch 'input': pixel values must lie in \[0, 1\]"):
        short_run(
            tmp_path,
            data_dir,
            data="digits",
            task="diffusion",
            model=dict(name="unet", channels=8, heads=2),
            steps=2,
            log_every=1,
            batch=8,
            eval_batch=8,
            lr=1e-3,
        )
    bad = {"input": jnp.full((2, 8, 8, 1), -0.5)}
    for task in ("autoencode", "vae", "gan", "diffusion"):
        with pytest.raises(ValueError, match=rf"{task} batch 'input': pixel values must lie in \[0, 1\]"):
            tasks.make(dict(name=task)).check_batch(bad)
        tasks.make(dict(name=task)).check_batch({"input": jnp.full((2, 8, 8, 1), 0.5)})
