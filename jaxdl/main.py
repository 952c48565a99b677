"""Entry point: `python -m jaxdl.main --config=experiments/<study>/<file>.py:<arg> --workdir=DIR [--config.a.b=v]`.

Validates the config (unknown keys, wrong types, missing fields fail here, naming the key, before anything
compiles), joins the multi-process job if there is one (`--coordinator_address`, `--num_processes`,
`--process_id`, or the environment; see `jaxdl.parallel.distributed`), trains with
`jaxdl.train.train_and_evaluate`, resumes from the workdir's latest checkpoint, and
prints the final eval metrics.
"""

import json
import logging

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxdl import config as config_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags, defined only when this module runs as the program (so importing it beside
    another jaxdl command cannot define a flag such as --workdir twice)."""
    config_flags.DEFINE_config_file("config", None, "Experiment config file, `path.py:arg`.", lock_config=True)
    flags.DEFINE_string("workdir", None, "Where checkpoints, metrics.jsonl, TensorBoard events and config.json go.")
    flags.mark_flags_as_required(["config", "workdir"])
    # Multi-process jobs (jaxdl.parallel.distributed): flag > $JAXDL_COORDINATOR etc. > SLURM/MPI/TPU/k8s detection.
    flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0 (default: $JAXDL_COORDINATOR or detected)."
    )
    flags.DEFINE_integer("num_processes", None, "Processes in the job (default: $JAXDL_NUM_PROCESSES or detected).")
    flags.DEFINE_integer("process_id", None, "This process's index (default: $JAXDL_PROCESS_ID or detected).")
    flags.DEFINE_float("distributed_timeout_s", 300, "Seconds to wait for all processes before failing with an error.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/tfds chatter
    logging.getLogger("jaxdl").setLevel(logging.INFO)
    config = config_lib.validate(FLAGS.config)  # before jax compiles anything
    from jaxdl.parallel import distributed

    distributed.initialize(  # before anything starts JAX's backend
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, timeout_s=FLAGS.distributed_timeout_s
    )

    from jaxdl import train  # imported after validation so config errors come fast

    results = train.train_and_evaluate(config, FLAGS.workdir)
    print("final " + json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    define_flags()
    app.run(main)
