"""Trustworthy-learning runs on Fashion-MNIST with LeNet-5: standard vs PGD adversarial training, and DP-SGD.

Commands (measured on 2 CPU cores shared with other jobs, one seed; experiments/trustworthy/README.md and
results.json hold every number; `study.py` runs the arms):
    python -m jaxdl.main --config=experiments/trustworthy/config.py:standard --workdir=DIR
        457 s; test accuracy 88.4 %, PGD-20 accuracy at ε = 0.1: 4.4 %
    python -m jaxdl.main --config=experiments/trustworthy/config.py:pgd --workdir=DIR     # Madry, ε = 0.1, PGD-3
        479 s; test accuracy 75.4 %, PGD-20 accuracy at ε = 0.1: 56.7 %
    python -m jaxdl.main --config=experiments/trustworthy/config.py:dp,epsilon=3,steps=900,lr=0.1 --workdir=DIR
        633 s; ε = 2.998 (RDP, δ = 1e-5), test accuracy 80.9 %  (dp,epsilon=2: 300 steps, 176 s, 74.6 %)
    python -m jaxdl.main --config=experiments/trustworthy/config.py:dp,epsilon=3,epochs=1,batch=1024,clip=0.1,act=tanh,lr=8 \
        --workdir=DIR   # Papernot et al.'s knobs, lr chosen on the validation split (add `val`)
        244-409 s on a loaded machine; ε = 2.990, test accuracy 77.1 / 78.4 % (seeds 0 / 1)
    python -m jaxdl.main --config=experiments/trustworthy/config.py:dp,epsilon=3,epochs=5,batch=1024,clip=0.1,act=tanh,lr=4 \
        --workdir=DIR   # 5 epochs: 3,059 s on a loaded machine; ε = 2.991, test accuracy 84.6 % (seed 0)
    python -m jaxdl.main --config=experiments/trustworthy/config.py:audit --workdir=DIR   # MovieLens bias audit
        34 s; test RMSE 0.974, gender RMSE gap 0.092
    python -m jaxdl.main --config=experiments/trustworthy/config.py:explain --workdir=DIR  # (explain_vit: a ViT)
        saliency / IG / randomization check on 32 test images (explain.py runs both; numbers in explain.json)
Args: `standard|pgd|dp|audit|fedavg|fedsgd|explain|explain_vit`, `steps=N` (0: the arm's default), `epsilon=E`
(dp: the target ε at δ = 1e-5; the noise multiplier is calibrated by dp-accounting's RDP accountant for exactly
this run's q and steps), `seed=S`, `lr=L` (dp: the SGD-momentum lr, default 0.5), dp only: `clip=C` (1.0),
`batch=B` (expected Poisson batch, 256), `epochs=E` (> 0: steps = round(E·N/B)), `act=relu|tanh`, `val` (train on
the first 55,000 train images, evaluate on the last 5,000); `smoke`.
standard and pgd are evaluated by PGD-20 and FGSM (L∞, pixel-unit ε, the first 1,000 test images); dp by clean
accuracy and `privacy`. Steps: standard 1200, pgd 500 (each step costs 1 + 3 attack passes), dp 300.
"""

import ml_collections

from jaxdl import config as config_lib

EVAL_EPSILONS = (0.025, 0.05, 0.1, 0.15, 0.2)
DP_DELTA = 1e-5
DP_BATCH = 256  # expected Poisson batch size (q = 256 / 60000)
TRAIN_SIZE = 60000
EXPLAIN_STEPS = 600
VAL_TRAIN_SIZE = 55000  # fashion_mnist_val's train split (its validation split: the last 5,000 train images)


def get_config(arg: str = "standard") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(
        arg,
        arm=("standard", "pgd", "dp", "audit", "fedavg", "fedsgd", "explain", "explain_vit"),
        steps=0,
        epsilon=2.0,
        seed=0,
        lr=0.0,
        noniid=bool,
        clip=1.0,
        batch=DP_BATCH,
        epochs=0.0,
        act="relu",
        val=bool,
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
        a.steps
        or {"standard": 1200, "pgd": 500, "dp": 300, "audit": 1200, "fedavg": 100, "fedsgd": 100}.get(a.arm)
        or EXPLAIN_STEPS
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
        dp(c, a)
    if a.arm in ("explain", "explain_vit"):
        explain(c, a.arm, a.smoke)
    if a.arm == "audit":
        audit(c)
    if a.arm in ("fedavg", "fedsgd"):
        federated(c, a.arm, a.noniid, a.lr)
    return config_lib.shrink_for_smoke(c) if a.smoke else c


def dp(c: ml_collections.ConfigDict, a) -> None:
    """DP-SGD arm: LeNet-5 (`act` relu | tanh), Poisson batches of expected size `batch`, clipping norm `clip`, SGD
    momentum 0.9 at lr `lr` (default 0.5), `epochs` (> 0: steps = round(epochs · N / batch)) or `steps`; σ is
    calibrated by dp-accounting's RDP accountant for this run's exact q = batch / N and steps at ε = `epsilon`,
    δ = 1e-5. `val`: train on `fashion_mnist_val` (the first 55,000 train images) and evaluate on its validation
    split (the last 5,000), for choosing hyper-parameters without the test set."""
    from jaxdl.privacy import accounting

    dataset = "fashion_mnist_val" if a.val else "fashion_mnist"
    n = VAL_TRAIN_SIZE if a.val else TRAIN_SIZE
    if a.act not in ("relu", "tanh"):
        raise ValueError(f"dp arm: act={a.act!r} is not one of ('relu', 'tanh') (LeNet's activation)")
    if a.batch < 1 or a.batch > n or not a.clip > 0 or a.epochs < 0:
        raise ValueError(f"dp arm: batch={a.batch} must be in [1, {n}], clip={a.clip} > 0, epochs={a.epochs} >= 0")
    if a.epochs:
        c.train.steps = max(1, round(a.epochs * n / a.batch))
    c.data.name = dataset
    if a.val:
        c.data.eval_split = "validation"
    c.model.activation = a.act
    steps = min(c.train.steps, 30) if a.smoke else c.train.steps  # the run's own steps (smoke: 30)
    sigma = accounting.noise_for_epsilon(a.epsilon, a.batch / n, steps, DP_DELTA)
    c.task = ml_collections.ConfigDict(
        dict(
            name="dp_classify",
            dataset=dataset,
            noise_multiplier=round(sigma, 4),
            delta=DP_DELTA,
            clip_norm=a.clip,
            expected_batch_size=a.batch,
        )
    )
    c.optim.name, c.optim.lr, c.optim.schedule = "momentum", a.lr or 0.5, "constant"  # momentum 0.9
    c.optim.weight_decay = 0.0
    # attacks on the DP models are not part of this study (CPU budget): clean accuracy and ε only
    c.evals = ml_collections.ConfigDict({"main": dict(kind="classify"), "privacy": dict(kind="privacy", every=0)})


def explain(c: ml_collections.ConfigDict, arm: str, smoke: bool) -> None:
    """Explanations (`attributions` evaluator) of a LeNet-5 (`explain`: AdamW 2e-3, 600 steps) or a small ViT
    (`explain_vit`: patch 4 -> 49 patches + class token, dim 48, depth 3, 3 heads; the same optimizer and steps) on
    the first 32 Fashion-MNIST test images: saliency, IG (m = 64, trapezoid, black baseline), the cascading
    randomization check (LeNet: head, fc2, fc1, conv2, conv1; ViT: head, norm, blocks, then the embeddings), and
    the class token's attention rollout for the ViT."""
    cascade = ("head", "fc2", "fc1", "conv2", "conv1")
    if arm == "explain_vit":
        c.model = ml_collections.ConfigDict(
            dict(name="vit", patch=4, dim=48, depth=3, heads=3, mlp_dim=96, pool="cls", attention_impl="xla")
        )
        cascade = ("head", "norm", "blocks", "pos", "embed")
    c.evals = ml_collections.ConfigDict(
        {
            "main": dict(kind="classify"),
            "explain": dict(
                kind="attributions", num_examples=8 if smoke else 32, panels=6, steps=64, cascade=cascade, every=0
            ),
        }
    )


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
