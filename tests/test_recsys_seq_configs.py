"""The sequential-recommender configs say what the READMEs report: experiments/recsys/config.py:sasrec is the run
of experiments/recsys/sequential/config.py:sasrec (the two once drifted: the first kept a last-position loss),
and `sasrec,last` is RecBole's objective and budget (the like-for-like row beside RecBole's SASRec)."""

import json

import pytest

from jaxdl import config as config_lib
from jaxdl.ablate import _load_module, load_study

MAIN, SEQ = "experiments/recsys/config.py", "experiments/recsys/sequential/config.py"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_main_sasrec_is_the_sequential_studys_run():
    main = _flat(json.loads(_load_module(MAIN).get_config("sasrec").to_json()))
    seq = _flat(json.loads(_load_module(SEQ).get_config("sasrec").to_json()))
    differ = {k: (main.get(k), seq.get(k)) for k in main.keys() | seq.keys() if main.get(k) != seq.get(k)}
    # row_multiple=1 (config.py's sharding padding knob) is the model's default, absent from the sequential config
    assert differ == {"model.row_multiple": (1, None)}, differ
    assert main["task.name"] == "next_items" and main["task.loss"] == "softmax"


def test_last_position_objective_matches_recboles():
    c = _load_module(SEQ).get_config("sasrec,last,seed=1")
    config_lib.validate(c)
    assert (c.task.name, c.task.loss, c.data.batch_size) == ("ranking", "softmax", 256)
    assert c.train.steps == 98_114 // 256 and c.seed == 1  # one epoch over the leave-one-out train rows
    assert load_study(f"{SEQ}:sasrec,last")[1] == [("sasrec_last", {})]
    with pytest.raises(ValueError, match="'last'.*not bert4rec"):
        _load_module(SEQ).get_config("bert4rec,last")
