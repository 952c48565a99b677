"""Config errors are clear, name the key, and come before anything compiles."""

import os
import subprocess
import sys
import time

import ml_collections
import pytest

from jaxdl import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(**model):
    c = config_lib.base()
    c.data.name = "mnist1d"
    c.model = ml_collections.ConfigDict({"name": "mlp", **model})
    return c


def test_valid_config_passes_and_is_locked():
    c = config_lib.validate(_cfg(hidden=(32,)))
    with pytest.raises(AttributeError):
        c.train.stepz = 3


def test_unknown_key_in_config_file_fails_at_once():
    c = config_lib.base()
    with pytest.raises(AttributeError, match="stepz"):
        c.train.stepz = 3


def test_unknown_key_in_replaced_section():
    c = _cfg()
    c.unlock()
    c.train.stepz = 3
    with pytest.raises(ValueError, match=r"config.train.stepz"):
        config_lib.validate(c)


def test_wrong_type():
    c = config_lib.base()
    with pytest.raises(TypeError):
        c.train.steps = "many"
    c = _cfg()
    c.unlock()
    c.train = ml_collections.ConfigDict(dict(config_lib.base().train.to_dict(), steps="many"))
    with pytest.raises(TypeError, match=r"config.train.steps"):
        config_lib.validate(c)


def test_missing_required_field():
    c = config_lib.base()
    c.model = ml_collections.ConfigDict({"name": "mlp"})
    with pytest.raises(ValueError, match=r"config.data.name is required"):
        config_lib.validate(c)
    c = config_lib.base()
    c.data.name = "mnist1d"
    with pytest.raises(ValueError, match=r"config.model.name is required"):
        config_lib.validate(c)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda c: setattr(c.model, "widht", 4), r"config.model.widht is not an argument"),
        (lambda c: setattr(c.model, "name", "resnet9000"), r"config.model.name='resnet9000'"),
        (lambda c: setattr(c.model, "remat", "sometimes"), r"config.model.remat='sometimes'"),
        (lambda c: setattr(c.train, "steps", 0), r"config.train.steps must be >= 1"),
        (lambda c: setattr(c.train, "grad_accum", 3), r"config.data.batch_size=128 is not divisible"),
        (lambda c: setattr(c.optim, "name", "adamm"), r"adamm"),
    ],
)
def test_bad_values_name_the_key(mutate, match):
    c = _cfg()
    mutate(c)
    with pytest.raises((ValueError, TypeError), match=match):
        config_lib.validate(c)


def test_smoke_arg_shrinks_any_config():
    sys.path.insert(0, ROOT)
    from experiments.fashion_mnist import config as fm
    from experiments.mnist1d import config as m1

    for c in (m1.get_config("cnn,smoke"), m1.get_config("gru,shuffled,smoke"), fm.get_config("lenet,smoke")):
        assert c.train.steps <= 30
        config_lib.validate(c)
    with pytest.raises(ValueError, match="need exactly one model of logistic|mlp|cnn|gru, got none"):
        m1.get_config("resnet")


@pytest.mark.parametrize(
    "override,match",
    [
        ("--config.train.stepz=3", "stepz"),
        ("--config.train.steps=many", "steps"),
        ("--config.model.widht=3", "widht"),
    ],
)
def test_cli_errors_name_the_key_before_compiling(tmp_path, override, match):
    t0 = time.time()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxdl.main",
            "--config=experiments/mnist1d/config.py:mlp",
            override,
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert match in out.stderr + out.stdout
    assert not (tmp_path / "metrics.jsonl").exists()  # failed before training started
    assert time.time() - t0 < 60


def test_parse_arg_is_typed_and_names_the_bad_token():
    a = config_lib.parse_arg("gru,shuffled,steps=7,smoke", model=("cnn", "gru"), shuffled=bool, steps=0, root="")
    assert (a.model, a.shuffled, a.steps, a.root, a.smoke) == ("gru", True, 7, "", True)
    a = config_lib.parse_arg("cnn", model=("cnn", "gru"), shuffled=bool)
    assert (a.model, a.shuffled, a.smoke) == ("cnn", False, False)
    assert config_lib.parse_arg(None).smoke is False
    bad = [
        ("cnn,gru", r"need exactly one model of cnn\|gru, got \['cnn', 'gru'\]"),
        ("", r"need exactly one model of cnn\|gru, got none"),
        ("cnn,steps=many", r"steps='many' is not of type int"),
        ("cnn,steps=1,steps=2", r"steps= given 2 times"),
        ("cnn,shufled", r"unknown token 'shufled'; expected <model: cnn\|gru> \[,shuffled\] \[,steps=<int>\]"),
    ]
    for arg, match in bad:
        with pytest.raises(ValueError, match=match):
            config_lib.parse_arg(arg, model=("cnn", "gru"), shuffled=bool, steps=0)
    with pytest.raises(TypeError, match="parse_arg spec steps=None"):
        config_lib.parse_arg("", steps=None)
