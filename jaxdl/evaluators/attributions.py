"""Explanations of an image classifier: gradient saliency, integrated gradients (IG) and, for transformer models,
attention rollout, on the first `num_examples` examples of the split; PNG panels and two checks.

    config.evals.explain = dict(kind="attributions", num_examples=32, steps=32, cascade=("head", "fc2"), every=0)

Metrics: `ig_completeness_gap` (mean |Σ IG − (f_c(x) − f_c(x'))|), `ig_completeness_rel` (that over the mean
|f_c(x) − f_c(x')|), and the sanity check of Adebayo et al. 2018 (`jaxdl.explain.sanity`): for each stage of the
cascading re-initialization (`cascade`: top-level layer names from the output down; a fresh initialization of
the model with `seed`), `sanity_<method>_<layer>` = the mean over examples of the Spearman ρ between the trained
and the randomized model's |attribution| maps, and `..._std` (sample std, n = num_examples).
Files (when the run has a workdir): `<workdir>/explain/<name>_step<step>.png` (rows = the first `panels`
examples; columns: the input, |saliency|, |IG| of the trained model, |saliency| and |IG| after the first cascade
stage, and the rollout of the class token for models that take `return_attention`) and
`<workdir>/explain/<name>_step<step>.json` (per-example ρ, completeness gaps, targets, rollout rows).

Target class: the label (`target="label"`) or the model's prediction (`"predicted"`). IG baseline: `"black"`
(pixel 0 through the dataset's normalization, `jaxdl.robust.attacks.input_space`) or `"zeros"` (0 in model units,
the mean image). Maps are summed |·| over channels for display and for ρ. The model runs with `train=False`.
"""

import inspect
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.explain import attributions as attr
from jaxdl.explain import rollout as rollout_lib
from jaxdl.explain import sanity

TARGETS = ("label", "predicted")
BASELINES = ("black", "zeros")


class Evaluator(BaseEvaluator):
    def __init__(
        self,
        ctx: Context,
        *,
        num_examples: int = 32,
        panels: int = 6,
        steps: int = 32,
        rule: str = "trapezoid",
        baseline: str = "black",
        target: str = "label",
        cascade: tuple = ("head",),
        seed: int = 1,
        name: str = "attributions",
        **common,
    ):
        super().__init__(ctx, **common)
        shape = tuple(ctx.ds_info["input_shape"])
        if len(shape) != 3:
            raise ValueError(f"attributions: image classifiers only (input_shape [H, W, C]); dataset has {shape}")
        if num_examples < 2 or not 0 <= panels <= num_examples:
            raise ValueError(f"num_examples={num_examples} must be >= 2 and panels={panels} in [0, num_examples]")
        attr.path_weights(steps, rule)  # the steps / rule errors
        if target not in TARGETS:
            raise ValueError(f"target={target!r} is not one of {TARGETS}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline={baseline!r} is not one of {BASELINES}")
        if not isinstance(cascade, list | tuple) or not cascade:
            raise ValueError(f"cascade={cascade!r}: a non-empty list of top-level layer names, output layer first")
        if baseline == "black":
            from jaxdl.robust.attacks import input_space

            self.base_value = float(input_space(ctx.config.data.name, key="config.data.name").to_model(0.0))
        else:
            self.base_value = 0.0
        self.num_examples, self.panels, self.steps, self.rule = num_examples, panels, steps, rule
        self.target, self.cascade, self.seed, self.name = target, tuple(cascade), seed, name
        model_cls = ctx.graphdef.nodes[0].type  # the root module's class
        self.has_attention = "return_attention" in inspect.signature(model_cls.__call__).parameters
        self._step = 0

        def maps(params, rest, x, target):
            """x [n, H, W, C] -> (saliency, IG, completeness gap [n], f_c(x) − f_c(x') [n])."""
            with ctx.trace_context():
                # merged inside each trace (grad, scan): nnx modules may not cross trace levels (scanned blocks)
                logit_fn = lambda z: nnx.merge(ctx.graphdef, params, rest, copy=True)(z, train=False)
                sal = attr.saliency(logit_fn, x, target)
                ig = attr.integrated_gradients(logit_fn, x, target, self.base_value, steps=steps, rule=rule)
                gap, delta = attr.completeness_gap(logit_fn, x, target, ig, self.base_value)
                return sal, ig, gap, delta

        def predict(params, rest, x):
            with ctx.trace_context():
                model = nnx.merge(ctx.graphdef, params, rest, copy=True)
                if self.has_attention:
                    logits, att = model(x, train=False, return_attention=True)
                    cls = getattr(model, "pool", "mean") == "cls"
                    return logits, rollout_lib.token_relevance(att, cls=cls)
                return model(x, train=False), jnp.zeros((x.shape[0], 0))

        self._maps, self._predict = jax.jit(maps), jax.jit(predict)

    def _fresh_params(self):
        """Parameters of a newly initialized model (seed `seed`): the re-initialization of the sanity check."""
        from jaxdl.state import builder

        build = builder(self.ctx.config, self.ctx.ds_info, self.ctx.task)
        with nnx.use_eager_sharding(False):
            return nnx.split(build(nnx.Rngs(params=jax.random.key(self.seed))), nnx.Param, ...)[1]

    def evaluate(self, state: dict) -> dict[str, float]:
        self._step = int(jax.device_get(state["step"]))
        return super().evaluate(state)

    def examples(self) -> tuple[np.ndarray, np.ndarray]:
        """The first num_examples (inputs float32 [n, H, W, C], labels int32 [n]) of the split."""
        xs, ys = [], []
        for batch in self.ctx.batches(self.split, self.num_examples):
            keep = np.asarray(jax.device_get(batch["mask"])) > 0
            xs.append(np.asarray(jax.device_get(batch["input"]))[keep])
            ys.append(np.asarray(jax.device_get(batch["label"]))[keep])
            if sum(len(x) for x in xs) >= self.num_examples:
                break
        x, y = np.concatenate(xs)[: self.num_examples], np.concatenate(ys)[: self.num_examples]
        if len(x) < 2:
            raise ValueError(f"attributions: split {self.split!r} has {len(x)} examples (need >= 2)")
        return x.astype(np.float32), y.astype(np.int32)

    def run(self, params, rest) -> dict[str, float]:
        x, labels = self.examples()
        logits, relevance = self._predict(params, rest, x)
        target = labels if self.target == "label" else np.asarray(jnp.argmax(logits, -1), np.int32)
        fresh = self._fresh_params()
        cache = {}

        def attribute(p):  # both methods' maps under params p, summed |.| over channels: [n, H, W] each
            key = id(p)
            if key not in cache:
                sal, ig, gap, delta = jax.device_get(self._maps(p, rest, x, target))
                cache[key] = (np.abs(sal).sum(-1), np.abs(ig).sum(-1), gap, delta)
            return cache[key]

        sal, ig, gap, delta = attribute(params)
        out = {
            "ig_completeness_gap": float(np.mean(np.abs(gap))),
            "ig_completeness_rel": float(np.mean(np.abs(gap)) / max(np.mean(np.abs(delta)), 1e-12)),
        }
        record = {"target": target.tolist(), "completeness_gap": gap.tolist(), "delta": delta.tolist(), "rho": {}}
        if relevance.shape[1]:
            record["rollout"] = np.asarray(relevance).tolist()  # [n, patches]: the class token's rollout row
        randomized = []
        for k in range(len(self.cascade)):
            p = sanity.randomize(params, fresh, self.cascade[: k + 1])
            randomized.append(attribute(p))
        for m, method in enumerate(("saliency", "ig")):
            for layer, maps in zip(self.cascade, randomized, strict=True):
                rho = sanity.spearman([sal, ig][m], maps[m])
                out[f"sanity_{method}_{layer}"] = float(np.mean(rho))
                out[f"sanity_{method}_{layer}_std"] = float(np.std(rho, ddof=1))
                record["rho"][f"{method}_{layer}"] = rho.tolist()
        if self.ctx.workdir:
            folder = os.path.join(self.ctx.workdir, "explain")
            os.makedirs(folder, exist_ok=True)
            stem = os.path.join(folder, f"{self.name}_step{self._step}")
            with open(stem + ".json", "w") as f:
                json.dump(dict(record, step=self._step, examples=len(x)), f)
            if self.panels:
                columns = {"|saliency|": sal, "|IG|": ig}
                columns[f"|saliency|, {self.cascade[0]} re-init"] = randomized[0][0]
                columns[f"|IG|, {self.cascade[0]} re-init"] = randomized[0][1]
                if relevance.shape[1]:
                    columns["rollout"] = upsample(np.asarray(relevance), x.shape[1:3])
                save_panels(stem + ".png", x[: self.panels], columns, self.panels, labels=target)
        out["examples"] = float(len(x))
        return out


def upsample(tokens: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Patch relevance [n, (H/p)(W/p)] (row-major patches) -> [n, H, W] by repeating each patch's value."""
    n, t = tokens.shape
    side = int(round(t**0.5))
    if side * side != t or size[0] % side or size[1] % side:
        raise ValueError(f"rollout: {t} tokens do not tile a {size} image as a square grid of patches")
    grid = tokens.reshape(n, side, side)
    return np.repeat(np.repeat(grid, size[0] // side, axis=1), size[1] // side, axis=2)


def save_panels(path: str, images: np.ndarray, columns: dict, rows: int, labels=None) -> str:
    """A PNG grid: one row per image, the image (min-max scaled, gray) then one heat map per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 1 + len(columns)
    fig, axes = plt.subplots(rows, ncol, figsize=(1.6 * ncol, 1.6 * rows), squeeze=False)
    for i in range(rows):
        im = images[i]
        im = (im - im.min()) / max(float(im.max() - im.min()), 1e-12)
        axes[i, 0].imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray")
        if labels is not None:
            axes[i, 0].set_ylabel(f"class {int(labels[i])}", fontsize=7)
        for j, (title, maps) in enumerate(columns.items(), start=1):
            axes[i, j].imshow(maps[i], cmap="inferno")
            if i == 0:
                axes[i, j].set_title(title, fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
