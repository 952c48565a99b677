"""Elo ratings from game results: a Bradley-Terry maximum-likelihood fit (scipy.optimize), where player i scores
against j with probability 1 / (1 + 10^((r_j - r_i) / 400)) and a draw counts as half a win and half a loss.

Written here because no kept library fits the round-robin case in a few lines (choix / trueskill are not
dependencies and trueskill's sequential updates depend on game order). A weak Gaussian prior (`prior_sd` Elo,
centred on 0) keeps a player that won or lost every game finite; ratings are shifted so `anchor` is 0.
"""

import numpy as np
from scipy import optimize

SCALE = 400.0 / np.log(10.0)  # Elo points per natural-log unit of odds


def fit(
    names: list[str],
    wins: np.ndarray,
    draws: np.ndarray | None = None,
    anchor: str | None = None,
    prior_sd: float = 1000.0,
) -> dict[str, float]:
    """{name: Elo}. `wins[i, j]` = games i won against j (float [P, P]); `draws[i, j]` (symmetric) = draws between
    them. Anchor: `anchor` at 0 (default: the first name)."""
    w = np.asarray(wins, np.float64)
    p = len(names)
    if w.shape != (p, p):
        raise ValueError(f"wins has shape {w.shape}; {p} players need [{p}, {p}]")
    d = np.zeros_like(w) if draws is None else np.asarray(draws, np.float64)
    if d.shape != (p, p) or not np.allclose(d, d.T):
        raise ValueError(f"draws must be a symmetric [{p}, {p}] matrix (got shape {d.shape})")
    if (w < 0).any() or (d < 0).any():
        raise ValueError("wins and draws must be counts >= 0")
    anchor = names[0] if anchor is None else anchor
    if anchor not in names:
        raise ValueError(f"anchor {anchor!r} is not among the players {names}")
    score = w + 0.5 * d  # points i took from j
    games = w + w.T + d
    sd = prior_sd / SCALE

    def nll(r):
        diff = r[:, None] - r[None, :]
        logp = -np.logaddexp(0.0, -diff)  # log sigmoid(r_i - r_j)
        p_ij = np.exp(logp)
        value = -np.sum(score * logp) + np.sum(r**2) / (2 * sd**2)
        grad = -(score - games * p_ij).sum(1) + r / sd**2
        return value, grad

    res = optimize.minimize(nll, np.zeros(p), jac=True, method="L-BFGS-B")
    if not res.success:
        raise RuntimeError(f"Elo fit did not converge: {res.message}")
    r = res.x * SCALE
    r -= r[names.index(anchor)]
    return {n: float(v) for n, v in zip(names, r, strict=True)}
