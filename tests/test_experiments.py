"""Every experiment config and study sweep builds and validates (unknown keys, bad model arguments and bad
values fail here, not an hour into a sweep)."""

import pytest

from jaxdl import config as config_lib
from jaxdl.ablate import load_study, plan

STUDIES = [
    "experiments/ablate_smoke/config.py",
    "experiments/fashion_mnist/study.py",
    "experiments/residual/config.py",
    "experiments/optim/config.py",
    "experiments/optim/config.py:norm",
    "experiments/transfer/config.py:finetune,root=/tmp/pretrained",
    "experiments/language/config.py",
    "experiments/language/translation.py",
    "experiments/language/bert_finetune.py:finetune,root=/tmp/pretrained",
]


@pytest.mark.parametrize("study", STUDIES)
def test_study_sweeps_validate(study):
    base, cells = load_study(study)
    runs = plan(base, cells, [0, 1])
    assert len(runs) == 2 * len(cells) and len({r["cell"] for r in runs}) == len(cells)


@pytest.mark.parametrize(
    "path,arg",
    [
        ("experiments/transfer/config.py", "pretrain_fashion"),
        ("experiments/transfer/config.py", "pretrain_rotation,smoke"),
        ("experiments/language/config.py", "gpt"),
        ("experiments/language/config.py", "lstm,smoke"),
        ("experiments/residual/config.py", "smoke"),
        ("experiments/speech/asr.py", ""),
        ("experiments/speech/wavenet.py", "cond"),
        ("experiments/generative/config.py", "ae"),
        ("experiments/generative/config.py", "vae"),
        ("experiments/generative/config.py", "dcgan"),
        ("experiments/generative/config.py", "ddpm"),
        ("experiments/detection/config.py", "fcos"),
        ("experiments/detection/config.py", "detr"),
        ("experiments/detection/config.py", "detr3"),
        ("experiments/detection/segment.py", "unet"),
        ("experiments/rl/ppo.py", "cartpole"),
        ("experiments/rl/ppo.py", "acrobot"),
        ("experiments/rl/alphazero.py", ""),
        ("experiments/rl/alphazero_connect4.py", ""),
        ("experiments/rl/ppo.py", "acrobot,norm"),
        ("experiments/clip/config.py", "infonce"),
        ("experiments/clip/config.py", "siglip"),
        ("experiments/efficient_convnets/config.py", "mobilenet_v2"),
        ("experiments/efficient_convnets/config.py", "mbconv_se"),
        ("experiments/recsys/config.py", "deepfm"),
        ("experiments/recsys/config.py", "neumf,neg=unseen"),
        ("experiments/recsys/config.py", "sasrec"),
        ("experiments/recsys/sequential/config.py", "sasrec"),
        ("experiments/recsys/sequential/config.py", "bert4rec"),
        ("experiments/deploy/distill_config.py", "teacher"),
        ("experiments/deploy/distill_config.py", "student"),
        ("experiments/deploy/multi_exit_config.py", ""),
        ("experiments/trustworthy/async_config.py", "tau=16,scaling=inverse"),
        ("experiments/trustworthy/async_config.py", "sync=16"),
        ("experiments/trustworthy/mitigation.py", "gender_kc"),
    ],
)
def test_single_run_configs_validate(path, arg):
    from jaxdl.ablate import _load_module

    config_lib.validate(_load_module(path).get_config(arg))


def test_bad_study_args_are_named():
    with pytest.raises(ValueError, match="finetune,root=ROOT"):
        load_study("experiments/transfer/config.py:finetune")
    with pytest.raises(ValueError, match=r"unknown token 'nrom'; expected \[,norm\]"):
        load_study("experiments/optim/config.py:nrom")
