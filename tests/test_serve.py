"""The batching HTTP server (`jaxdl.serve.server`, `python -m jaxdl.serve`) on a free loopback port: good requests
give the artifact's predictions, malformed ones a 4xx with a reason (never a 5xx), concurrent requests merge into
batches (seen in the batch-size histogram), /metrics parses as Prometheus text, and SIGTERM finishes an in-flight
request before the process exits 0."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from deploy_helpers import trained_run
from prometheus_client.parser import text_string_to_metric_families

from jaxdl import data
from jaxdl.export import export_run
from jaxdl.serve.artifact import Artifact
from jaxdl.serve.server import Server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def artifact_dir(data_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("artifact"))
    export_run(trained_run(data_dir), out)
    return out


@pytest.fixture(scope="module")
def examples(data_dir):
    source = data.load("mnist1d", "test", data_dir)
    return np.stack([source[i]["x"] for i in range(16)]).astype(np.float32)


def request(port, method, path, body=None, headers=None):
    """(status, parsed JSON or text) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        text = resp.read().decode()
        is_json = resp.getheader("Content-Type", "").startswith("application/json")
        return resp.status, json.loads(text) if is_json else text
    finally:
        conn.close()


def post(port, obj):
    return request(port, "POST", "/v1/predict", json.dumps(obj), {"Content-Type": "application/json"})


def metric_samples(port) -> dict:
    """{(sample name, frozen labels): value} parsed from /metrics by prometheus_client's own parser."""
    status, text = request(port, "GET", "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_endpoints_good_and_malformed_requests(artifact_dir, examples):
    art = Artifact(artifact_dir)
    server = Server(art, max_batch_size=8, max_wait_ms=1).start()
    port = server.port
    try:
        assert request(port, "GET", "/healthz") == (200, {"status": "ok"})
        status, out = post(port, {"inputs": examples[:5].tolist()})
        assert status == 200
        want = art(examples[:5])
        assert out["predictions"] == want.argmax(-1).tolist()
        np.testing.assert_allclose(out["logits"], want, rtol=1e-5, atol=1e-5)  # padded to a batch of 8
        assert all(0.1 <= c <= 1.0 for c in out["confidence"])
        status, raw_out = post(port, {"raw": examples[:5].tolist()})  # raw features through preprocess.json
        assert status == 200 and raw_out["predictions"] == out["predictions"]
        assert request(port, "GET", "/v1/model")[1]["weights_sha256"] == art.manifest["weights_sha256"]

        bad = [
            (b"{not json", 400, "not valid JSON"),
            (b"[1, 2]", 400, "must be a JSON object"),
            (json.dumps({"input": [[0.0] * 40]}).encode(), 400, "unknown key(s) ['input']"),
            (json.dumps({}).encode(), 400, "exactly one of 'inputs'"),
            (json.dumps({"inputs": []}).encode(), 400, "non-empty list"),
            (json.dumps({"inputs": [[0.0] * 39]}).encode(), 400, "shape [1, 39] does not match [batch >= 1, 40]"),
            (json.dumps({"inputs": [["x"] * 40]}).encode(), 400, "not a float32 array"),
            (json.dumps({"inputs": [[0.0] * 40, [0.0] * 3]}).encode(), 400, "'inputs'"),  # ragged
            (b'{"inputs": [[NaN' + b", 0.0" * 39 + b"]]}", 400, "NaN"),
            (json.dumps({"inputs": [[0.0] * 40] * 9}).encode(), 413, "at most max_batch_size=8"),
        ]
        for body, code, reason in bad:
            status, out = request(port, "POST", "/v1/predict", body, {"Content-Type": "application/json"})
            assert status == code and reason in out["error"], (body[:40], status, out)
        assert request(port, "GET", "/nope")[0] == 404
        assert request(port, "GET", "/v1/predict")[0] == 405
        assert request(port, "DELETE", "/v1/predict")[0] == 405
        status, out = request(
            port, "POST", "/v1/predict", b"x" * 100, {"Content-Length": str(server.max_body_bytes + 1)}
        )
        assert status == 413 and "max_body_bytes" in out["error"]

        samples = metric_samples(port)
        codes = {dict(k[1])["code"]: v for k, v in samples.items() if k[0] == "jaxdl_requests_total"}
        assert not any(c.startswith("5") for c in codes), codes  # zero 5xx
        assert samples[("jaxdl_examples_total", ())] == 10
        assert samples[("jaxdl_request_latency_seconds_count", ())] == 2 + len(bad) + 1
        predicted = sum(v for k, v in samples.items() if k[0] == "jaxdl_predicted_class_total")
        assert predicted == 10
    finally:
        server.shutdown()


def test_concurrent_requests_are_merged_into_batches(artifact_dir, examples):
    art = Artifact(artifact_dir)
    server = Server(art, max_batch_size=16, max_wait_ms=300).start()
    try:
        results = [None] * 12
        barrier = threading.Barrier(12)

        def client(i):
            barrier.wait()
            results[i] = post(server.port, {"inputs": examples[i : i + 1].tolist()})

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        want = art(examples[:12]).argmax(-1)
        assert [r[0] for r in results] == [200] * 12
        assert [r[1]["predictions"][0] for r in results] == want.tolist()
        samples = metric_samples(server.port)
        batches = samples[("jaxdl_batch_size_count", ())]
        assert samples[("jaxdl_batch_size_sum", ())] == 12  # every row went through one batch
        assert batches < 12 / 2, batches  # 12 one-row requests ran as a few merged batches, not 12 calls
        assert samples[("jaxdl_batch_size_bucket", (("le", "1.0"),))] < batches or batches == 1
    finally:
        server.shutdown()


def test_drift_monitor_alerts_on_shifted_traffic(artifact_dir, data_dir):
    source = data.load("mnist1d", "test", data_dir)
    live = np.stack([source[i]["x"] for i in range(256, 506)]).astype(np.float32)  # after the 256 reference rows
    server = Server(Artifact(artifact_dir), max_batch_size=16, max_wait_ms=1, drift_window=100).start()

    def wait_checks(n):
        for _ in range(200):
            samples = metric_samples(server.port)
            if samples.get(("jaxdl_drift_checks_total", ()), 0) >= n:
                return samples
            time.sleep(0.05)
        raise AssertionError(f"fewer than {n} drift checks")

    try:
        for i in range(0, 150, 10):  # in-distribution traffic: 150 rows, checks after rows 100 and 150
            assert post(server.port, {"inputs": live[i : i + 10].tolist()})[0] == 200
        samples = wait_checks(2)
        assert not any(k[0] == "jaxdl_drift_alerts_total" and v > 0 for k, v in samples.items()), samples
        for i in range(150, 250, 10):  # then a planted shift: every feature offset by 2
            assert post(server.port, {"inputs": (live[i : i + 10] + 2.0).tolist()})[0] == 200
        samples = wait_checks(4)
        alerts = {dict(k[1])["detector"]: v for k, v in samples.items() if k[0] == "jaxdl_drift_alerts_total"}
        assert alerts.get("ks_p", 0) >= 1 and alerts.get("mmd_p", 0) >= 1, alerts
        assert samples[("jaxdl_drift", (("stat", "mmd_p"),))] < 0.01
    finally:
        server.shutdown()


def test_cli_graceful_shutdown_finishes_in_flight_request(artifact_dir, examples):
    cmd = [sys.executable, "-m", "jaxdl.serve", f"--artifact={artifact_dir}", "--port=0", "--max_wait_ms=1500"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "serving DIR on http://127.0.0.1:PORT ..."
        assert "serving" in line, line + proc.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split()[0].strip("()"))
        assert request(port, "GET", "/healthz")[0] == 200
        result = {}
        client = threading.Thread(target=lambda: result.update(r=post(port, {"inputs": examples[:2].tolist()})))
        client.start()
        time.sleep(0.5)  # the request is queued, waiting out max_wait_ms
        proc.send_signal(signal.SIGTERM)
        client.join(timeout=60)
        assert result["r"][0] == 200 and len(result["r"][1]["predictions"]) == 2
        assert proc.wait(timeout=60) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
