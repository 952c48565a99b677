"""Explicit rating regression (MovieLens u1..u5 folds): loss = mean over the batch of (r_hat - r)^2 +
`reg` * model.l2(user, item) (Surprise's SVD objective: squared error plus L2 on the biases and factors each
rating uses). Batches: "input" user int32 [B], "item" int32 [B], "label" rating float32 [B]; other keys (side
features) go to the model. Metrics: loss, mse. Default evaluator: `rating` (RMSE, MAE on config.data.eval_split).
Models: `jaxdl.models.recsys` (mf)."""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.tasks.base import Task as BaseTask


class Task(BaseTask):
    batch_keys = ("input", "item", "label")

    def __init__(self, reg: float = 0.02):
        if reg < 0:
            raise ValueError(f"config.task.reg={reg} must be >= 0")
        self.reg = reg

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        pred = model(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        mse = jnp.mean((pred - batch["label"]) ** 2)
        l2 = jnp.mean(model.l2(batch["input"], batch["item"][:, None])) if self.reg else 0.0
        return mse + self.reg * l2, {"mse": mse}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="rating")}
