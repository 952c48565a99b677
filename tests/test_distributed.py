"""Multi-process start-up (jaxdl.parallel.distributed) and the trainer in 2 processes on this one CPU machine.

The unit tests resolve cluster parameters and run the TCP pre-flight barrier in threads (no JAX initialization).
The slow tests launch `python -m jaxdl.main` as real processes: 2 processes x 2 CPU devices must train exactly
like 1 process x 4 devices (same global batch, same seed), and a missing peer must fail fast with a clear error.
"""

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from jaxdl.metrics import TIMING_METRICS
from jaxdl.parallel import distributed
from jaxdl.parallel.distributed import ClusterSpec, DistributedInitError, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_ENV = (
    "JAXDL_COORDINATOR",
    "JAXDL_NUM_PROCESSES",
    "JAXDL_PROCESS_ID",
    "JAX_COORDINATOR_ADDRESS",
    "JAX_COORDINATOR_PORT",
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "OMPI_MCA_orte_hnp_uri",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "KUBERNETES_SERVICE_HOST",
    "TPU_WORKER_HOSTNAMES",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class FakeDetector:
    """Stands in for JAX's cluster detection; records which fields it was asked for."""

    def __init__(self, **values):
        self.values, self.calls = values, []

    def __call__(self, need, timeout_s):
        self.calls.append(sorted(need))
        return ("FakeCluster", {k: v for k, v in self.values.items() if k in need}) if self.values else None


# ------------------------------------------------------------------------------------------- precedence
def test_nothing_given_nothing_detected_is_single_process():
    detect = FakeDetector()
    spec = resolve(env={}, detect=detect)
    assert (spec.num_processes, spec.process_id, spec.is_distributed) == (1, 0, False)
    assert detect.calls == [["coordinator_address", "num_processes", "process_id"]]


def test_arguments_override_env_which_overrides_detection():
    env = {"JAXDL_COORDINATOR": "envhost:2000", "JAXDL_NUM_PROCESSES": "4", "JAXDL_PROCESS_ID": "2"}
    detect = FakeDetector(coordinator_address="slurmhost:3000", num_processes=8, process_id=5)
    spec = resolve(env=env, detect=detect)
    assert (spec.coordinator_address, spec.num_processes, spec.process_id) == ("envhost:2000", 4, 2)
    assert spec.sources["num_processes"] == "$JAXDL_NUM_PROCESSES"
    assert detect.calls == []  # everything known: detection is not even asked

    spec = resolve("arghost:1000", None, 3, env=env, detect=detect)
    assert (spec.coordinator_address, spec.num_processes, spec.process_id) == ("arghost:1000", 4, 3)
    assert spec.sources["coordinator_address"] == spec.sources["process_id"] == "argument"
    assert not spec.detected_by_jax

    spec = resolve(process_id=1, env={"JAXDL_NUM_PROCESSES": "8"}, detect=detect)
    assert (spec.coordinator_address, spec.num_processes, spec.process_id) == ("slurmhost:3000", 8, 1)
    assert detect.calls == [["coordinator_address"]]  # asked only for what is still unset
    assert spec.sources["coordinator_address"] == "detected (FakeCluster)" and spec.detected_by_jax


def test_jax_coordinator_env_is_honored_after_ours():
    env = {"JAX_COORDINATOR_ADDRESS": "jaxhost:1", "JAXDL_NUM_PROCESSES": "2", "JAXDL_PROCESS_ID": "1"}
    assert resolve(env=env, detect=None).coordinator_address == "jaxhost:1"
    assert resolve(env={**env, "JAXDL_COORDINATOR": "ours:2"}, detect=None).coordinator_address == "ours:2"


def test_one_process_skips_detection_and_initialization():
    detect = FakeDetector(coordinator_address="x:1", num_processes=8, process_id=3)
    spec = resolve(num_processes=1, env={}, detect=detect)
    assert not spec.is_distributed and detect.calls == []


def test_jax_slurm_detection_through_resolve(monkeypatch):
    for k in CLUSTER_ENV:
        monkeypatch.delenv(k, raising=False)
    for k, v in dict(
        SLURM_JOB_ID="1234", SLURM_STEP_NODELIST="node[003-004]", SLURM_NTASKS="8", SLURM_PROCID="3", SLURM_LOCALID="1"
    ).items():
        monkeypatch.setenv(k, v)
    spec = resolve()  # JAX's own SlurmCluster, as `jax.distributed.initialize()` would use it
    port = 1234 % 2**12 + 65535 - 2**12 + 1
    assert (spec.coordinator_address, spec.num_processes, spec.process_id) == (f"node003:{port}", 8, 3)
    assert spec.sources["process_id"] == "detected (SlurmCluster)"
    monkeypatch.setenv("JAXDL_PROCESS_ID", "5")
    assert resolve().process_id == 5  # env beats detection


@pytest.mark.parametrize(
    "kwargs, env, match",
    [
        (dict(num_processes=2), {}, "this process's id is unknown"),
        (dict(num_processes=2, process_id=2, coordinator_address="h:1"), {}, r"not in \[0, 2\)"),
        (dict(num_processes=2, process_id=1), {}, "no coordinator address"),
        (dict(num_processes=2, process_id=1, coordinator_address="nohostport"), {}, "is not host:port"),
        (dict(coordinator_address="h:1"), {}, "number of processes is unknown"),
        ({}, {"JAXDL_NUM_PROCESSES": "two"}, r"\$JAXDL_NUM_PROCESSES='two' is not an integer"),
        (dict(num_processes=1, process_id=1), {}, "but num_processes=1"),
    ],
)
def test_bad_parameters_name_the_problem(kwargs, env, match):
    with pytest.raises(DistributedInitError, match=match):
        resolve(**kwargs, env=env, detect=None)


def test_ipv6_address():
    assert distributed.split_address("[::1]:1234") == ("::1", 1234)


def test_initialize_single_process_does_not_start_jax_distributed(monkeypatch):
    for k in CLUSTER_ENV:
        monkeypatch.delenv(k, raising=False)
    spec = distributed.initialize()
    assert spec == ClusterSpec(None, 1, 0, None, spec.sources) and not spec.is_distributed


# ------------------------------------------------------------------------------------------- barrier
def run_barrier(specs, timeouts, delays=None):
    """Runs `barrier` for each spec in its own thread; returns {process_id: None or the exception}."""
    results = {}

    def run(spec, timeout, delay):
        time.sleep(delay)
        try:
            distributed.barrier(spec, timeout)
            results[spec.process_id] = None
        except Exception as e:
            results[spec.process_id] = e

    delays = delays or [0.0] * len(specs)
    threads = [threading.Thread(target=run, args=a) for a in zip(specs, timeouts, delays, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_barrier_releases_everyone_once_all_arrive_in_any_order():
    address = f"localhost:{free_port()}"
    specs = [ClusterSpec(address, 3, i) for i in range(3)]
    t0 = time.monotonic()
    results = run_barrier(specs, [10, 10, 10], delays=[0.5, 0.0, 1.0])  # peer 1 before the coordinator
    assert results == {0: None, 1: None, 2: None}
    assert time.monotonic() - t0 < 5
    with socket.create_server(("", int(address.split(":")[1]))):  # the port is free again for JAX's service
        pass


def test_barrier_missing_peer_fails_everyone_with_names():
    address = f"localhost:{free_port()}"
    results = run_barrier([ClusterSpec(address, 3, 0), ClusterSpec(address, 3, 1)], [1.0, 10])
    assert isinstance(results[0], DistributedInitError)
    assert "missing process id(s) [2]" in str(results[0])
    assert "gave up" in str(results[1]) and "missing process id(s) [2]" in str(results[1])


def test_barrier_peer_without_coordinator():
    address = f"localhost:{free_port()}"
    t0 = time.monotonic()
    results = run_barrier([ClusterSpec(address, 2, 1)], [1.0])
    assert time.monotonic() - t0 < 3
    assert f"process 1 of 2 could not reach the coordinator at {address} within 1 s; is process 0 running?" in str(
        results[1]
    )


def test_barrier_disagreeing_num_processes():
    address = f"localhost:{free_port()}"
    results = run_barrier([ClusterSpec(address, 2, 0), ClusterSpec(address, 3, 1)], [5, 5])
    assert "num_processes=3, process 0 with 2" in str(results[0])
    assert "num_processes=3, process 0 with 2" in str(results[1])


# ------------------------------------------------------------------------------------------- real processes
def launch(workdir, data_dir, *, devices, steps, process_id=None, num_processes=None, port=None, timeout_s=60):
    env = {k: v for k, v in os.environ.items() if k not in CLUSTER_ENV}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    cmd = [
        sys.executable,
        "-m",
        "jaxdl.main",
        "--config=experiments/mnist1d/config.py:mlp,smoke",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        f"--config.train.steps={steps}",
        "--config.train.progress=False",
        f"--distributed_timeout_s={timeout_s}",
    ]
    if num_processes is not None:
        cmd += [f"--coordinator_address=localhost:{port}", f"--num_processes={num_processes}"]
        cmd += [f"--process_id={process_id}"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs, timeout=120):
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append((p.returncode, out, err))
    for rc, out, err in outs:
        assert rc == 0, f"exit {rc}\n{out[-2000:]}\n{err[-4000:]}"
    return outs


def final_line(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("final "))[len("final ") :])


def read_records(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_METRICS} for line in f]


def assert_close(a: dict, b: dict, rel=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        assert math.isclose(a[k], b[k], rel_tol=rel, abs_tol=1e-7), (k, a[k], b[k])


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path, data_dir):
    """1 process x 4 CPU devices, 40 steps vs 2 processes x 2 devices: 30 steps, then a resumed run to 40.

    The global batch, seed and (constant) learning rate are the same, and the data stream is a pure function of
    (seed, step), so every logged train loss, eval and the final line agree (up to float reduction order); the
    resumed leg also checks that the collective orbax save/restore works across processes."""
    one, two = tmp_path / "one", tmp_path / "two"
    [(_, out1, _)] = finish([launch(one, data_dir, devices=4, steps=40)])  # also builds the dataset once

    port = free_port()
    leg1 = finish(
        [launch(two, data_dir, devices=2, steps=30, process_id=i, num_processes=2, port=port) for i in (0, 1)]
    )
    assert "process 0/2: 2 local / 4 global cpu devices" in leg1[0][2]
    assert "process 1/2: 2 local / 4 global cpu devices" in leg1[1][2]
    assert sorted(os.listdir(two / "checkpoints")) == ["15", "30"]

    port = free_port()
    leg2 = finish(
        [launch(two, data_dir, devices=2, steps=40, process_id=i, num_processes=2, port=port) for i in (0, 1)]
    )
    assert "resumed from step 30" in leg2[0][2] and "resumed from step 30" in leg2[1][2]

    final1, final2 = final_line(out1), final_line(leg2[0][1])
    assert final_line(leg2[1][1]) == final2  # every process computes the same global metrics
    assert_close(final1, final2)
    records1, records2 = read_records(one), read_records(two)
    steps = [(r["step"], "train/loss" in r) for r in records2]
    assert len(steps) == len(set(steps)), "metrics.jsonl has duplicate records: more than one process wrote it"
    assert [r["step"] for r in records1] == [r["step"] for r in records2] == [10, 15, 20, 30, 30, 40, 40]
    for a, b in zip(records1, records2, strict=True):
        assert_close(a, b)


@pytest.mark.slow
def test_missing_peer_fails_fast_with_a_clear_error(tmp_path, data_dir):
    t0 = time.monotonic()
    p = launch(
        tmp_path / "w", data_dir, devices=2, steps=30, process_id=0, num_processes=2, port=free_port(), timeout_s=10
    )
    try:
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    elapsed = time.monotonic() - t0
    assert p.returncode not in (0, -6, 134), err[-3000:]  # an error, not success and not SIGABRT
    assert "DistributedInitError: process 0 of 2: 0 of the 1 other processes reached the coordinator" in err
    assert "within 10 s; missing process id(s) [1]" in err
    assert elapsed < 30, elapsed
