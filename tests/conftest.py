"""Test setup: the backend the suite runs on, chosen by `JAXDL_TEST_BACKEND` before jax is imported.

- `cpu` (default): 8 simulated CPU devices, `JAX_PLATFORMS=cpu` unless set; tests marked `gpu` skip.
- `gpu` (`JAXDL_TEST_BACKEND=gpu bash launch/test.sh` on a GPU machine): JAX's GPU backend (the session stops at
  once if JAX sees no GPU). Runs the `gpu` tests and the modules marked `portable` (written for both backends:
  `impl="auto"` / `backend="auto"` there launch the compiled kernels through jax-triton and Pallas-on-GPU, checked
  against the references); `cpu_only` tests and every other module skip, each with its reason. float32 matmuls of
  the references run at full precision (no TF32), so the kernels' float32 bounds stay meaningful.
"""

import os

BACKEND = os.environ.get("JAXDL_TEST_BACKEND", "cpu").strip().lower()
if BACKEND not in ("cpu", "gpu"):
    raise RuntimeError(f"JAXDL_TEST_BACKEND must be 'cpu' or 'gpu', got {BACKEND!r}")
if BACKEND == "cpu":
    if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

CPU_SUITE = "CPU suite (assumes the 8 simulated CPU devices); runs with JAXDL_TEST_BACKEND=cpu"
NEEDS_GPU = "needs a GPU: JAXDL_TEST_BACKEND=gpu bash launch/test.sh on a GPU machine"


def pytest_configure(config):
    config.addinivalue_line("markers", "portable: module runs on both backends (JAXDL_TEST_BACKEND=cpu|gpu)")
    config.addinivalue_line("markers", "cpu_only(reason): in a portable module, a test that needs the CPU backend")
    if BACKEND == "gpu":
        if jax.default_backend() != "gpu":
            raise pytest.UsageError(
                f"JAXDL_TEST_BACKEND=gpu but JAX's default backend is {jax.default_backend()!r} (devices: "
                f"{jax.devices()}): install jax with CUDA (pip install 'jax[cuda12]' or 'jax[cuda13]') on a GPU machine"
            )
        jax.config.update("jax_default_matmul_precision", "highest")


def pytest_report_header(config):
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return f"jaxdl test backend: {BACKEND} (jax {jax.__version__}, {len(jax.devices())} x {devices})"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if BACKEND == "cpu":
            if item.get_closest_marker("gpu") is not None:
                item.add_marker(pytest.mark.skip(reason=NEEDS_GPU))
            continue
        cpu_only = item.get_closest_marker("cpu_only")
        if cpu_only is not None:
            reason = cpu_only.args[0] if cpu_only.args else cpu_only.kwargs.get("reason", "needs the CPU backend")
            item.add_marker(pytest.mark.skip(reason=f"CPU only: {reason}"))
        elif item.get_closest_marker("gpu") is None and item.get_closest_marker("portable") is None:
            item.add_marker(pytest.mark.skip(reason=CPU_SUITE))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A TFDS data_dir shared by the whole session (datasets are built once)."""
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def movielens_raw():
    """MovieLens-100k as `jaxdl.data.movielens.load_raw()` reads it; skips when the recbole package that ships the
    files is absent (`bash launch/setup.sh` installs it)."""
    from jaxdl.data import movielens as ml

    try:
        ml.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"MovieLens-100k is not installed (bash launch/setup.sh installs recbole): {e}")
    return ml.load_raw()
