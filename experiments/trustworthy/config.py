"""Trustworthy-learning runs on Fashion-MNIST with LeNet-5: standard vs PGD adversarial training, and DP-SGD.

Commands (measured on 2 CPU cores shared with other jobs, one seed; experiments/trustworthy/README.md and
results.json hold every number; `study.py` runs the arms):
    python -m jaxdl.main --config=experiments/trustworthy/config.py:standard --workdir=DIR
        457 s; test accuracy 88.4 %, PGD-20 accuracy at ε = 0.1: 4.4 %
    python -m jaxdl.main --config=experiments/trustworthy/config.py:pgd --workdir=DIR     # Madry, ε = 0.1, PGD-3
        479 s; test accuracy 75.4 %, PGD-20 accuracy at ε = 0.1: 56.7 %
    python -m jaxdl.main --config=experiments/trustworthy/config.py:dp,epsilon=3,steps=900,lr=0.1 --workdir=DIR
        633 s; ε = 2.998 (RDP, δ = 1e-5), test accuracy 80.9 %  (dp,epsilon=2: 300 steps, 176 s, 74.6 %)
    python -m jaxdl.main --config=experiments/trustworthy/config.py:audit --workdir=DIR   # MovieLens bias audit
        34 s; test RMSE 0.974, gender RMSE gap 0.092
Args: `standard|pgd|dp|audit`, `steps=N` (0: the arm's default), `epsilon=E` (dp: the target ε at δ = 1e-5; the
noise multiplier is calibrated by dp-accounting's RDP accountant for exactly this run's q and steps), `seed=S`,
`lr=L` (dp: the SGD-momentum lr, default 0.5), `smoke`.
standard and pgd are evaluated by PGD-20 and FGSM (L∞, pixel-unit ε, the first 1,000 test images); dp by clean
accuracy and `privacy`. Steps: standard 1200, pgd 500 (each step costs 1 + 3 attack passes), dp 300.
"""

import ml_collections

from jaxdl import config as config_lib

EVAL_EPSILONS = (0.025, 0.05, 0.1, 0.15, 0.2)
DP_DELTA = 1e-5
DP_BATCH = 256  # expected Poisson batch size (q = 256 / 60000)
TRAIN_SIZE = 60000


def get_config(arg: str = "standard") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(
        arg,
        arm=("standard", "pgd", "dp", "audit", "fedavg", "fedsgd"),
        steps=0,
        epsilon=2.0,
        seed=0,
        lr=0.0,
        noniid=bool,
    )
    c = config_lib.base()
    c.seed = a.seed
    c.data.name = "fashion_mnist"
    c.data.batch_size = 128
    c.data.eval_batch_size = 500
    c.model = ml_collections.ConfigDict({"name": "lenet"})
    c.optim.name = "adamw"
    c.optim.lr = 2e-3
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 50
    c.train.steps = (
        a.steps or {"standard": 1200, "pgd": 500, "dp": 300, "audit": 1200, "fedavg": 100, "fedsgd": 100}[a.arm]
    )
    c.train.log_every = 100
    c.train.eval_every = 0
    c.train.checkpoint_every = 0
    c.train.progress = False
    attack = dict(
        kind="robustness", epsilons=EVAL_EPSILONS, norm="linf", max_examples=100 if a.smoke else 1000, every=0
    )
    c.evals = ml_collections.ConfigDict(
        {"main": dict(kind="classify"), "pgd": dict(attack, steps=20), "fgsm": dict(attack, attack="fgsm")}
    )
    if a.arm == "pgd":
        c.task = ml_collections.ConfigDict(
            dict(name="adversarial", input_space="fashion_mnist", epsilon=0.1, steps=3, norm="linf")
        )
    if a.arm == "dp":
        from jaxdl.privacy import accounting

        steps = min(c.train.steps, 30) if a.smoke else c.train.steps  # the run's own steps (smoke: 30)
        sigma = accounting.noise_for_epsilon(a.epsilon, DP_BATCH / TRAIN_SIZE, steps, DP_DELTA)
        c.task = ml_collections.ConfigDict(
            dict(
                name="dp_classify",
                dataset="fashion_mnist",
                noise_multiplier=round(sigma, 4),
                delta=DP_DELTA,
                clip_norm=1.0,
                expected_batch_size=DP_BATCH,
            )
        )
        c.optim.name, c.optim.lr, c.optim.schedule = "momentum", a.lr or 0.5, "constant"  # momentum 0.9
        c.optim.weight_decay = 0.0
        # attacks on the DP models are not part of this study (CPU budget): clean accuracy and ε only
        c.evals = ml_collections.ConfigDict({"main": dict(kind="classify"), "privacy": dict(kind="privacy", every=0)})
    if a.arm == "audit":
        audit(c)
    if a.arm in ("fedavg", "fedsgd"):
        federated(c, a.arm, a.noniid, a.lr)
    return config_lib.shrink_for_smoke(c) if a.smoke else c


def federated(c: ml_collections.ConfigDict, arm: str, noniid: bool, lr: float) -> None:
    """McMahan et al. 2017's setting at small scale: the 2NN (MLP 200-200), K = 100 clients of 600 examples (IID, or
    2 class shards each), 10 clients per round; FedAvg E = 5, b = 50 vs FedSGD (E = 1, b = 600: one full-batch
    gradient per client); server SGD lr 1 (θ ← client average); local lr 0.1 (arg lr=). One train step = one round;
    test accuracy every 5 rounds."""
    c.model = ml_collections.ConfigDict({"name": "mlp", "hidden": (200, 200)})
    local = dict(local_epochs=5, local_batch_size=50) if arm == "fedavg" else dict(local_epochs=1, local_batch_size=600)
    c.task = ml_collections.ConfigDict(
        dict(
            name="fedavg",
            dataset="fashion_mnist",
            clients=100,
            partition="shards" if noniid else "iid",
            clients_per_round=10,
            local_lr=lr or 0.1,
            **local,
        )
    )
    c.optim.name, c.optim.lr, c.optim.schedule, c.optim.warmup_steps, c.optim.weight_decay = (
        "sgd",
        1.0,
        "constant",
        0,
        0.0,
    )
    c.train.log_every, c.train.eval_every = 5, 5
    c.evals = ml_collections.ConfigDict({"main": dict(kind="classify")})


def audit(c: ml_collections.ConfigDict) -> None:
    """The bias-audit arm: matrix factorization (dim 16) on MovieLens-100k fold u1 (Adam 1e-2, batch 1000,
    1200 steps, L2 reg 0.05, as tests/test_recsys.py), audited by users' gender and age band on u1.test."""
    c.data.name = "movielens_u1"
    c.data.batch_size, c.data.eval_batch_size = 1000, 5000
    c.model = ml_collections.ConfigDict(dict(name="mf", num_users=943, dim=16, global_mean=3.53))
    c.task = ml_collections.ConfigDict(dict(name="rating", reg=0.05))
    c.optim.name, c.optim.lr, c.optim.schedule, c.optim.weight_decay = "adam", 1e-2, "constant", 0.0
    c.evals = ml_collections.ConfigDict(
        {
            "main": dict(kind="rating"),
            "gender": dict(kind="fairness", group="gender", every=0),
            "age": dict(kind="fairness", group="age_band", every=0),
        }
    )
