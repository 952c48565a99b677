"""DistilBERT-style layer selection (jaxdl.compress.layer_drop) on tiny random BERTs (jaxdl.models.language.bert).

Independent reference: the teacher itself with its `layers` list cut to the chosen blocks (module surgery, no copy),
whose outputs the initialized student must reproduce."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxdl import models
from jaxdl.compress.layer_drop import every_other, init_from_layers

TINY = dict(dim=16, heads=2, mlp_dim=32, max_positions=16, vocab_size=40, dropout=0.0, attention_dropout=0.0)


def _bert(depth, seed, num_classes=3, **kw):
    with nnx.use_eager_sharding(False):
        cfg = dict(name="bert", head="classify", pool="mean", depth=depth, **(TINY | kw))
        return models.make(cfg, input_shape=(12,), num_classes=num_classes, rngs=nnx.Rngs(seed))


def _params(model):
    return {k: np.asarray(v.get_value()) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_student_layer_i_is_teacher_layer_2i_and_outputs_match_the_cut_teacher():
    teacher, student = _bert(6, seed=0), _bert(3, seed=1)
    before = _params(student)
    copied = init_from_layers(student, teacher, every_other(6, 3))
    t, s = _params(teacher), _params(student)
    assert set(copied) == set(s)  # every student leaf was copied
    changed = 0
    for path, value in s.items():
        src = ("layers", 2 * path[1], *path[2:]) if path[0] == "layers" else path
        np.testing.assert_array_equal(value, t[src])
        changed += not np.array_equal(value, before[path])
    assert changed >= 20  # the random kernels really changed (biases and norms start at 0 / 1 in both models)

    x = jax.random.randint(jax.random.key(0), (4, 12), 1, 40)
    teacher.layers = nnx.List([teacher.layers[i] for i in (0, 2, 4)])
    fwd = nnx.jit(lambda m, x: m(x))
    np.testing.assert_array_equal(np.asarray(fwd(student, x)), np.asarray(fwd(teacher, x)))


def test_exclude_keeps_the_students_own_head():
    teacher, student = _bert(4, seed=0, num_classes=5), _bert(2, seed=1, num_classes=3)
    before = _params(student)
    with pytest.raises(ValueError, match="classifier"):  # 5 vs 3 classes: named, nothing written
        init_from_layers(student, teacher, (0, 2))
    np.testing.assert_array_equal(_params(student)[("word_embeddings",)], before[("word_embeddings",)])
    init_from_layers(student, teacher, (1, 3), exclude=("classifier",))
    after, t = _params(student), _params(teacher)
    np.testing.assert_array_equal(after[("classifier",)], before[("classifier",)])
    np.testing.assert_array_equal(after[("layers", 0, "up")], t[("layers", 1, "up")])
    np.testing.assert_array_equal(after[("layers", 1, "up")], t[("layers", 3, "up")])


def test_bad_inputs_fail_naming_them():
    teacher, student = _bert(4, seed=0), _bert(2, seed=1)
    with pytest.raises(ValueError, match="3 teacher layers for a 2-layer student"):
        init_from_layers(student, teacher, (0, 1, 2))
    with pytest.raises(ValueError, match=r"\[4\] out of range"):
        init_from_layers(student, teacher, (0, 4))
    with pytest.raises(ValueError, match="layers/0/down Param.*widths must match"):
        init_from_layers(_bert(2, seed=1, mlp_dim=24), teacher, (0, 2))
    with pytest.raises(ValueError, match="cannot fill 3 layers"):
        every_other(4, 3)
    assert every_other(6, 3) == (0, 2, 4)
