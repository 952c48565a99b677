"""jaxdl.ablate: sweep expansion, validation before any run, a real 2-cell × 2-seed MNIST-1D sweep with a failing
cell, skipping finished runs, per-seed reproducibility, the results table/plots and the SLURM job array."""

import csv
import json
import os
import subprocess
import sys

import pytest
from baselines import MARGIN, entropy, eval_labels, majority_accuracy

from jaxdl import ablate, train
from jaxdl import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "experiments/ablate_smoke/config.py"


# ------------------------------------------------------------------------------------------------ expansion
def test_product_zip_list_names_and_order():
    spec = ablate.product(
        ablate.axis("model.name", ["mlp", "logistic"]),
        ablate.zip_(ablate.axis("optim.name", ["adam", "sgd"]), ablate.axis("optim.lr", [1e-2, 0.1])),
    )
    cells = ablate.expand(spec)
    assert [n for n, _ in cells] == [
        "model=mlp,optim=adam,lr=0.01",
        "model=mlp,optim=sgd,lr=0.1",
        "model=logistic,optim=adam,lr=0.01",
        "model=logistic,optim=sgd,lr=0.1",
    ]
    assert list(cells[1][1].items()) == [("model.name", "mlp"), ("optim.name", "sgd"), ("optim.lr", 0.1)]
    # plain lists of override dicts (and specs inside them) are concatenated in order; "_name" names a cell
    cells = ablate.expand([{"_name": "baseline"}, ablate.axis("train.steps", [5, 10]), {"data.batch_size": 64}])
    assert [n for n, _ in cells] == ["baseline", "steps=5", "steps=10", "batch_size=64"]
    assert cells[0][1] == {}
    assert ablate.expand([{}])[0][0] == "base"
    # short names that clash fall back to the full dotted key
    names = [n for n, _ in ablate.expand(ablate.zip_(ablate.axis("a.x", [1]), ablate.axis("b.x", [2])))]
    assert names == ["a.x=1,b.x=2"]
    with pytest.raises(ValueError, match="equal length"):
        ablate.zip_(ablate.axis("optim.lr", [1, 2]), ablate.axis("optim.name", ["adam"]))
    with pytest.raises(ValueError, match="duplicate cells"):
        ablate.expand([{"optim.lr": 0.1}, {"optim.lr": 0.1}])
    with pytest.raises(ValueError, match="set by two"):
        ablate.product(ablate.axis("optim.lr", [1]), ablate.axis("optim.lr", [2]))
    with pytest.raises(TypeError):
        ablate.expand([3])


def test_unknown_key_fails_before_any_run(tmp_path):
    base, _ = ablate.load_study(SMOKE)
    with pytest.raises(ValueError, match="optim.nope"):
        ablate.apply_overrides(base, {"optim.nope": 1})
    with pytest.raises(ValueError, match="traim"):
        ablate.apply_overrides(base, {"traim.steps": 1})
    with pytest.raises(ValueError, match="config.model.width"):  # model keys are checked against the model
        ablate.apply_overrides(base, {"model.name": "logistic", "model.width": 3})
    with pytest.raises(TypeError, match="train.steps"):
        ablate.apply_overrides(base, {"train.steps": "many"})
    cells = ablate.expand([{"optim.lr": 0.1}, {"optim.nope": 1}])
    with pytest.raises(ValueError, match="optim.nope"):
        ablate.run_sweep(base, cells, [0], str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()  # the good first cell did not run either
    # model.name keeps the base's model arguments the new model accepts; the cell's model.* keys apply after it
    c = ablate.apply_overrides(base, {"model.hidden": [8], "model.name": "mlp"})
    assert dict(c.model) == {"name": "mlp", "hidden": (8,)} and c.optim.name == "adam"
    assert dict(base.model) == {"name": "mlp"}  # the base is untouched
    c = ablate.apply_overrides(c, {"model.name": "logistic", "model.dtype": "bfloat16"})
    assert dict(c.model) == {"name": "logistic", "dtype": "bfloat16"}  # mlp's `hidden` dropped
    with pytest.raises(ValueError, match="not a model"):
        ablate.apply_overrides(base, {"model.name": "nosuchmodel"})


# ------------------------------------------------------------------------------------------- a real sweep
def _counting(monkeypatch_ctx, calls):
    real = train.train_and_evaluate

    def wrapped(config, workdir, **kw):
        calls.append(workdir)
        return real(config, workdir, **kw)

    monkeypatch_ctx.setattr(train, "train_and_evaluate", wrapped)


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
    """2 good cells (mlp adam/sgd) + a cell whose eval split does not exist (fails at run time) × seeds 0, 1."""
    base, cells = ablate.load_study(SMOKE)
    base.data.data_dir = data_dir
    cells = cells[:2] + ablate.expand([{"_name": "bad_split", "data.eval_split": "nope"}])
    workdir = str(tmp_path_factory.mktemp("ablate"))
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        _counting(mp, calls)
        counts = ablate.run_sweep(base, cells, [0, 1], workdir)
    return dict(base=base, cells=cells, workdir=workdir, counts=counts, calls=calls)


def test_sweep_writes_table_and_plots(study):
    wd = study["workdir"]
    assert study["counts"] == {"done": 4, "skipped": 0, "failed": 2}
    assert len(study["calls"]) == 6
    rows = {r["cell"]: r for r in csv.DictReader(open(os.path.join(wd, "results.csv")))}
    assert list(rows) == [n for n, _ in study["cells"]]
    # 30 steps learn a little: above always predicting the most frequent class (0.106) and below the labels'
    # entropy (2.30 nats), the best a model that ignores the input can do
    labels = eval_labels("mnist1d", study["base"].data.data_dir)
    floor, majority = entropy(labels), majority_accuracy(labels)
    for name, _ in study["cells"][:2]:
        assert rows[name]["n"] == "2" and rows[name]["failed"] == "0"
        accuracy, loss = float(rows[name]["eval/accuracy mean"]), float(rows[name]["eval/loss mean"])
        assert majority + 0.08 < accuracy <= 1, (name, accuracy, majority)
        assert float(rows[name]["eval/accuracy std"]) >= 0
        assert 0 < loss < floor - MARGIN and rows[name]["train/loss mean"], (name, loss, floor)
    assert rows["bad_split"]["n"] == "0" and rows["bad_split"]["failed"] == "2"
    md = open(os.path.join(wd, "results.md")).read()
    assert "| model=mlp,optim=adam,lr=0.01 | 2 | " in md and "eval/accuracy" in md and " ± " in md
    assert "| bad_split | 0 (**FAILED** 2) |" in md and "Total runtime" in md
    err = json.load(open(os.path.join(wd, "bad_split", "seed_1", "error.json")))
    assert "nope" in err["error"] and "Traceback" in err["traceback"] and err["seed"] == 1
    assert not os.path.exists(os.path.join(wd, "bad_split", "seed_1", "result.json"))
    result = json.load(open(os.path.join(wd, "model=mlp,optim=sgd,lr=0.1", "seed_1", "result.json")))
    assert result["seconds"] > 0 and set(result["metrics"]) >= {"eval/accuracy", "eval/loss"}
    assert result["overrides"] == {"model.name": "mlp", "optim.name": "sgd", "optim.lr": 0.1}
    cfg = json.load(open(os.path.join(wd, "model=mlp,optim=sgd,lr=0.1", "seed_1", "config.json")))
    assert cfg["seed"] == 1 and cfg["optim"]["name"] == "sgd" and cfg["optim"]["lr"] == 0.1
    for png in ("learning_curves.png", "final_eval_accuracy.png"):
        with open(os.path.join(wd, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_runs(study):
    wd = study["workdir"]
    results = [os.path.join(wd, n, f"seed_{s}", "result.json") for n, _ in study["cells"][:2] for s in (0, 1)]
    mtimes = [os.stat(p).st_mtime_ns for p in results]
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        _counting(mp, calls)
        counts = ablate.run_sweep(study["base"], study["cells"], [0, 1], wd)
    assert counts == {"done": 0, "skipped": 4, "failed": 2}  # failed runs are retried, finished ones never
    assert all("bad_split" in c for c in calls) and len(calls) == 2
    assert [os.stat(p).st_mtime_ns for p in results] == mtimes


def test_same_seed_reproduces(study, tmp_path):
    cells = study["cells"][:1]
    # --only=1 is run 1 = cell 0, seed index 1 (run index = cell_index * len(seeds) + seed_index)
    ablate.run_sweep(study["base"], cells, [0, 1], str(tmp_path), only=1, report=False)
    name = cells[0][0]
    assert not (tmp_path / name / "seed_0").exists()
    again = json.load(open(tmp_path / name / "seed_1" / "result.json"))["metrics"]
    first = json.load(open(os.path.join(study["workdir"], name, "seed_1", "result.json")))["metrics"]
    assert again == first
    other = json.load(open(os.path.join(study["workdir"], name, "seed_0", "result.json")))["metrics"]
    assert other != first


def test_emit_slurm_writes_job_array(tmp_path):
    wd = tmp_path / "w"
    out = subprocess.run(
        [sys.executable, "-m", "jaxdl.ablate", f"--config={SMOKE}", f"--workdir={wd}", "--seeds=0,1,2",
         "--emit=slurm", "--config.train.steps=7"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    script = (wd / "ablate.sbatch").read_text()
    assert "#SBATCH --array=0-11\n" in script  # 4 cells × 3 seeds
    assert '--only="${SLURM_ARRAY_TASK_ID' in script and "--config.train.steps=7" in script
    assert f"--config={SMOKE}" in script and "--seeds=0,1,2" in script and "--report" in script
    assert not any(p.is_dir() and p.name.startswith("model=") for p in wd.iterdir())  # nothing ran


def test_smoke_config_validates():
    base, cells = ablate.load_study(SMOKE)
    assert base.data.name == "mnist1d" and len(cells) == 4
    assert all(config_lib.validate(c["config"]) for c in ablate.plan(base, cells, [0]))
