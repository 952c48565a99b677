"""Privacy accounting of DP-SGD with Google's `dp-accounting` package (no hand-written accountant).

DP-SGD with Poisson sampling at rate q, noise multiplier σ (noise std σ·C on the sum of per-example gradients
clipped to norm C) for T steps is the DpEvent `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)),
T)`, under the add/remove-one neighbouring relation (the relation Poisson subsampling amplification is proved for,
Abadi et al. 2016, Mironov et al. 2019). Two accountants: `rdp` (Rényi DP, Mironov 2017; what TF Privacy and Opacus
report by default) and `pld` (privacy loss distributions, tighter). Only Poisson sampling is accounted: fixed-size
batches from shuffled epochs are a different mechanism with no accountant in dp-accounting (and measurably weaker
guarantees than Poisson's at the same σ: Chua et al. 2024), so a DP run must sample this way (`dp_classify`).
"""

import dp_accounting

ACCOUNTANTS = ("rdp", "pld")
SAMPLINGS = ("poisson",)


def dpsgd_event(noise_multiplier: float, sampling_rate: float, steps: int) -> dp_accounting.DpEvent:
    """The DpEvent of `steps` DP-SGD steps with Poisson sampling."""
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    return dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian), steps)


def make_accountant(name: str) -> dp_accounting.PrivacyAccountant:
    if name == "rdp":
        return dp_accounting.rdp.RdpAccountant()
    if name == "pld":
        return dp_accounting.pld.PLDAccountant()
    raise ValueError(f"config.task.accountant={name!r} is not one of {ACCOUNTANTS}")


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """ε of (ε, δ)-DP after `steps` steps (0 steps: 0)."""
    if steps <= 0:
        return 0.0
    acc = make_accountant(accountant)
    acc.compose(dpsgd_event(noise_multiplier, sampling_rate, steps))
    return float(acc.get_epsilon(delta))


def noise_for_epsilon(
    target_epsilon: float, sampling_rate: float, steps: int, delta: float, accountant: str = "rdp"
) -> float:
    """The smallest σ whose run reaches at most `target_epsilon` at `delta` (dp-accounting's bracketed search)."""
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: make_accountant(accountant),
            lambda sigma: dpsgd_event(sigma, sampling_rate, steps),
            target_epsilon,
            delta,
            dp_accounting.ExplicitBracketInterval(0.3, 50.0),
            tol=1e-3,
        )
    )
