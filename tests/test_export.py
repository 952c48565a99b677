"""`python -m jaxdl.export` and `jaxdl.serve.artifact`: a short real MNIST-1D CNN run exported by the CLI, reloaded
in a fresh process that never imports the model code, and compared bitwise with the training code's own forward
pass at two batch sizes; hashes catch tampering; bad workdirs and inputs fail with clear errors."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from deploy_helpers import trained_run
from flax import nnx

from jaxdl import data
from jaxdl.export import export_run, preprocess_steps
from jaxdl.serve.artifact import Artifact, ArtifactError, apply_preprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
    """(run workdir, artifact dir): 30 Adam steps of the CNN on MNIST-1D, exported through the CLI."""
    workdir = trained_run(data_dir)
    out = str(tmp_path_factory.mktemp("artifact"))
    env = dict(os.environ, JAXDL_DATA_DIR=data_dir)
    cmd = [sys.executable, "-m", "jaxdl.export", f"--workdir={workdir}", f"--out={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout
    return str(workdir), out


def training_outputs(workdir: str, x: np.ndarray) -> np.ndarray:
    """The training code's logits: the restored run's model, `model(x, train=False)` jitted as the evaluator does."""
    from jaxdl.state import restore_run

    run = restore_run(workdir, devices=[jax.devices()[0]])
    fwd = jax.jit(lambda p, r, x: nnx.merge(run.graphdef, p, r)(x, train=False))
    return np.asarray(fwd(run.state["params"], run.state["rest"], x))


def test_reload_in_fresh_process_matches_training_outputs_exactly(exported, data_dir, tmp_path):
    workdir, out = exported
    source = data.load("mnist1d", "test", data_dir)
    raw = np.stack([source[i]["x"] for i in range(40)])  # raw features as stored, 2 batches of different sizes
    xs = {"b3": data.preprocess("mnist1d", {"x": raw[:3], "label": np.zeros(3)})["input"]}
    xs["b17"] = data.preprocess("mnist1d", {"x": raw[3:20], "label": np.zeros(17)})["input"]
    want = {k: training_outputs(workdir, x) for k, x in xs.items()}
    np.savez(tmp_path / "in.npz", raw3=raw[:3], raw17=raw[3:20], **xs)
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from jaxdl.serve.artifact import Artifact
        art = Artifact({out!r})
        art.self_check()
        inp = np.load({str(tmp_path / "in.npz")!r})
        res = {{k: art(inp[k]) for k in ("b3", "b17")}}
        res |= {{"raw_" + k: art(art.preprocess(inp["raw" + k[1:]])) for k in ("b3", "b17")}}
        leaked = [m for m in sys.modules if m.startswith(("jaxdl.models", "jaxdl.train", "jaxdl.data", "flax"))]
        assert "jaxdl.models" not in sys.modules and not leaked, leaked
        np.savez({str(tmp_path / "out.npz")!r}, **res)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    for k in ("b3", "b17"):
        assert got[k].shape == want[k].shape == (xs[k].shape[0], 10) and got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], want[k])  # bitwise: same program, same weights
        np.testing.assert_array_equal(got["raw_" + k], want[k])  # raw input through preprocess.json


def test_manifest_card_and_hashes(exported):
    workdir, out = exported
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    assert manifest["source"]["step"] == 30 and manifest["io"]["input_shape"] == [40]
    weights = dict(np.load(os.path.join(out, "weights.npz")))
    h = hashlib.sha256()  # the documented content hash, recomputed here (jaxdl.serve.artifact.weights_sha256)
    for name in sorted(weights):
        a = np.ascontiguousarray(weights[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode() + a.tobytes())
    assert manifest["weights_sha256"] == h.hexdigest()
    assert set(manifest["files"]) == {
        "model.stablehlo", "weights.npz", "preprocess.json", "selfcheck.npz", "reference.npz", "model.md"
    }  # fmt: skip
    assert set(manifest["data_sha256"]) == {"train", "test"}
    # the card's metrics are the run's last eval record, with the command
    last_eval = [r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl"))) if "eval/accuracy" in r][-1]
    card = open(os.path.join(out, "model.md")).read()
    assert f"| eval/accuracy | {last_eval['eval/accuracy']:.4f} |" in card
    for section in ("## Data", "## Metrics", "## Intended use", "## Limitations", manifest["weights_sha256"]):
        assert section in card
    # a second export of the same checkpoint: same weights content hash (container and timestamps do not count)
    again = export_run(workdir, os.path.join(out + "_again"))
    assert again["weights_sha256"] == manifest["weights_sha256"]


def test_tampered_weights_fail_the_hash_check(exported, tmp_path):
    _, out = exported
    bad = str(tmp_path / "bad")
    shutil.copytree(out, bad)
    weights = dict(np.load(os.path.join(bad, "weights.npz")))
    name = next(n for n in weights if n.endswith("kernel"))
    weights[name] = weights[name].copy()
    weights[name].flat[0] += 1e-3
    np.savez(os.path.join(bad, "weights.npz"), **weights)
    with pytest.raises(ArtifactError, match=r"weights\.npz: sha256 .* does not match manifest\.json"):
        Artifact(bad)
    os.remove(os.path.join(bad, "model.stablehlo"))
    with pytest.raises(ArtifactError, match=r"model\.stablehlo is missing"):
        Artifact(bad)
    with pytest.raises(ArtifactError, match="manifest.json does not exist"):
        Artifact(str(tmp_path))


def test_bad_workdir_and_bad_inputs_are_clear_errors(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_run(str(tmp_path / "nope"), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        export_run(str(tmp_path), str(tmp_path / "out"))
    art = Artifact(exported[1])
    with pytest.raises(ArtifactError, match=r"input shape \[2, 41\] does not match \[batch >= 1, 40\]"):
        art(np.zeros((2, 41), np.float32))
    with pytest.raises(ArtifactError, match="NaN"):
        art(np.full((1, 40), np.nan, np.float32))
    with pytest.raises(ArtifactError, match="not a float32 array"):
        art([["a"] * 40])


@pytest.mark.parametrize("dataset", ["fashion_mnist", "fashion_mnist_14", "digits", "mnist1d_shuffled_paper"])
def test_preprocess_spec_is_bitwise_the_dataset_preprocess(dataset):
    """preprocess.json's ops on raw features == the registry's preprocess (no dataset build needed)."""
    from jaxdl.data.registry import DATASETS

    shape, key = ((40,), "x") if dataset.startswith("mnist1d") else ((28, 28, 1), "image")
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((5, *shape)).astype(np.float32) if key == "x" else rng.integers(0, 256, (5, *shape))
    raw = raw.astype(np.float32 if key == "x" else np.uint8)
    want = DATASETS[dataset][2]({key: raw, "label": np.zeros(5, np.int64)})["input"]
    got = apply_preprocess(preprocess_steps(dataset), raw)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert preprocess_steps("fashion_mnist_rotation") is None  # labels made from the image: no serving spec
    with pytest.raises(ValueError, match="'nope' is not registered"):
        preprocess_steps("nope")
