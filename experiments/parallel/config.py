"""A small transformer (or its mixture-of-experts variant) on MNIST-1D, for trying the sharding strategies.

Command (8 simulated CPU devices; pick any mesh and strategy):
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m jaxdl.main \\
        --config=experiments/parallel/config.py:dense --workdir=/tmp/tf \\
        --config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.tensor=2 --config.sharding.strategy=fsdp+tp
Args: `dense|moe[,smoke]`. Every strategy gives the same loss curve as one device (tests/test_parallel.py).
With `moe`, use e.g. --config.mesh.expert=4 --config.sharding.strategy=ep. Pipeline: --config.mesh.pipeline=4
--config.sharding.strategy=pp [--config.sharding.pipeline_schedule=circular --config.sharding.pipeline_repeats=2].
"""

import ml_collections

from jaxdl import config as config_lib


def get_config(arg: str = "dense") -> ml_collections.ConfigDict:
    a = config_lib.parse_arg(arg, model=("dense", "moe"))
    c = config_lib.base()
    c.data.name = "mnist1d"
    c.data.batch_size = 128
    c.data.eval_batch_size = 1000
    model = dict(name="transformer", depth=8, dim=64, heads=8, mlp_dim=256, dropout=0.0, remat="none")
    if a.model == "moe":
        model.update(moe_experts=8, moe_top_k=2, moe_capacity_factor=1.25, moe_groups=0, moe_aux_weight=0.01)
    c.model = ml_collections.ConfigDict(model)
    c.optim.name = "adamw"
    c.optim.lr = 1e-3
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.optim.clip_norm = 1.0
    c.train.steps = 3000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000
    return config_lib.shrink_for_smoke(c) if a.smoke else c
