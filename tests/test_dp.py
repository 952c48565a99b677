"""DP-SGD (jaxdl.privacy.dpsgd, task dp_classify) and its accounting (jaxdl.privacy.accounting, evaluator privacy).

References: per-example gradients one example at a time with jax.grad; the clipped noiseless gradient summed by
hand; the noise std against its closed form σC/B over many draws; ε against two independent computations (the
exact (ε, δ) curve of the Gaussian mechanism, Balle & Wang 2018, for q = 1; Mironov et al. 2019's binomial
expansion of the sampled Gaussian's Rényi divergence at integer orders with the RDP → (ε, δ) conversion)."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy import optimize, special, stats

from jaxdl import config as config_lib
from jaxdl.privacy import accounting, dpsgd


def tiny_problem(n=12, seed=0):
    """A 2-layer tanh network on random data: params {w1 [6, 8], w2 [8, 4]}, x [n, 6], y [n] in [0, 4)."""
    rng = np.random.default_rng(seed)
    params = {"w1": jnp.asarray(rng.normal(size=(6, 8)), jnp.float32), "w2": jnp.asarray(rng.normal(size=(8, 4)))}
    params["w2"] = params["w2"].astype(jnp.float32)
    x = jnp.asarray(rng.normal(size=(n, 6)) * 3, jnp.float32)
    y = jnp.asarray(rng.integers(0, 4, n), jnp.int32)
    apply = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
    return params, x, y, dpsgd.xent_example_loss(apply)


def test_per_example_clipping_matches_one_by_one():
    params, x, y, loss = tiny_problem()
    grads = dpsgd.per_example_grads(loss, params, x, y)
    clip = 1.0
    clipped, norms = dpsgd.clip_per_example(grads, clip)
    for i in range(len(x)):
        g = jax.grad(loss)(params, x[i], y[i])  # one example alone
        flat = np.concatenate([np.ravel(v) for v in jax.tree.leaves(g)])
        np.testing.assert_allclose(float(norms[i]), np.linalg.norm(flat), rtol=1e-5)
        scale = min(1.0, clip / np.linalg.norm(flat))
        for k in g:
            np.testing.assert_allclose(np.asarray(clipped[k][i]), np.asarray(g[k]) * scale, rtol=1e-5, atol=1e-7)
    after = dpsgd.per_example_norms(clipped)
    assert float(jnp.max(after)) <= clip * (1 + 1e-5)
    assert int(jnp.sum(norms > clip)) >= 3 and int(jnp.sum(norms < clip)) >= 1  # both branches exercised


def test_dp_gradient_without_noise_is_the_clipped_sum():
    """σ = 0: the gradient of dp_objective is Σ_i w_i clip(g_i) / B (padding rows w = 0 excluded); its value is the
    mean loss of the drawn rows."""
    params, x, y, loss = tiny_problem()
    w = jnp.asarray([1.0] * 9 + [0.0] * 3)
    f = dpsgd.dp_objective(loss, clip_norm=0.5, noise_multiplier=0.0, expected_batch_size=10.0)
    key = jax.random.key_data(jax.random.key(0))
    value, grad = jax.value_and_grad(f)(params, x, y, w, key)
    expected = {k: np.zeros(v.shape) for k, v in params.items()}
    for i in range(9):
        g = jax.grad(loss)(params, x[i], y[i])
        scale = min(1.0, 0.5 / np.sqrt(sum(float(jnp.sum(v**2)) for v in g.values())))
        for k in g:
            expected[k] += np.asarray(g[k]) * scale / 10.0
    for k in params:
        np.testing.assert_allclose(np.asarray(grad[k]), expected[k], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(value), np.mean([float(loss(params, x[i], y[i])) for i in range(9)]), rtol=1e-5)


def test_noise_std_is_sigma_c_over_b():
    """Over 400 noise draws × 80 coordinates, grad - (noiseless grad) has mean 0 and std σC/B (closed form)."""
    params, x, y, loss = tiny_problem()
    w = jnp.ones(len(x))
    sigma, clip, batch = 1.3, 0.7, 12.0
    noisy = dpsgd.dp_objective(loss, clip_norm=clip, noise_multiplier=sigma, expected_batch_size=batch)
    clean = dpsgd.dp_objective(loss, clip_norm=clip, noise_multiplier=0.0, expected_batch_size=batch)
    keys = jax.vmap(lambda i: jax.random.key_data(jax.random.key(i)))(jnp.arange(400))
    draws = jax.jit(jax.vmap(lambda k: jax.grad(noisy)(params, x, y, w, k)))(keys)
    base = jax.grad(clean)(params, x, y, w, keys[0])
    noise = np.concatenate([np.reshape(draws[k] - base[k], (400, -1)) for k in params], axis=1)
    expected = sigma * clip / batch
    n = noise.size
    assert abs(noise.mean()) < 4 * expected / math.sqrt(n)
    assert abs(noise.std(ddof=1) / expected - 1) < 4 / math.sqrt(2 * n)  # std error of a sample std
    # the draws differ between keys and are independent across coordinates
    corr = np.corrcoef(noise[:, 0], noise[:, 1])[0, 1]
    assert abs(corr) < 4 / math.sqrt(400)


def exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """ε of a Gaussian mechanism with sensitivity/σ = mu at δ (Balle & Wang 2018, Thm 8):
    δ(ε) = Φ(-ε/mu + mu/2) - e^ε Φ(-ε/mu - mu/2), solved for ε."""
    d = lambda eps: stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2) - delta
    return optimize.brentq(d, 0.0, 100.0)


def test_pld_epsilon_without_sampling_matches_the_exact_gaussian():
    """q = 1, T steps of noise σ compose to one Gaussian mechanism with mu = sqrt(T)/σ; PLD is tight for it."""
    sigma, steps, delta = 4.0, 9, 1e-5
    eps = accounting.epsilon(sigma, 1.0, steps, delta, accountant="pld")
    exact = exact_gaussian_epsilon(math.sqrt(steps) / sigma, delta)
    assert exact <= eps <= exact * 1.01, (eps, exact)
    assert accounting.epsilon(sigma, 1.0, steps, delta, accountant="rdp") >= eps  # RDP is an upper bound


def rdp_sampled_gaussian(q: float, sigma: float, order: int) -> float:
    """Rényi divergence of order α (integer) of the Poisson-sampled Gaussian (Mironov et al. 2019, Sec. 3.3):
    log Σ_k C(α, k) (1-q)^(α-k) q^k exp((k² - k) / (2σ²)) / (α - 1)."""
    k = np.arange(order + 1)
    terms = (
        special.gammaln(order + 1)
        - special.gammaln(k + 1)
        - special.gammaln(order - k + 1)
        + (order - k) * math.log1p(-q)
        + k * math.log(q)
        + (k * k - k) / (2 * sigma**2)
    )
    return float(special.logsumexp(terms)) / (order - 1)


def test_rdp_epsilon_of_poisson_dpsgd_matches_an_independent_computation():
    """Abadi et al.'s MNIST setting: N = 60000, B = 256, σ = 1.1, 60 epochs (14062 steps), δ = 1e-5."""
    q, sigma, steps, delta = 256 / 60000, 1.1, 60 * 60000 // 256, 1e-5
    orders = list(range(2, 64)) + [128, 256]
    eps_by_order = []
    for a in orders:
        r = steps * rdp_sampled_gaussian(q, sigma, a)
        eps_by_order.append(r + math.log1p(-1 / a) - math.log(delta * a) / (a - 1))  # Canonne et al. 2020, Prop. 12
    independent = min(eps_by_order)
    import dp_accounting

    acc = dp_accounting.rdp.RdpAccountant(orders=orders)
    acc.compose(accounting.dpsgd_event(sigma, q, steps))
    assert acc.get_epsilon(delta) == pytest.approx(independent, rel=1e-6)
    ours = accounting.epsilon(sigma, q, steps, delta)  # default orders include fractional ones: never larger
    assert independent * 0.97 <= ours <= independent + 1e-9
    assert 2.0 < ours < 3.1  # Abadi et al. report ε ≈ 2 (moments accountant, δ = 1e-5) for this setting's family
    sigma_for_3 = accounting.noise_for_epsilon(ours, q, steps, delta)
    assert sigma_for_3 == pytest.approx(sigma, rel=5e-3)  # calibration inverts epsilon()


def dp_config(data_dir, steps=40, **task):
    c = config_lib.base()
    c.data.name, c.data.data_dir = "digits", data_dir
    c.data.eval_batch_size = 300
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (32,)})
    options = dict(name="dp_classify", dataset="digits", data_dir=data_dir, noise_multiplier=1.0, delta=1e-5)
    c.task = ml_collections.ConfigDict({**options, "expected_batch_size": 64, **task})
    c.optim.name, c.optim.lr = "momentum", 0.5
    c.train.steps, c.train.log_every = steps, steps
    c.train.eval_every = c.train.checkpoint_every = 0
    c.train.progress = False
    return c


@pytest.mark.slow
def test_dp_run_learns_and_logs_the_accountants_epsilon(data_dir, tmp_path):
    import json

    from jaxdl import tasks
    from jaxdl.train import train_and_evaluate

    final = train_and_evaluate(dp_config(data_dir), str(tmp_path), devices=jax.devices()[:1])
    task = tasks.make(dp_config(data_dir).task)
    n = task.num_examples
    assert final["eval/privacy/sampling_rate"] == pytest.approx(64 / n)
    assert final["eval/privacy/epsilon"] == pytest.approx(accounting.epsilon(1.0, 64 / n, 40, 1e-5))
    assert final["eval/accuracy"] > 0.6  # 40 noisy steps on 1,5xx digits; chance is 0.1
    with open(tmp_path / "metrics.jsonl") as f:
        train = [r for r in map(json.loads, f) if "train/loss" in r][-1]
    assert train["train/overflow"] == 0
    assert abs(train["train/batch_size"] - 64) < 4 * math.sqrt(64)  # Poisson draws around q·N


@pytest.mark.parametrize(
    "task,extra,message",
    [
        (dict(noise_multiplier=None), {}, "config.task.noise_multiplier=None: DP-SGD needs a noise multiplier"),
        (dict(delta=None), {}, r"config.task.delta=None: the δ of \(ε, δ\)-DP is required"),
        (dict(sampling="shuffle"), {}, "config.task.sampling='shuffle': the accountant assumes"),
        ({}, {"data": "mnist1d"}, "config.data.name='mnist1d' differs from config.task.dataset='digits'"),
        (dict(name="classify"), {}, "kind 'privacy' accounts DP-SGD with Poisson sampling"),
    ],
)
def test_bad_dp_configs_fail_naming_the_key(data_dir, task, extra, message):
    """Refused when the task and its evaluators are made (before data is read or a model built)."""
    from jaxdl import evaluators, tasks

    c = dp_config(data_dir, steps=1, **task)
    if task.get("name") == "classify":
        c.task = ml_collections.ConfigDict({"name": "classify"})
    c.data.name = extra.get("data", c.data.name)
    with pytest.raises(ValueError, match=message):
        ctx = evaluators.Context(c, tasks.make(c.task), None, {}, None, None, None, None, None)
        evaluators.make_all({"privacy": dict(kind="privacy")}, ctx)


def test_trainer_refuses_microbatched_dp(data_dir, tmp_path):
    """grad_accum > 1 would add the noise once per microbatch: the run stops before its first step."""
    from jaxdl.train import train_and_evaluate

    c = dp_config(data_dir, steps=1)
    c.train.grad_accum = 2
    with pytest.raises(ValueError, match="config.train.grad_accum=2: DP-SGD accounting assumes"):
        train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_optax_only_post_processes_the_private_gradient():
    """The optimizer sees g̃ only: sgd(lr) moves params by exactly -lr·g̃ (no access to per-example data)."""
    params, x, y, loss = tiny_problem()
    f = dpsgd.dp_objective(loss, clip_norm=1.0, noise_multiplier=1.0, expected_batch_size=12.0)
    key = jax.random.key_data(jax.random.key(3))
    g = jax.grad(f)(params, x, y, jnp.ones(12), key)
    tx = optax.sgd(0.1)
    upd, _ = tx.update(g, tx.init(params), params)
    for k in params:
        np.testing.assert_allclose(np.asarray(upd[k]), -0.1 * np.asarray(g[k]), rtol=1e-6)
