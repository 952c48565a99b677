"""A bounded loopback load test of `python -m jaxdl.serve`: latency percentiles and throughput per batching setting.

    python -m jaxdl.serve.loadtest --artifact=DIR --out=results.json \
        [--settings=1:0,8:2,32:5] [--requests=2000] [--concurrency=32] [--rows=1]

For each `max_batch_size:max_wait_ms` setting a fresh server process listens on 127.0.0.1 (a free port; nothing
else is ever contacted), `concurrency` closed-loop client threads (each sends its next request when the previous
answers; persistent HTTP/1.1 connections) send `requests` requests of `rows` eval-split examples in total, and the
server is stopped with SIGTERM. Reported per setting: p50/p95/p99/mean latency (ms, client side), throughput
(requests/s and examples/s), status counts (any 5xx is listed), and the server's mean batch size from /metrics.
It is a benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from absl import app, flags

MAX_REQUESTS = 100_000  # the bound: no setting sends more

FLAGS = flags.FLAGS


def _start_server(artifact: str, max_batch: int, max_wait_ms: float) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "jaxdl.serve", f"--artifact={artifact}", "--host=127.0.0.1", "--port=0",
           f"--max_batch_size={max_batch}", f"--max_wait_ms={max_wait_ms}", "--drift_window=0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(line.split("http://127.0.0.1:")[1].split()[0])


def _metrics(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def run_setting(artifact: str, examples: np.ndarray, max_batch: int, max_wait_ms: float, requests: int,
                concurrency: int, rows: int) -> dict:  # fmt: skip
    """One setting's latency/throughput figures (see the module docstring)."""
    requests = min(requests, MAX_REQUESTS)
    proc, port = _start_server(artifact, max_batch, max_wait_ms)
    latencies, statuses, errors, lock = [], {}, [], threading.Lock()
    counter = iter(range(requests))

    def client(worker: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in counter:
            start = (worker * 7919 + i * rows) % (len(examples) - rows)
            body = json.dumps({"inputs": examples[start : start + rows].tolist()})
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as e:  # counted, and the client reconnects
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
        conn.close()

    try:
        threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        m = _metrics(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lat = np.asarray(latencies) * 1000
    return {
        "max_batch_size": max_batch,
        "max_wait_ms": max_wait_ms,
        "requests": len(lat),
        "rows_per_request": rows,
        "concurrency": concurrency,
        "latency_ms": {q: float(np.percentile(lat, p)) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"mean": float(lat.mean())},
        "throughput_rps": len(lat) / wall,
        "throughput_examples_per_s": len(lat) * rows / wall,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "server_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "client_errors": len(errors),
        "first_client_errors": errors[:3],
        "mean_batch_size": m["jaxdl_batch_size_sum"] / max(m["jaxdl_batch_size_count"], 1),
        "model_ms_per_call": 1000 * m["jaxdl_model_seconds_sum"] / max(m["jaxdl_model_seconds_count"], 1),
        "server_exit_code": proc.returncode,
        "wall_s": wall,
    }


def define_flags() -> None:
    """The command-line flags, defined only when this module runs as the program (so importing it beside
    another jaxdl command cannot define a flag such as --workdir twice)."""
    flags.DEFINE_string("artifact", None, "artifact folder (python -m jaxdl.export)", required=True)
    flags.DEFINE_string("out", None, "JSON file to write the results to")
    flags.DEFINE_list("settings", ["1:0", "8:2", "32:5"], "max_batch_size:max_wait_ms pairs")
    flags.DEFINE_integer("requests", 2000, "requests per setting")
    flags.DEFINE_integer("concurrency", 32, "client threads")
    flags.DEFINE_integer("rows", 1, "examples per request")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with np.load(os.path.join(FLAGS.artifact, "reference.npz"), allow_pickle=False) as npz:
        examples = npz["input"]  # eval-split inputs saved by the export
    results = []
    for setting in FLAGS.settings:
        try:
            b, w = setting.split(":")
            max_batch, max_wait = int(b), float(w)
        except ValueError:
            raise app.UsageError(f"--settings: {setting!r} is not max_batch_size:max_wait_ms") from None
        r = run_setting(FLAGS.artifact, examples, max_batch, max_wait, FLAGS.requests, FLAGS.concurrency, FLAGS.rows)
        results.append(r)
        lat = r["latency_ms"]
        print(f"batch<={max_batch:3d} wait {max_wait:4.1f} ms: p50 {lat['p50']:.2f} p95 {lat['p95']:.2f} "
              f"p99 {lat['p99']:.2f} ms, {r['throughput_rps']:.0f} req/s, mean batch {r['mean_batch_size']:.1f}, "
              f"5xx {r['server_5xx']}", flush=True)  # fmt: skip
    if FLAGS.out:
        out = {
            "command": " ".join(["python -m jaxdl.serve.loadtest", *argv[1:], *sys.argv[1:]]),
            "artifact": FLAGS.artifact,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "date": time.strftime("%Y-%m-%d"),
            "results": results,
        }
        with open(FLAGS.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
