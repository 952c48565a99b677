"""Autoregressive waveform modelling (WaveNet): next-sample cross-entropy over 256 μ-law codes of crops of real
recorded speech, optionally conditioned on log-mel frames (a vocoder).

    config.task = dict(name="waveform", batch_size=16, crop=4000, conditioned=False)
    config.model = dict(name="wavenet", ...)      # cond_channels = n_mels, hop = hop when conditioned
    config.data.name = ""                         # the task reads the audio itself (below)

Data: the Asterisk prompts (`jaxdl.data.asterisk.corpus`: one professional speaker, 8 kHz 16-bit mono, Debian
`asterisk-core-sounds-en-wav`), split by file with `jaxdl.data.asterisk.split_names` (the test files are the
held-out prompts of the ASR study). Every file is read once (`jaxdl.audio.wav.read_wav`: a wrong rate / channel
count / width raises naming the file), μ-law encoded (`jaxdl.audio.mulaw`) and, when `conditioned`, turned into
log-mel frames (`jaxdl.audio.features.log_mel`, hop `hop`: frame f is centred on sample f·hop) standardised per
band with the train split's mean / std.

Batches are made inside the step (`produces_batches`): from the step's key, `batch_size` crops are drawn (a file
with probability ∝ its number of crop positions, then a uniform position on the frame grid) and fetched from the
host arrays by `jax.pure_callback`, so a batch is a pure function of (seed, step) and resume is exact:
    input int32 [batch, crop]   codes x[s − 1 … s + crop − 2]      (the model sees the previous sample)
    label int32 [batch, crop]   codes x[s … s + crop − 1]          (targets; s = f0 · hop)
    cond float32 [batch, crop // hop, n_mels]  frames f0 … f0 + crop/hop − 1 (frame f conditions targets f·hop …)
Loss: mean cross-entropy (nats) over all targets; metrics `bits_per_sample` (= loss / ln 2) and `accuracy`.
Default evaluator: `waveform_nll` (test NLL in bits per sample beside an LPC and a unigram baseline).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdl.audio import mulaw
from jaxdl.tasks.base import Task as BaseTask

NUM_CLASSES = mulaw.MU + 1


@dataclasses.dataclass
class Waves:
    """One split's audio, concatenated: codes uint8 [total samples], per-file `offsets` / `lengths` (samples), and
    when conditioned the standardised log-mel frames float32 [total frames, n_mels] with `frame_offsets`."""

    paths: list[str]
    codes: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    mels: np.ndarray | None = None
    frame_offsets: np.ndarray | None = None

    def file_codes(self, i: int) -> np.ndarray:
        return self.codes[self.offsets[i] : self.offsets[i] + self.lengths[i]]


def _log_mels(audio: np.ndarray, n_mels: int, hop: int) -> np.ndarray:
    """log_mel frames float32 [1 + len // hop, n_mels] of one file. The waveform is zero padded to a whole number of
    seconds first (few distinct shapes to compile); the centred STFT pads with zeros anyway, so the kept frames are
    exactly those of the unpadded file."""
    from jaxdl.audio.features import log_mel

    n = len(audio)
    padded = np.zeros(-(-n // 8000) * 8000, np.float32)
    padded[:n] = audio
    frames = _jit_log_mel(log_mel, n_mels, hop)(jnp.asarray(padded))
    return np.asarray(frames)[: 1 + n // hop]


@functools.cache
def _jit_log_mel(fn, n_mels: int, hop: int):
    return jax.jit(lambda x: fn(x, sample_rate=8000, hop=hop, n_mels=n_mels))


class Task(BaseTask):
    produces_batches = True
    batch_keys = ("input", "label")
    not_model_inputs = (*BaseTask.not_model_inputs, "score")  # score: the evaluator's per-target weights

    def __init__(
        self,
        *,
        batch_size: int = 16,
        crop: int = 4000,
        conditioned: bool = False,
        n_mels: int = 40,
        hop: int = 80,
        root: str = "",
        max_files: int = 0,
    ):
        """batch_size: crops per step; crop: target samples per crop (a multiple of hop); conditioned: add log-mel
        frames `cond`; n_mels / hop: their bands and samples per frame; root: the WAV directory (default: Debian's,
        see jaxdl.data.asterisk); max_files: use only the first N files of each split (0: all; for tests)."""
        super().__init__()
        if batch_size < 1 or crop < 1 or hop < 1 or n_mels < 1 or max_files < 0:
            raise ValueError(
                f"config.task: batch_size={batch_size}, crop={crop}, hop={hop}, n_mels={n_mels} must be >= 1 and "
                f"max_files={max_files} >= 0"
            )
        if crop % hop:
            raise ValueError(f"config.task.crop={crop} must be a multiple of config.task.hop={hop} (whole frames)")
        self.batch_size, self.crop, self.conditioned = batch_size, crop, conditioned
        self.n_mels, self.hop, self.root, self.max_files = n_mels, hop, root, max_files
        self._waves: dict[str, Waves] = {}
        self._mel_stats: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------------------------------ the data
    def data_info(self, config) -> dict:
        return {
            "input_shape": (self.crop,),
            "num_classes": NUM_CLASSES,
            "label_key": "label",
            "splits": {s: len(self.waves(s).paths) for s in ("train", "test")},
        }

    def waves(self, split: str) -> Waves:
        """The split's audio (read once per task; train first, for the log-mel statistics)."""
        if split not in ("train", "test"):
            raise ValueError(f"waveform task: split {split!r} is not 'train' or 'test'")
        if split not in self._waves:
            from jaxdl.audio.wav import read_wav
            from jaxdl.data import asterisk

            items = asterisk.corpus(self.root or None)
            indices = asterisk.split_names(items)[split]
            if self.max_files:
                indices = indices[: self.max_files]
            paths = [items[i][0] for i in indices]
            audio = [read_wav(p, asterisk.SAMPLE_RATE) for p in paths]
            lengths = np.array([len(a) for a in audio], np.int64)
            waves = Waves(
                paths=paths,
                codes=np.concatenate([np.asarray(mulaw.encode(a), np.uint8) for a in audio]),
                offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
                lengths=lengths,
            )
            if self.conditioned:
                mels = [_log_mels(a, self.n_mels, self.hop) for a in audio]
                frames = np.array([len(m) for m in mels], np.int64)
                all_mels = np.concatenate(mels)
                if split == "train":
                    self._mel_stats = (all_mels.mean(0), all_mels.std(0) + 1e-5)
                mean, std = self.mel_stats()
                waves.mels = ((all_mels - mean) / std).astype(np.float32)
                waves.frame_offsets = np.concatenate([[0], np.cumsum(frames)[:-1]])
            self._waves[split] = waves
        return self._waves[split]

    def mel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and std float32 [n_mels] of the train split's log-mel frames."""
        if self._mel_stats is None:
            self.waves("train")
        return self._mel_stats

    def positions(self, split: str) -> np.ndarray:
        """int64 [files]: crop start frames f0 ∈ [1, positions] of each file (0 for a file shorter than a crop)."""
        w = self.waves(split)
        return np.maximum((w.lengths - self.crop) // self.hop, 0)

    def fetch(self, split: str, files: np.ndarray, frames: np.ndarray, crop: int = 0) -> dict[str, np.ndarray]:
        """The crops whose first target is sample `frames[i]` · hop of file `files[i]` (int [b] each): input / label
        int32 [b, crop], cond float32 [b, crop // hop, n_mels] when conditioned (crop: default config.task.crop)."""
        w, crop = self.waves(split), crop or self.crop
        files, frames = np.asarray(files, np.int64), np.asarray(frames, np.int64)
        starts = w.offsets[files] + frames * self.hop  # absolute sample of the first target
        idx = starts[:, None] + np.arange(-1, crop)[None, :]
        codes = w.codes[idx].astype(np.int32)
        out = {"input": codes[:, :-1], "label": codes[:, 1:]}
        if self.conditioned:
            fidx = (w.frame_offsets[files] + frames)[:, None] + np.arange(crop // self.hop)[None, :]
            out["cond"] = w.mels[fidx]
        return out

    def make_batch(self, model: nnx.Module, carry, key: jax.Array) -> tuple[dict, None]:
        positions = self.positions("train")
        if not positions.any():
            raise ValueError(f"waveform task: no training file is longer than config.task.crop={self.crop} samples")
        kf, kp = jax.random.split(key)
        logits = jnp.log(jnp.asarray(positions, jnp.float32))  # -inf for files without a crop
        files = jax.random.categorical(kf, logits, shape=(self.batch_size,))
        u = jax.random.uniform(kp, (self.batch_size,))
        frames = 1 + jnp.floor(u * jnp.asarray(positions, jnp.float32)[files]).astype(jnp.int32)
        frames = jnp.minimum(frames, jnp.asarray(positions, jnp.int32)[files])
        example = self.fetch("train", np.zeros(1, np.int64), np.ones(1, np.int64))
        shapes = {k: jax.ShapeDtypeStruct((self.batch_size, *v.shape[1:]), v.dtype) for k, v in example.items()}
        batch = jax.pure_callback(
            lambda f, p: self.fetch("train", f, p), shapes, files.astype(jnp.int32), frames, vmap_method="sequential"
        )
        return batch, carry

    # ------------------------------------------------------------------------------------------ the loss
    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        logits = model(batch["input"], train=True, rngs=rngs, **self.model_inputs(batch))
        logp = jax.nn.log_softmax(logits, -1)
        nll = -jnp.take_along_axis(logp, batch["label"][..., None], -1)[..., 0]
        loss = nll.mean()
        acc = (jnp.argmax(logits, -1) == batch["label"]).mean()
        return loss, {"bits_per_sample": loss / np.log(2.0), "accuracy": acc}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="waveform_nll")}
