"""A short run of the real trainer for model tests: a tiny config on a registered dataset, its final eval metrics
and the logged training losses."""

import json

import jax
import ml_collections

from jaxdl import config as config_lib
from jaxdl.train import train_and_evaluate


def short_run(
    workdir,
    data_dir,
    *,
    data: str,
    model: dict,
    steps: int,
    log_every: int,
    batch: int,
    eval_batch: int,
    lr: float,
    task: str = "classify",
    devices=None,
):
    """(final eval metrics, train losses at each log step) of `steps` Adam steps of `model` on `data`, on `devices`
    (default: one)."""
    c = config_lib.base()
    c.data.name, c.data.data_dir = data, data_dir
    c.data.batch_size, c.data.eval_batch_size = batch, eval_batch
    c.model = ml_collections.ConfigDict(model)
    c.task.name = task
    c.optim.name, c.optim.lr = "adam", lr
    c.train.steps, c.train.log_every = steps, log_every
    c.train.eval_every = c.train.checkpoint_every = 0
    c.train.progress = False
    final = train_and_evaluate(c, str(workdir), devices=devices or jax.devices()[:1])
    with open(workdir / "metrics.jsonl") as f:
        losses = [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]
    return final, losses
