"""Linear-probe accuracy of frozen image features (Radford et al. 2021, section 3.2): sklearn's multinomial
LogisticRegression (L-BFGS) on the model's unnormalized image projections (`image_features`) of `train_split`
(standardized with its mean / std), scored on the evaluator's split.

Metrics: `accuracy` (all classes), and, when the dataset defines SEEN / HELD_OUT (e.g. fmnist_captions),
`seen` / `held_out` (accuracy over the test images of those classes, predictions among all classes).
"""

import importlib

import numpy as np

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator
from jaxdl.evaluators.zero_shot import Embedder


def probe_accuracy(train_x, train_y, test_x, test_y, c: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    """bool [n_test]: the probe's prediction is right, for a LogisticRegression fitted on standardized features."""
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit((train_x - mean) / std, train_y)
    return clf.predict((test_x - mean) / std) == test_y


class Evaluator(BaseEvaluator):
    """Options: `train_split` (default "probe"), `c` (inverse L2 strength), `batch_size`."""

    def __init__(self, ctx: Context, *, train_split: str = "probe", c: float = 1.0, batch_size: int = 0, **common):
        super().__init__(ctx, **common)
        if c <= 0:
            raise ValueError(f"evaluator linear_probe: c={c} must be > 0")
        self.train_split, self.c = train_split, c
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        self.embedder = Embedder(ctx)

    def run(self, params, rest) -> dict[str, float]:
        train = self.embedder.split(params, rest, self.train_split, self.batch_size)
        test = self.embedder.split(params, rest, self.split, self.batch_size)
        right = probe_accuracy(train["features"], train["label"], test["features"], test["label"], self.c)
        out = {"accuracy": float(right.mean())}
        from jaxdl.data.registry import DATASETS

        module = importlib.import_module(DATASETS[self.ctx.config.data.name][0].__module__)
        for name in ("seen", "held_out"):
            classes = getattr(module, name.upper(), None)
            if classes is not None:
                out[name] = float(right[np.isin(test["label"], classes)].mean())
        return out
