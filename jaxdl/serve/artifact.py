"""Loads a serving artifact written by `python -m jaxdl.export` and runs it, importing only jax, numpy and json —
never `jaxdl.models` or the trainer, so it runs where the training code is absent.

    art = Artifact("DIR")                  # checks every file's sha256 against manifest.json, then the weights'
    logits = art(x)                        # x: art.input_dtype [b, *art.input_shape] (preprocessed), any b >= 1
    logits = art(art.preprocess(raw))      # raw: the dataset's raw feature, e.g. uint8 [b, 28, 28, 1]

A file whose hash differs from the manifest (edited weights, a swapped program) raises `ArtifactError` naming the
file and both hashes, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import numpy as np

FORMAT = "jaxdl-artifact/1"


class ArtifactError(ValueError):
    """A missing, tampered or inconsistent artifact file, or an input that does not fit the artifact."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(weights: dict[str, np.ndarray]) -> str:
    """sha256 of the weights' content: for each name in sorted order, the name, dtype, shape and C-order bytes (the
    manifest's `weights_sha256`; `jaxdl.export` writes it with this function, so the two cannot drift apart)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        a = np.ascontiguousarray(weights[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def apply_preprocess(steps: list[dict[str, Any]], raw: np.ndarray) -> np.ndarray:
    """The ops of preprocess.json on a raw batch `[batch, *raw_shape]`, with the same numpy operations in the same
    order as the dataset's preprocess (so the result is bitwise the trainer's input)."""
    x = np.asarray(raw)
    for i, step in enumerate(steps):
        op = step.get("op")
        if op == "cast":
            x = x.astype(np.dtype(step["dtype"]))
        elif op == "divide":
            x = x / step["value"]
        elif op == "subtract":
            x = x - step["value"]
        elif op == "take":
            x = x[(slice(None),) * step["axis"] + (np.asarray(step["indices"]),)]
        elif op == "avg_pool":
            (wh, ww), (b, h, w, c) = step["window"], x.shape
            x = x.reshape(b, h // wh, wh, w // ww, ww, c).mean(axis=(2, 4))
        else:
            raise ArtifactError(f"preprocess.json step {i}: unknown op {op!r}")
    return x


class Artifact:
    """A loaded artifact: `manifest` (dict), `input_shape`/`input_dtype` of one preprocessed example,
    `num_classes`, `class_names`, and `__call__(x) -> logits` (numpy float32 `[b, num_classes]`)."""

    def __init__(self, directory: str, *, verify: bool = True):
        self.directory = directory
        path = os.path.join(directory, "manifest.json")
        if not os.path.exists(path):
            raise ArtifactError(f"{path} does not exist: is {directory!r} an artifact of `python -m jaxdl.export`?")
        with open(path) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT:
            raise ArtifactError(f"{path}: format {self.manifest.get('format')!r}, this loader reads {FORMAT!r}")
        if verify:
            self.verify_files()
        with open(os.path.join(directory, "model.stablehlo"), "rb") as f:
            self.exported = jax.export.deserialize(bytearray(f.read()))
        with np.load(os.path.join(directory, "weights.npz"), allow_pickle=False) as npz:
            self.weights = {k: npz[k] for k in npz.files}
        io = self.manifest["io"]
        if sorted(self.weights) != sorted(io["weight_names"]):
            missing = sorted(set(io["weight_names"]) - set(self.weights))
            extra = sorted(set(self.weights) - set(io["weight_names"]))
            raise ArtifactError(f"weights.npz: names differ from the manifest (missing {missing}, unexpected {extra})")
        if verify and weights_sha256(self.weights) != self.manifest["weights_sha256"]:
            raise ArtifactError("weights.npz: content sha256 differs from manifest.json weights_sha256")
        self.input_shape = tuple(io["input_shape"])
        self.input_dtype = np.dtype(io["input_dtype"])
        self.num_classes = int(io["num_classes"])
        self.class_names = io.get("class_names")
        self.preprocess_spec = self.manifest["preprocess"]
        self._device_weights = jax.device_put(self.weights)
        self._call = jax.jit(self.exported.call)

    def verify_files(self) -> None:
        """Raises ArtifactError naming the first file whose sha256 differs from manifest.json (or is missing)."""
        for name, expected in self.manifest["files"].items():
            path = os.path.join(self.directory, name)
            if not os.path.exists(path):
                raise ArtifactError(f"{path} is missing (listed in manifest.json)")
            got = sha256_file(path)
            if got != expected:
                raise ArtifactError(
                    f"{path}: sha256 {got} does not match manifest.json ({expected}); the file was modified "
                    "after export — re-export the run or restore the file"
                )

    def check_input(self, x: Any) -> np.ndarray:
        """`x` as the artifact's input array, or ArtifactError saying what is wrong with its shape or values."""
        try:
            x = np.asarray(x, dtype=self.input_dtype)
        except (TypeError, ValueError) as e:
            raise ArtifactError(f"input is not a {self.input_dtype.name} array: {e}") from None
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape or x.shape[0] < 1:
            raise ArtifactError(
                f"input shape {list(x.shape)} does not match [batch >= 1, {', '.join(map(str, self.input_shape))}]"
            )
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise ArtifactError("input holds NaN or infinite values")
        return x

    def preprocess(self, raw: Any) -> np.ndarray:
        """Raw dataset features `[batch, *raw.shape]` -> the model input, by preprocess.json's steps."""
        spec = self.preprocess_spec
        if spec.get("steps") is None:
            raise ArtifactError(f"this artifact has no raw-input preprocessing ({spec.get('note')}); send inputs")
        want = spec["raw"]
        try:
            raw = np.asarray(raw, dtype=np.dtype(want["dtype"]))
        except (TypeError, ValueError, OverflowError) as e:
            raise ArtifactError(f"raw input is not a {want['dtype']} array: {e}") from None
        if tuple(raw.shape[1:]) != tuple(want["shape"]) or raw.shape[0] < 1:
            raise ArtifactError(f"raw input shape {list(raw.shape)} does not match [batch >= 1, *{want['shape']}]")
        return apply_preprocess(spec["steps"], raw)

    def __call__(self, x: Any) -> np.ndarray:
        """Logits `[b, num_classes]` of a preprocessed batch `x` `[b, *input_shape]` (checked first)."""
        return np.asarray(self._call(self._device_weights, self.check_input(x)))

    def reference(self) -> dict[str, np.ndarray] | None:
        """{"input": `[n, *input_shape]`, "confidence": float32 `[n]`} of reference.npz (eval-split inputs and the
        trainer's confidence on them: the drift monitor's reference), or None for an artifact without it."""
        path = os.path.join(self.directory, "reference.npz")
        if not os.path.exists(path):
            return None
        with np.load(path, allow_pickle=False) as npz:
            return {"input": npz["input"], "confidence": npz["confidence"]}

    def self_check(self) -> None:
        """Raises ArtifactError unless the exported program reproduces, bitwise, the logits the training code gave
        at export time for the inputs in selfcheck.npz."""
        with np.load(os.path.join(self.directory, "selfcheck.npz"), allow_pickle=False) as npz:
            x, want = npz["input"], npz["output"]
        got = self(x)
        if not np.array_equal(got, want):
            raise ArtifactError(
                f"self check failed: max |logit difference| {float(np.max(np.abs(got - want)))} on selfcheck.npz"
            )
