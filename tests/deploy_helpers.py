"""One short real training run shared by the deployment tests (test_export, test_serve): trained once per pytest
process, whichever module asks first."""

import functools
import pathlib
import tempfile

from run_helpers import short_run


@functools.cache
def trained_run(data_dir: str) -> str:
    """The workdir of 30 Adam steps of the MNIST-1D CNN (batch 64), with its final checkpoint and metrics."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="jaxdl_deploy_run_"))
    short_run(
        workdir, data_dir, data="mnist1d", model={"name": "cnn1d"}, steps=30, log_every=10, batch=64,
        eval_batch=500, lr=3e-3,
    )  # fmt: skip
    return str(workdir)
