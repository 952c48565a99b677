"""Multi-process start-up: who am I, who is the coordinator, and `jax.distributed.initialize` without hangs.

`initialize(...)` runs once per process before the trainer touches a device. Each of the three cluster parameters
is resolved on its own, first match wins:

1. the explicit argument (`--coordinator_address`, `--num_processes`, `--process_id` in `jaxdl.main`);
2. the environment: `JAXDL_COORDINATOR` (then JAX's own `JAX_COORDINATOR_ADDRESS`), `JAXDL_NUM_PROCESSES`,
   `JAXDL_PROCESS_ID` (what `launch/multiprocess.sh` and `launch/k8s_jobset.yaml` set);
3. JAX's cluster detection (`jax._src.clusters`: SLURM, Open MPI, Cloud TPU pods on GCE/GKE, Kubernetes
   Indexed Jobs/JobSets), the same code `jax.distributed.initialize()` runs when given no arguments.

Nothing given and nothing detected (or `num_processes == 1`) means a single-process run: JAX is not initialized
for multi-process at all. When every parameter came from arguments/env, JAX's detection is switched off
(`cluster_detection_method="deactivate"`) so that, e.g., a SLURM allocation around a local launch does not
restrict the visible devices behind our back; when detection was used, JAX also picks `local_device_ids`
(one GPU per SLURM/MPI task).

Why a handshake of our own. `jax.distributed.initialize` blocks until every process has registered with the
coordination service, and when `initialization_timeout` passes it does not raise: the XLA client logs
DEADLINE_EXCEEDED and aborts the process (SIGABRT, exit 134, a C++ stack trace and no hint of which peer is
missing). So before calling it, all processes meet in a small TCP barrier on the coordinator's own port:

* process 0 listens on `[::]:<port>` (dual-stack, or 0.0.0.0) and waits up to `timeout_s` until every process
  1..n-1 has connected and sent `jaxdl-barrier 1 <process_id> <num_processes>`; it checks the ids (in range,
  no duplicates) and that everyone agrees on `num_processes`, drops peers whose connection closed while waiting
  (they may come back), then answers `go` to all, waits for the peers to hang up first (so the TIME_WAIT
  sockets sit on their side and the port is free at once), closes its socket and starts JAX's service on the
  same port;
* every other process retries `connect(host, port)` until `timeout_s`, sends its hello, waits for `go`, closes,
  then calls `jax.distributed.initialize` (its gRPC client retries until process 0's service is up, < 1 s).

A missing or misconfigured process therefore ends every process with a `DistributedInitError` that says who is
missing, within `timeout_s`: process 0 says which process ids never arrived, the others say they could not reach
the coordinator (is process 0 running?) or relay process 0's error. Once all processes are known alive JAX's
own registration takes well under a second; its `initialization_timeout` is still set to `timeout_s`, so the
only remaining abort is a process dying in that sub-second window. No extra port is needed.

On CPU, cross-process collectives need an implementation: `jax_cpu_collectives_implementation` is set to
`cpu_collectives` ("gloo", or "mpi") before JAX's backend starts.
"""

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import jax

log = logging.getLogger(__name__)

ENV_COORDINATOR = "JAXDL_COORDINATOR"
ENV_NUM_PROCESSES = "JAXDL_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXDL_PROCESS_ID"
_JAX_ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # JAX's own variable, honored after ours
_HELLO = "jaxdl-barrier 1"
FIELDS = ("coordinator_address", "num_processes", "process_id")

Detector = Callable[[Collection[str], float], tuple[str, dict[str, Any]] | None]


class DistributedInitError(RuntimeError):
    """The processes of a multi-process job could not find each other (names who is missing and where)."""


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """Where this process sits in the job. `sources[field]` says where each value came from."""

    coordinator_address: str | None
    num_processes: int
    process_id: int
    local_device_ids: tuple[int, ...] | None = None
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def is_distributed(self) -> bool:
        return self.num_processes > 1

    @property
    def detected_by_jax(self) -> bool:
        return any(s.startswith("detected") for s in self.sources.values())


# ------------------------------------------------------------------------------------------------ resolution
def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise DistributedInitError(f"${name}={value!r} is not an integer") from None


def detect_cluster(need: Collection[str], timeout_s: float) -> tuple[str, dict[str, Any]] | None:
    """JAX's cluster detection: (cluster name, {field: value} for the fields in `need`), or None if no known
    cluster environment (SLURM, Open MPI, Cloud TPU, Kubernetes) is present."""
    try:
        from jax._src import clusters
    except ImportError:  # pragma: no cover - JAX moved its internals; explicit args/env still work
        log.warning("jax._src.clusters is gone: cluster auto-detection off; set %s etc.", ENV_COORDINATOR)
        return None
    env = next((c for c in clusters.ClusterEnv._cluster_types if not c.opt_in_only_method and c.is_env_present()), None)
    if env is None:
        return None
    values: dict[str, Any] = {}
    try:
        if "coordinator_address" in need:
            values["coordinator_address"] = env.get_coordinator_address(
                timeout_secs=int(timeout_s), override_coordinator_port=os.environ.get("JAX_COORDINATOR_PORT")
            )
        if "num_processes" in need:
            values["num_processes"] = int(env.get_process_count())
        if "process_id" in need:
            values["process_id"] = int(env.get_process_id())
    except Exception as e:  # k8s API errors, unreadable metadata, ...: say which detector failed
        raise DistributedInitError(
            f"{env.__name__} cluster detected but its parameters could not be read: {type(e).__name__}: {e}; "
            f"set {ENV_COORDINATOR}, {ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} (or the flags) instead"
        ) from e
    return env.__name__, values


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    *,
    timeout_s: float = 300,
    env: Mapping[str, str] | None = None,
    detect: Detector | None = detect_cluster,
) -> ClusterSpec:
    """The cluster parameters by precedence (arguments > env > JAX's detection), validated; no JAX calls.

    `env` defaults to `os.environ`; `detect` (None: off) is asked only for the fields still unset."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    from_env = {
        "coordinator_address": [
            (ENV_COORDINATOR, env.get(ENV_COORDINATOR) or None),
            (_JAX_ENV_COORDINATOR, env.get(_JAX_ENV_COORDINATOR) or None),
        ],
        "num_processes": [(ENV_NUM_PROCESSES, _env_int(env, ENV_NUM_PROCESSES))],
        "process_id": [(ENV_PROCESS_ID, _env_int(env, ENV_PROCESS_ID))],
    }
    explicit = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    for field in FIELDS:
        if explicit[field] is not None:
            values[field], sources[field] = explicit[field], "argument"
            continue
        for name, value in from_env[field]:
            if value is not None:
                values[field], sources[field] = value, f"${name}"
                break
    need = [f for f in FIELDS if f not in values]
    if need and detect is not None and values.get("num_processes") != 1:
        found = detect(need, timeout_s)
        if found is not None:
            name, detected = found
            for field in need:
                if detected.get(field) is not None:
                    values[field], sources[field] = detected[field], f"detected ({name})"

    n, pid, coord = values.get("num_processes"), values.get("process_id"), values.get("coordinator_address")
    ids = (local_device_ids,) if isinstance(local_device_ids, int) else local_device_ids
    ids = tuple(int(i) for i in ids) if ids is not None else None
    if n is None:
        if coord is None and pid is None:  # nothing given, nothing detected
            return ClusterSpec(None, 1, 0, ids, {"num_processes": "default (no cluster detected)"})
        given = ", ".join(f"{f}={values[f]!r} ({sources[f]})" for f in FIELDS if f in values)
        raise DistributedInitError(
            f"{given} but the number of processes is unknown: pass --num_processes or set ${ENV_NUM_PROCESSES}"
        )
    if not isinstance(n, int) or n < 1:
        raise DistributedInitError(f"num_processes must be a positive int, got {n!r} ({sources['num_processes']})")
    if n == 1:
        if pid not in (None, 0):
            raise DistributedInitError(f"process_id={pid} ({sources['process_id']}) but num_processes=1")
        return ClusterSpec(coord, 1, 0, ids, sources)
    if pid is None:
        raise DistributedInitError(
            f"num_processes={n} ({sources['num_processes']}) but this process's id is unknown: "
            f"pass --process_id or set ${ENV_PROCESS_ID}"
        )
    if not isinstance(pid, int) or not 0 <= pid < n:
        raise DistributedInitError(f"process_id={pid!r} ({sources['process_id']}) is not in [0, {n})")
    if coord is None:
        raise DistributedInitError(
            f"process {pid} of {n}: no coordinator address; pass --coordinator_address=host:port "
            f"or set ${ENV_COORDINATOR} (the address of process 0 and a free port on it)"
        )
    split_address(coord)  # validates host:port
    return ClusterSpec(str(coord), n, pid, ids, sources)


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" or "[ipv6]:port" -> (host, port)."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedInitError(f"coordinator address {address!r} is not host:port")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------------------------------------ barrier
def _readline(sock: socket.socket, limit: int = 4096) -> str | None:
    """One '\\n'-terminated line (without it), or None if the peer closed first. Honors the socket timeout."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > limit:
            return None
    return buf[:-1].decode("ascii", "replace")


def _closed(sock: socket.socket) -> bool:
    """True if the peer hung up (a waiting peer sends nothing after its hello)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # a socket with a timeout would wait for data before peeking
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


def _listen(port: int) -> socket.socket:
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128)
    return socket.create_server(("", port), backlog=128)


def _coordinator_barrier(address: str, num_processes: int, timeout_s: float) -> None:
    """Process 0's side: wait for processes 1..n-1 on the coordinator port, then release them."""
    _, port = split_address(address)
    deadline = time.monotonic() + timeout_s
    try:
        server = _listen(port)
    except OSError as e:
        raise DistributedInitError(
            f"process 0 of {num_processes} could not listen on port {port} of the coordinator address {address}: "
            f"{e} (is an earlier run still holding it?)"
        ) from e
    peers: dict[int, socket.socket] = {}

    def fail(message: str, *others: socket.socket) -> None:
        for conn in [*peers.values(), *others]:  # tell everyone who is waiting why, then give up
            try:
                conn.sendall(f"error {message}\n".encode())
            except OSError:
                pass
            conn.close()
        peers.clear()
        raise DistributedInitError(message)

    try:
        server.settimeout(0.2)
        while True:
            for pid in [p for p, conn in peers.items() if _closed(conn)]:
                log.warning("process %d hung up before all processes arrived; waiting for it to come back", pid)
                peers.pop(pid).close()
            if len(peers) == num_processes - 1:
                break
            if time.monotonic() >= deadline:
                missing = sorted(set(range(1, num_processes)) - set(peers))
                fail(
                    f"process 0 of {num_processes}: {len(peers)} of the {num_processes - 1} other processes reached "
                    f"the coordinator at {address} within {timeout_s:g} s; missing process id(s) {missing}. "
                    "Are they running, with the same --coordinator_address and --num_processes?"
                )
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(max(min(5.0, deadline - time.monotonic()), 0.5))
            try:
                words = (_readline(conn) or "").split()
            except OSError:
                words = []
            if len(words) != 4 or " ".join(words[:2]) != _HELLO or not all(w.isdigit() for w in words[2:]):
                conn.close()  # not one of ours (a port scan, a health check): ignore it
                continue
            pid, n = int(words[2]), int(words[3])
            if n != num_processes:
                fail(f"process {pid} was started with num_processes={n}, process 0 with {num_processes}", conn)
            if not 0 < pid < num_processes:
                fail(f"a process claims process_id={pid}, not in [1, {num_processes}) (0 is the coordinator)", conn)
            if pid in peers:
                fail(f"two processes claim process_id={pid}", conn)
            peers[pid] = conn
            log.info("process %d of %d reached the coordinator (%d/%d)", pid, n, len(peers) + 1, n)
        for pid, conn in peers.items():
            try:
                conn.sendall(b"go\n")
            except OSError as e:
                raise DistributedInitError(f"process {pid} vanished while process 0 released the barrier: {e}") from e
        for conn in peers.values():  # let the peers hang up first, so the port is free for JAX's service at once
            conn.settimeout(2.0)
            try:
                conn.recv(1)
            except OSError:
                pass
    finally:
        for conn in peers.values():
            conn.close()
        server.close()


def _peer_barrier(address: str, num_processes: int, process_id: int, timeout_s: float) -> None:
    """Process i > 0: connect to the coordinator (retrying until the deadline), say hello, wait for `go`."""
    host, port = split_address(address)
    deadline = time.monotonic() + timeout_s
    me = f"process {process_id} of {num_processes}"
    last_error = "no attempt"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DistributedInitError(
                f"{me} could not reach the coordinator at {address} within {timeout_s:g} s; is process 0 running? "
                f"(last error: {last_error})"
            )
        try:
            sock = socket.create_connection((host, port), timeout=min(2.0, remaining))
        except OSError as e:
            last_error = f"{type(e).__name__}: {e}"
            time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))
            continue
        with sock:
            try:
                sock.sendall(f"{_HELLO} {process_id} {num_processes}\n".encode())
                sock.settimeout(max(deadline - time.monotonic(), 0.1))
                reply = _readline(sock)  # blocks until process 0 has heard from every process
            except TimeoutError:
                raise DistributedInitError(
                    f"{me} reached the coordinator at {address}, but not all {num_processes} processes arrived "
                    f"within {timeout_s:g} s"
                ) from None
            except OSError as e:
                reply, last_error = "", f"{type(e).__name__}: {e}"
        if reply == "go":
            return
        if reply is None:
            last_error = "the coordinator port closed the connection without answering (another service on it?)"
        elif reply.startswith("error "):
            raise DistributedInitError(f"{me}: the coordinator at {address} gave up: {reply[6:]}")
        elif reply:
            last_error = f"unexpected reply {reply[:80]!r} (is another service listening on that port?)"
        time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))


def barrier(spec: ClusterSpec, timeout_s: float) -> None:
    """The pre-flight handshake of the module docstring; returns when all `spec.num_processes` are alive."""
    if spec.process_id == 0:
        _coordinator_barrier(spec.coordinator_address, spec.num_processes, timeout_s)
    else:
        _peer_barrier(spec.coordinator_address, spec.num_processes, spec.process_id, timeout_s)


# ------------------------------------------------------------------------------------------------ initialize
def _set_cpu_collectives(impl: str | None) -> None:
    if not impl:
        return
    try:
        jax.config.update("jax_cpu_collectives_implementation", impl)
    except (AttributeError, KeyError, ValueError) as e:  # older JAX: a boolean gloo switch
        if impl != "gloo":
            raise DistributedInitError(f"cpu_collectives={impl!r} is not supported by jax {jax.__version__}") from e
        jax.config.update("jax_cpu_enable_gloo_collectives", True)


def _summary(spec: ClusterSpec) -> str:
    local, devices = jax.local_devices(), jax.devices()
    platform = devices[0].platform if devices else "?"
    head = f"process {jax.process_index()}/{jax.process_count()}"
    counts = f"{len(local)} local / {len(devices)} global {platform} devices"
    if not spec.is_distributed:
        return f"{head}: single process, {counts} (jax.distributed not initialized: {spec.sources['num_processes']})"
    sources = [spec.sources.get(f, "?") for f in FIELDS]
    where = (
        sources[0] if len(set(sources)) == 1 else ", ".join(f"{f} {s}" for f, s in zip(FIELDS, sources, strict=True))
    )
    return f"{head}: {counts}; coordinator {spec.coordinator_address} (from {where})"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    timeout_s: float = 300,
    cpu_collectives: str | None = "gloo",
) -> ClusterSpec:
    """Joins this process to its multi-process job (or notes a single-process run) and logs one summary line.

    Must run before anything starts JAX's backend (`jax.devices()`, any computation). Arguments override the
    JAXDL_* environment, which overrides JAX's cluster detection (module docstring). Raises DistributedInitError
    within about `timeout_s` seconds when a process is missing, instead of hanging or aborting.
    """
    if jax.distributed.is_initialized():
        spec = ClusterSpec(
            None, jax.process_count(), jax.process_index(), None, {f: "already initialized" for f in FIELDS}
        )
        log.info("%s", _summary(spec))
        return spec
    spec = resolve(coordinator_address, num_processes, process_id, local_device_ids, timeout_s=timeout_s)
    if spec.is_distributed:
        _set_cpu_collectives(cpu_collectives)
        t0 = time.monotonic()
        barrier(spec, timeout_s)
        log.info(
            "process %d of %d: all processes alive after %.1f s; starting jax.distributed",
            spec.process_id,
            spec.num_processes,
            time.monotonic() - t0,
        )
        jax.distributed.initialize(
            spec.coordinator_address,
            spec.num_processes,
            spec.process_id,
            local_device_ids=list(spec.local_device_ids) if spec.local_device_ids is not None else None,
            # everything explicit: keep JAX's detection from re-deciding (e.g. visible GPUs under a SLURM salloc)
            cluster_detection_method=None if spec.detected_by_jax else "deactivate",
            initialization_timeout=max(int(math.ceil(timeout_s)), 1),
        )
    log.info("%s", _summary(spec))
    return spec
