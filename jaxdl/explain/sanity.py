"""The model-randomization sanity check of Adebayo et al. 2018 ("Sanity checks for saliency maps"): an explanation
that explains the model must change when the model's weights are re-initialized. Cascading randomization
re-initializes the layers from the top (the output layer) down, one more layer per stage; at each stage the
attribution maps of the trained and the randomized model are compared per example by the Spearman rank
correlation of their absolute values (scipy), as in the paper's figures. A faithful method gives a low ρ already
after the top layer; a method that only reflects the input (an edge detector) stays near 1.
"""

from collections.abc import Callable, Sequence

import jax
import numpy as np
from scipy import stats


def top_level_names(params) -> list[str]:
    """The first path component of every parameter leaf (the model's direct submodules / parameters)."""
    names: list[str] = []
    for path, _ in jax.tree_util.tree_leaves_with_path(params):
        name = _key(path[0])
        if name not in names:
            names.append(name)
    return names


def _key(entry) -> str:
    return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))


def randomize(trained, fresh, names: Sequence[str]):
    """`trained` with the leaves under the top-level `names` taken from `fresh` (same tree: a newly initialized
    copy of the model, i.e. re-initialization with the model's own initializers)."""
    known = top_level_names(trained)
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"sanity check: layers {missing} are not top-level parameters of the model; known: {known}")
    chosen = set(names)
    return jax.tree_util.tree_map_with_path(lambda path, a, b: b if _key(path[0]) in chosen else a, trained, fresh)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-example Spearman ρ between |a[i]| and |b[i]| (flattened) -> float64 [n]; a, b [n, ...]."""
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    if a.shape != b.shape:
        raise ValueError(f"spearman: attribution shapes differ: {a.shape} vs {b.shape}")
    n = a.shape[0]
    return np.array([stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(n)])


def cascade(attribute: Callable[[object], np.ndarray], trained, fresh, order: Sequence[str]) -> dict[str, np.ndarray]:
    """{layer: ρ [n]} for each stage of the cascade: stage k re-initializes order[0..k] (order = top layer first).
    `attribute(params) -> [n, ...]` computes the maps of fixed examples under `params`."""
    reference = np.asarray(attribute(trained))
    out = {}
    for k, name in enumerate(order):
        out[name] = spearman(reference, np.asarray(attribute(randomize(trained, fresh, order[: k + 1]))))
    return out
