"""HF GPT-2 <-> jaxdl `gpt` (jaxdl.convert.hf_gpt2) against transformers' GPT2LMHeadModel.

The fixture tests/data/gpt2_reference.npz comes from experiments/language/gpt2_reference.py (torch, in a side
venv): a tiny random GPT-2 whose every parameter was perturbed (biases and LayerNorm shifts non-zero), its
model.safetensors tensors, its logits on two batches, and a greedy `generate` continuation with its logits.
Checked here: our model loaded through the converter reproduces the logits, the KV-cache decoding logits and the
greedy tokens; to_hf(from_hf(x)) == x bitwise in both key layouts; save_pretrained -> load_pretrained; errors name
the missing / unexpected / mis-shaped tensor and the unsupported config key.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from jaxdl import decode
from jaxdl.convert import hf_gpt2
from jaxdl.models.language import gpt

REF = np.load(Path(__file__).parent / "data" / "gpt2_reference.npz")
CONFIG = json.loads(str(REF["config"]))
TENSORS = {k.removeprefix("st."): REF[k] for k in REF.files if k.startswith("st.")}
# fp32 on both sides, but different summation orders (XLA's dots vs PyTorch's CPU GEMMs, our one-pass LayerNorm
# variance vs torch's two-pass) differ by a few float32 ulps per op; over 2 layers that reaches 2.0e-6 on logits of
# magnitude <= 3.3 (measured, full pass and KV cache alike). 1e-5 leaves headroom and still fails on a wrong
# LayerNorm eps (1e-6 instead of 1e-5 moves the logits by 1.1e-3) or the erf GELU instead of the tanh one (8.4e-4).
ATOL = 1e-5

forward = nnx.jit(lambda model, x: model(x))


def fresh(**kw) -> gpt.Model:
    """A randomly initialized GPT-2 shaped model of the fixture's config."""
    with nnx.use_eager_sharding(False):
        return gpt.Model(
            input_shape=(CONFIG["n_positions"],),
            num_classes=CONFIG["vocab_size"],
            rngs=nnx.Rngs(1),
            **hf_gpt2.model_kwargs(CONFIG) | kw,
        )


@pytest.fixture(scope="module")
def model() -> gpt.Model:
    return hf_gpt2.from_hf(fresh(), TENSORS)


def params(m: gpt.Model) -> dict:
    return {tuple(k): np.asarray(v[...]) for k, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}


def test_logits_match_transformers(model):
    assert hf_gpt2.model_kwargs(CONFIG)["norm_eps"] == 1e-5
    for n in (32, 9):  # the whole learned-position table, and a short batch
        ours = np.asarray(forward(model, jnp.asarray(REF[f"input_ids_{n}"])))
        np.testing.assert_allclose(ours, REF[f"logits_{n}"], rtol=0, atol=ATOL, err_msg=f"length {n}")
    # the check has teeth: the default LayerNorm epsilon (1e-6) alone moves the logits past the tolerance
    wrong = hf_gpt2.from_hf(fresh(norm_eps=1e-6), TENSORS)
    assert np.abs(np.asarray(forward(wrong, jnp.asarray(REF["input_ids_9"]))) - REF["logits_9"]).max() > 10 * ATOL


def test_kv_cache_logits_and_greedy_tokens_match_generate(model):
    prompt, new = jnp.asarray(REF["prompt_ids"]), REF["generated_ids"]
    total = prompt.shape[1] + new.shape[1]
    step_fn, state = decode.module_step(model)
    tokens = decode.generate(step_fn, state, prompt, model.init_cache(2, total - 1), max_new_tokens=new.shape[1])
    np.testing.assert_array_equal(np.asarray(tokens), new)
    # the logits that chose each token, through our cache: prefill, then one token at a time
    step = jax.jit(step_fn)
    logits, cache = step(state, prompt, model.init_cache(2, total - 1))
    outs = [logits[:, -1]]
    for i in range(new.shape[1] - 1):
        logits, cache = step(state, jnp.asarray(new[:, i : i + 1]), cache)
        outs.append(logits[:, -1])
    np.testing.assert_allclose(np.stack(outs, 1), REF["generated_logits"], rtol=0, atol=ATOL)


def test_round_trip_is_exact_in_both_layouts(model):
    out = hf_gpt2.to_hf(model)
    assert sorted(out) == sorted(TENSORS)  # GPT2LMHeadModel layout, no lm_head (as save_pretrained writes it)
    for k, v in TENSORS.items():
        assert out[k].dtype == v.dtype and np.array_equal(out[k], v), k
    # GPT2Model layout (no prefix), with the causal-mask buffers older transformers saved and a tied lm_head
    bare = hf_gpt2.to_hf(model, prefix="")
    assert sorted(bare) == sorted(k.removeprefix("transformer.") for k in out)
    assert all(np.array_equal(bare[k.removeprefix("transformer.")], v) for k, v in out.items())
    n = CONFIG["n_positions"]
    extras = {"lm_head.weight": bare["wte.weight"]}
    for i in range(CONFIG["n_layer"]):
        extras |= {
            f"h.{i}.attn.bias": np.tril(np.ones((1, 1, n, n), bool)),
            f"h.{i}.attn.masked_bias": np.float32(-1e4),
        }
    loaded = hf_gpt2.from_hf(fresh(), bare | extras)
    expected = params(model)
    for k, v in params(loaded).items():
        assert np.array_equal(v, expected[k]), k


def test_save_pretrained_then_load_pretrained(model, tmp_path):
    hf_gpt2.save_pretrained(model, tmp_path / "ours")
    assert hf_gpt2.model_kwargs(json.loads((tmp_path / "ours/config.json").read_text())) == hf_gpt2.model_kwargs(CONFIG)
    written = load_file(str(tmp_path / "ours/model.safetensors"))
    assert sorted(written) == sorted(TENSORS) and all(np.array_equal(written[k], v) for k, v in TENSORS.items())
    again = hf_gpt2.load_pretrained(tmp_path / "ours", length=16)
    expected = params(model)
    for k, v in params(again).items():
        assert np.array_equal(v, expected[k]), k
    ids = jnp.asarray(REF["input_ids_9"])
    np.testing.assert_array_equal(np.asarray(again(ids)), np.asarray(model(ids)))
    # a directory as transformers' save_pretrained writes it (its config.json, its tensors) loads the same
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf/config.json").write_text(str(REF["config"]))
    save_file(TENSORS, str(tmp_path / "hf/model.safetensors"))
    hf = hf_gpt2.load_pretrained(tmp_path / "hf")
    np.testing.assert_allclose(np.asarray(forward(hf, ids)), REF["logits_9"], rtol=0, atol=ATOL)
    with pytest.raises(FileNotFoundError, match="config.json"):
        hf_gpt2.load_pretrained(tmp_path)


def test_errors_name_the_tensor_or_config_key():
    name = "transformer.h.1.attn.c_attn.bias"
    with pytest.raises(ValueError, match=r"lacks 1 tensor.*'h\.1\.attn\.c_attn\.bias'"):
        hf_gpt2.from_hf(fresh(), {k: v for k, v in TENSORS.items() if k != name})
    with pytest.raises(ValueError, match=r"has no place for.*'h\.2\.ln_1\.weight'"):
        hf_gpt2.from_hf(fresh(), TENSORS | {"transformer.h.2.ln_1.weight": np.ones(64, np.float32)})
    with pytest.raises(
        ValueError, match=r"'h\.0\.mlp\.c_fc\.weight' has shape \(256, 64\), the model needs \(64, 256\)"
    ):
        fc = "transformer.h.0.mlp.c_fc.weight"
        hf_gpt2.from_hf(fresh(), TENSORS | {fc: TENSORS[fc].T})  # [out, in] as an nn.Linear would store it
    with pytest.raises(ValueError, match="'lm_head.weight' differs from 'wte.weight'"):
        hf_gpt2.from_hf(fresh(), TENSORS | {"lm_head.weight": TENSORS["transformer.wte.weight"] + 1})
    with pytest.raises(ValueError, match="both with and without"):
        hf_gpt2.from_hf(fresh(), TENSORS | {"ln_f.bias": TENSORS["transformer.ln_f.bias"]})
    with pytest.raises(ValueError, match="positions='learned'"):
        hf_gpt2.from_hf(fresh(positions="rope"), TENSORS)
    with pytest.raises(ValueError, match="attention_bias=True"):
        hf_gpt2.to_hf(fresh(attention_bias=False))
    with pytest.raises(ValueError, match="activation_function='gelu'"):
        hf_gpt2.model_kwargs(CONFIG | {"activation_function": "gelu"})
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=True"):
        hf_gpt2.model_kwargs(CONFIG | {"scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(ValueError, match="lacks 'n_embd'"):
        hf_gpt2.model_kwargs({k: v for k, v in CONFIG.items() if k != "n_embd"})


def test_gpt_defaults_keep_the_parameter_tree():
    """attention_bias=False (the default) adds no parameters (old checkpoints load); True adds exactly the four
    zero-initialized biases and leaves every other initial value unchanged."""
    kw = dict(positions="learned", norm_eps=1e-5)
    plain, biased = params(fresh(attention_bias=False, **kw)), params(fresh(attention_bias=True, **kw))
    attn = lambda p: sorted(k[-1] for k in p if k[:2] == ("blocks", "attn"))
    assert attn(plain) == ["wk", "wo", "wq", "wv"]
    assert attn(biased) == ["bk", "bo", "bq", "bv", "wk", "wo", "wq", "wv"]
    for k, v in biased.items():
        if k in plain:
            assert np.array_equal(v, plain[k]), k
        else:
            assert not v.any(), k
