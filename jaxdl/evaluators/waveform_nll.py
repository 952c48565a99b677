"""Test negative log-likelihood of a waveform model in bits per sample over the 256 μ-law codes, beside two
baselines scored on exactly the same samples (the `waveform` task's held-out files):

- `lpc_bits_per_sample`: linear prediction of order `lpc_order` (x̂_t = Σ_k a_k x_{t−k} on the μ-law-decoded
  waveform the model also sees), coefficients fit by least squares on the train files, residual Gaussian
  N(x̂_t, σ²) with σ² the train residual variance, discretized onto the μ-law bins (`jaxdl.audio.mulaw.bin_edges`):
  P(code c) = Φ((e_{c+1} − x̂)/σ) − Φ((e_c − x̂)/σ). Least squares and the discretization are a few lines of numpy /
  scipy (no kept library fits an order-p predictor by least squares on many files and scores it on a code grid).
- `lpc_adaptive_bits_per_sample`: the same predictor with a causal, time-varying σ_t² = mean of its squared
  residuals over the previous `W` samples + floor² (speech is loud and silent in turns; one σ fits neither), W and
  floor chosen on the train files from ADAPT_WINDOWS × ADAPT_FLOORS (reported as `lpc_adaptive_window/floor`).
- `unigram_bits_per_sample`: the train codes' frequencies (add-one), ignoring context; `train_entropy_bits` is the
  entropy of the train code histogram itself.

Scored samples: each test file is cut into windows of `window` samples whose first `warmup` targets are context
only; windows advance by `window − warmup`, so the scored regions tile every file from sample ≈ `warmup` to its
end (a last window aligned to the end scores only what the previous ones left), each sample scored once.
Metrics: `bits_per_sample` (the model), `lpc_bits_per_sample`, `unigram_bits_per_sample`, `train_entropy_bits`,
`accuracy` (argmax code), `samples` (how many were scored).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.audio import mulaw
from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator

LN2 = float(np.log(2.0))
ADAPT_WINDOWS = (10, 20, 40, 80, 160, 640)  # samples (1.25 … 80 ms at 8 kHz)
ADAPT_FLOORS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)  # amplitude; the μ-law bins around 0 are ~1.7e-4 wide


# --------------------------------------------------------------------------------------------- LPC baseline
def lpc_fit(signals: list[np.ndarray], order: int, max_rows: int = 400_000) -> tuple[np.ndarray, float]:
    """(a float64 [order], σ) of x_t ≈ Σ_k a[k−1] x_{t−k} fit by least squares over the positions t ≥ order of every
    signal (float [T_i] each; an evenly spaced subset of at most `max_rows` rows), σ the residual RMS there."""
    if order < 1:
        raise ValueError(f"lpc_order={order} must be >= 1")
    signals = [np.asarray(s, np.float64) for s in signals if len(s) > order]
    if not signals:
        raise ValueError(f"lpc_fit: no signal is longer than the order {order}")
    sizes = np.array([len(s) - order for s in signals])
    total = int(sizes.sum())
    keep = np.linspace(0, total - 1, min(max_rows, total)).astype(np.int64)  # rows of the concatenated design
    which = np.searchsorted(np.cumsum(sizes), keep, side="right")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    lag_rows, targets = [], []
    for i in np.unique(which):  # only the kept rows are ever built (the full design would be GBs)
        t = order + keep[which == i] - starts[i]  # positions in signal i
        lag_rows.append(signals[i][t[:, None] - np.arange(1, order + 1)[None, :]])
        targets.append(signals[i][t])
    lags, target = np.concatenate(lag_rows), np.concatenate(targets)
    a, *_ = np.linalg.lstsq(lags, target, rcond=None)
    sigma = float(np.sqrt(np.mean((lags @ a - target) ** 2)))
    return a, max(sigma, 1e-8)


def gaussian_code_logprob(mean: np.ndarray, sigma: float, codes: np.ndarray) -> np.ndarray:
    """float64 [...]: log P(code) of N(mean, σ²) integrated over each code's μ-law bin (tails into the end bins).

    Computed as log(Φ(b) − Φ(a)) in whichever tail keeps it accurate (Φ(b) − Φ(a) = Φ(−a) − Φ(−b))."""
    from scipy.special import log_ndtr

    edges = mulaw.bin_edges()
    codes = np.asarray(codes, np.int64)
    a, b = (edges[codes] - mean) / sigma, (edges[codes + 1] - mean) / sigma
    flip = a > 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)  # Φ(hi) − Φ(lo) with lo < hi, lo ≤ 0
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    return log_hi + np.log(-np.expm1(log_lo - log_hi))


def residual_scale(x: np.ndarray, a: np.ndarray, window: int, floor: float) -> np.ndarray:
    """float64 [T]: σ_t = sqrt(mean of the squared LPC residuals e[t − window … t − 1] + floor²), causal (NaN for
    t < order + window) of a signal x float [T] and LPC coefficients a [order]."""
    order = len(a)
    e = np.zeros(len(x))
    t = np.arange(order, len(x))
    e[order:] = x[order:] - x[t[:, None] - np.arange(1, order + 1)[None, :]] @ a
    c = np.concatenate([[0.0], np.cumsum(e**2)])
    out = np.full(len(x), np.nan)
    t = np.arange(order + window, len(x))
    out[t] = np.sqrt((c[t] - c[t - window]) / window + floor**2)
    return out


def lpc_nll(x: np.ndarray, codes: np.ndarray, a: np.ndarray, sigma, positions: np.ndarray) -> np.ndarray:
    """float64 [len(positions)]: −log P(codes[t]) under N(Σ_k a_k x[t − k], σ²) on the μ-law bins; σ a float or a
    per-sample float64 [T] (`residual_scale`)."""
    order = len(a)
    mean = x[positions[:, None] - np.arange(1, order + 1)[None, :]] @ a
    s = sigma[positions] if isinstance(sigma, np.ndarray) else sigma
    return -gaussian_code_logprob(mean, s, codes[positions])


def fit_adaptive(
    signals: list[np.ndarray], codes: list[np.ndarray], a: np.ndarray, windows, floors, stride: int = 13
) -> tuple[int, float]:
    """(window, floor) of `residual_scale` with the least NLL on every `stride`-th position of the given (train)
    signals (decoded float [T_i]) and their codes."""
    best = None
    for w in windows:
        for f in floors:
            total = n = 0.0
            for x, c in zip(signals, codes, strict=True):
                pos = np.arange(len(a) + max(windows), len(x), stride)
                if len(pos):
                    total += lpc_nll(x, c, a, residual_scale(x, a, w, f), pos).sum()
                    n += len(pos)
            if n and (best is None or total / n < best[0]):
                best = (total / n, w, f)
    if best is None:
        raise ValueError(f"fit_adaptive: no signal is longer than order + window = {len(a) + max(windows)}")
    return best[1], best[2]


# --------------------------------------------------------------------------------------------- evaluator
class Evaluator(BaseEvaluator):
    """Options: window (samples per scored window, a multiple of the task's hop), warmup (context targets per
    window, not scored; ≥ lpc_order), batch_size (windows per forward pass), lpc_order, max_windows (0: all)."""

    def __init__(
        self,
        ctx: Context,
        *,
        window: int = 4000,
        warmup: int = 1040,
        batch_size: int = 8,
        lpc_order: int = 16,
        max_windows: int = 0,
        **common,
    ):
        super().__init__(ctx, **common)
        task = ctx.task
        if not hasattr(task, "waves"):
            raise ValueError(f"evaluator waveform_nll needs the `waveform` task, not {ctx.config.task.name!r}")
        if window % task.hop or not 0 <= warmup < window or warmup < lpc_order + min(ADAPT_WINDOWS):
            raise ValueError(
                f"evaluator waveform_nll: window={window} must be a multiple of hop={task.hop} and "
                f"lpc_order={lpc_order} + {min(ADAPT_WINDOWS)} (the adaptive LPC's residual window) <= "
                f"warmup={warmup} < window"
            )
        if (window - warmup) % task.hop:
            raise ValueError(f"evaluator waveform_nll: window - warmup = {window - warmup} must be a multiple of hop")
        self.window, self.warmup, self.batch_size, self.lpc_order = window, warmup, batch_size, lpc_order
        self.max_windows = max_windows
        self.split = self.split if self.split in ("train", "test") else "test"
        self._baselines = None
        graphdef = ctx.graphdef
        replicated = NamedSharding(ctx.mesh, PartitionSpec())

        def nll_sums(params, rest, batch):
            from flax import nnx

            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                logits = model(batch["input"], **task.model_inputs(batch))
            logp = jax.nn.log_softmax(logits, -1)
            nll = -jnp.take_along_axis(logp, batch["label"][..., None], -1)[..., 0]
            w = batch["score"]
            correct = (jnp.argmax(logits, -1) == batch["label"]) * w
            return jnp.sum(nll * w), jnp.sum(correct), jnp.sum(w)

        self._sums = jax.jit(
            nll_sums,
            in_shardings=(ctx.param_sharding, ctx.rest_sharding, replicated),
            out_shardings=(replicated,) * 3,
        )

    def windows(self) -> list[tuple[int, int, int]]:
        """(file, first target frame f0, first scored target in the window) of every window of the split."""
        task, hop = self.ctx.task, self.ctx.task.hop
        out = []
        for i, n in enumerate(self.ctx.task.waves(self.split).lengths):
            last = (int(n) - self.window) // hop  # the largest f0 with f0·hop + window <= n
            if last < 1:
                continue
            f0, scored_to = 1, 0  # scored_to: the first sample (in the file) not yet scored
            while True:
                start = f0 * hop
                out.append((i, f0, max(self.warmup, scored_to - start)))
                scored_to = start + self.window
                if f0 == last:
                    break
                f0 = min(f0 + (self.window - self.warmup) // hop, last)
        del task
        return out[: self.max_windows] if self.max_windows else out

    def baselines(self, windows: list[tuple[int, int, int]]) -> dict[str, float]:
        """LPC and unigram bits per sample on the scored samples of `windows`, and the train code entropy."""
        task = self.ctx.task
        train, test = task.waves("train"), task.waves(self.split)
        counts = np.bincount(train.codes, minlength=mulaw.MU + 1).astype(np.float64)
        p = counts / counts.sum()
        entropy = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
        log_unigram = np.log((counts + 1) / (counts.sum() + len(counts)))
        train_codes = [train.file_codes(i) for i in range(len(train.paths))]
        decoded = [np.asarray(mulaw.decode(c), np.float64) for c in train_codes]
        a, sigma = lpc_fit(decoded, self.lpc_order)
        adapt = [w for w in ADAPT_WINDOWS if w <= self.warmup - self.lpc_order]
        w, floor = fit_adaptive(decoded, train_codes, a, adapt, ADAPT_FLOORS)
        fixed = adaptive = uni = count = 0.0
        by_file: dict[int, list[np.ndarray]] = {}
        for i, f0, first in windows:  # scored targets (file positions)
            by_file.setdefault(i, []).append(f0 * task.hop + np.arange(first, self.window))
        for i, chunks in by_file.items():
            codes, t = test.file_codes(i), np.concatenate(chunks)
            x = np.asarray(mulaw.decode(codes), np.float64)
            fixed += lpc_nll(x, codes, a, sigma, t).sum()
            adaptive += lpc_nll(x, codes, a, residual_scale(x, a, w, floor), t).sum()
            uni -= log_unigram[codes[t]].sum()
            count += len(t)
        return {
            "lpc_bits_per_sample": float(fixed / count / LN2),
            "lpc_adaptive_bits_per_sample": float(adaptive / count / LN2),
            "unigram_bits_per_sample": float(uni / count / LN2),
            "train_entropy_bits": entropy,
            "lpc_sigma": sigma,
            "lpc_adaptive_window": float(w),
            "lpc_adaptive_floor": floor,
        }

    def run(self, params, rest) -> dict[str, float]:
        task = self.ctx.task
        windows = self.windows()
        if not windows:
            raise ValueError(f"evaluator waveform_nll: no {self.split} file is longer than window={self.window}")
        if self._baselines is None:
            self._baselines = self.baselines(windows)
        nll = correct = count = 0.0
        for b in range(0, len(windows), self.batch_size):
            chunk = windows[b : b + self.batch_size]
            pad = self.batch_size - len(chunk)
            files = np.array([w[0] for w in chunk] + [chunk[0][0]] * pad)
            frames = np.array([w[1] for w in chunk] + [chunk[0][1]] * pad)
            batch = task.fetch(self.split, files, frames, crop=self.window)
            first = np.array([w[2] for w in chunk] + [self.window] * pad)  # padding rows score nothing
            batch["score"] = (np.arange(self.window)[None, :] >= first[:, None]).astype(np.float32)
            s = jax.device_get(self._sums(params, rest, batch))
            nll, correct, count = nll + float(s[0]), correct + float(s[1]), count + float(s[2])
        return {
            "bits_per_sample": nll / count / LN2,
            "accuracy": correct / count,
            "samples": count,
            **self._baselines,
        }
