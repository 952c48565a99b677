"""Gradual magnitude pruning from `config.optim.prune`, in the real trainer: the sparsity after each checkpointed
step equals Zhu & Gupta's cubic schedule in closed form (exact counts), pruned weights stay exactly 0 through the
Adam steps between and after mask updates while the kept ones keep training, the final sparsity is the target,
the `sparsity` evaluator reports it, and bad `config.optim.prune` keys fail naming the key."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from jaxdl import config as config_lib
from jaxdl import optim
from jaxdl.compress.prune import prune_state
from jaxdl.state import restore_run
from jaxdl.train import train_and_evaluate

TARGET, BEGIN, END, EVERY, STEPS = 0.8, 0, 20, 5, 30


def pruned_config(data_dir, **prune):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "mnist1d", data_dir
    c.data.batch_size, c.data.eval_batch_size = 64, 500
    c.model = ml_collections.ConfigDict({"name": "cnn1d"})
    c.optim.name, c.optim.lr = "adam", 3e-3
    c.optim.prune.update(dict(target=TARGET, begin_step=BEGIN, end_step=END, every=EVERY) | prune)
    c.train.steps, c.train.log_every = STEPS, 10
    c.train.eval_every, c.train.checkpoint_every, c.train.keep_checkpoints = 0, 5, 10
    c.train.progress = False
    c.evals = ml_collections.ConfigDict({"main": {"kind": "classify"}, "sparsity": {"kind": "sparsity"}})
    return c


def cubic(count: int) -> float:
    """The schedule's closed form after `count` updates (the last mask update was at the last due count < it)."""
    last = min(BEGIN + ((count - 1 - BEGIN) // EVERY) * EVERY, END)
    return TARGET + (0.0 - TARGET) * (1 - (last - BEGIN) / (END - BEGIN)) ** 3


def kernels(params) -> dict[str, np.ndarray]:
    flat = jax.tree_util.tree_leaves_with_path(params.to_pure_dict())
    return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x) for p, x in flat if x.ndim >= 2}


def test_gradual_pruning_in_the_trainer(data_dir, tmp_path):
    final = train_and_evaluate(pruned_config(data_dir), str(tmp_path), devices=jax.devices()[:1])
    per_step, zero_sets = {}, {}
    for step in range(5, STEPS + 1, 5):
        run = restore_run(str(tmp_path), step, devices=jax.devices()[:1])
        ks = kernels(run.state["params"])
        per_step[step] = ks
        zeros = np.concatenate([(k == 0).ravel() for k in ks.values()])
        total = zeros.size
        # exact count of the schedule's sparsity (global scope: round(s * all kernel weights))
        assert int(zeros.sum()) == round(cubic(step) * total), step
        # the optimizer state's masks are exactly the zero pattern of the weights
        masks = [np.asarray(m) for m in jax.tree.leaves(prune_state(run.state["opt_state"]).masks) if m.ndim]
        assert sum(m.size for m in masks) == total and sum(int((~m).sum()) for m in masks) == int(zeros.sum())
        zero_sets[step] = zeros
    steps = sorted(zero_sets)
    for a, b in zip(steps, steps[1:], strict=False):
        assert np.all(zero_sets[b][zero_sets[a]]), (a, b)  # once pruned, a weight stays exactly 0
    # the last mask update is the one of update count END (step END + 1): the same zeros after it, while the kept
    # weights still train
    assert cubic(25) == TARGET > cubic(20)
    np.testing.assert_array_equal(zero_sets[30], zero_sets[25])
    moved = sum(int(np.sum(per_step[30][n] != per_step[25][n])) for n in per_step[30])
    assert moved == int((~zero_sets[30]).sum())  # every kept weight took a nonzero Adam step
    # the final sparsity is the target, and the evaluator reports it per leaf and in total
    n = zero_sets[30].size
    assert final["eval/sparsity/total"] == pytest.approx(round(TARGET * n) / n, abs=0)
    assert abs(final["eval/sparsity/total"] - TARGET) < 1 / n
    for name, k in per_step[30].items():
        assert final[f"eval/sparsity/{name}"] == pytest.approx(float(np.mean(k == 0)), abs=1e-12)
    with open(tmp_path / "sparsity.json") as f:
        assert json.load(f)["total"]["zeros"] == round(TARGET * n)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("target", 1.0, r"config.optim.prune.target: must be in \[0, 1\)"),
        ("scope", "row", "config.optim.prune.scope: 'row' is not one of"),
        ("end_step", 22, "config.optim.prune.end_step: end_step - begin_step = 22 must be a multiple of every=5"),
        ("end_step", 40, r"config.optim.prune.end_step: must be in \[begin_step=0, train.steps=30\)"),
        ("every", 0, "config.optim.prune.every: must be >= 1"),
    ],
)
def test_bad_prune_keys_fail_naming_the_key(data_dir, key, value, match):
    c = pruned_config(data_dir, **{key: value})
    with pytest.raises(ValueError, match=match):
        config_lib.validate(c)


def test_default_end_step_and_selected_leaves():
    cfg = config_lib.base().optim
    assert optim.make_prune(cfg.prune, 1000) is None  # target 0: off, the chain is unchanged
    select = optim.prune_selector("kernel")
    params = {"conv": {"kernel": np.ones((3, 2, 4)), "bias": np.ones(4)}, "emb": {"embedding": np.ones((5, 2))}}
    assert select(params) == {"conv": {"kernel": True, "bias": False}, "emb": {"embedding": False}}
    assert optim.prune_selector("kernel,embedding")(params)["emb"]["embedding"]
