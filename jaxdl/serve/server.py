"""The batching HTTP JSON server of a serving artifact (`python -m jaxdl.serve --artifact=DIR --port=N`).

Endpoints:
  POST /v1/predict   {"inputs": [[...], ...]} (preprocessed, `[n, *input_shape]`) or {"raw": [...]} (the dataset's
                     raw features, preprocessed by the artifact's preprocess.json) -> 200 {"predictions": [int],
                     "confidence": [float], "logits": [[float]], "labels": [str] (when the artifact names classes)}
  GET  /healthz      200 {"status": "ok"}; 503 {"status": "draining"} once shutdown began
  GET  /metrics      Prometheus text format: requests by code, request latency histogram, batch size histogram,
                     model time, examples, predicted-class counter, confidence histogram, queue depth
  GET  /v1/model     the artifact's manifest (source run, io, hashes)
Drift (`drift_window` > 0 and the artifact has reference.npz): a `jaxdl.serve.drift.Monitor` compares the last
`drift_window` served inputs (KS per feature, MMD permutation test) and confidences (PSI) with the export-time
reference every `drift_window // 2` rows, in its own thread (never delaying a response); /metrics exports the
latest p-values / PSI and counts alerts by detector.
Bad requests get 4xx with {"error": reason}: 400 (not JSON, missing/unknown key, wrong shape or dtype, NaN),
404 (path), 405 (method), 411 (no Content-Length), 413 (body > max_body_bytes or more rows than max_batch_size).

Why the standard library's `ThreadingHTTPServer`: no dependency, and a thread per connection is enough because the
model runs in one batching thread anyway (requests only enqueue rows and wait); JAX releases the GIL while the
compiled program runs. `prometheus_client` (already pulled in by orbax) writes the exposition format.

Dynamic batching (`Batcher`): the worker takes the oldest request, then keeps collecting until `max_batch_size`
rows are queued or `max_wait_ms` passed since that request arrived; the rows are concatenated, padded up to the
next allowed batch size (powers of two up to `max_batch_size`, each compiled once at start-up so no request pays a
compile), run in one call, and split back. Graceful shutdown (`Server.shutdown`, SIGTERM/SIGINT in `serve`):
/healthz turns 503, the listener stops accepting, in-flight requests finish (their batches run), then the worker
stops.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from jaxdl.serve.artifact import Artifact, ArtifactError
from jaxdl.serve.drift import Monitor

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A client error: HTTP `status` (4xx) and a reason sent back as {"error": reason}."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Pending:
    __slots__ = ("x", "arrived", "done", "logits", "error")

    def __init__(self, x: np.ndarray):
        self.x, self.arrived, self.done = x, time.monotonic(), threading.Event()
        self.logits: np.ndarray | None = None
        self.error: BaseException | None = None


def allowed_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below `max_batch_size`, then `max_batch_size` itself: the shapes the model is compiled for."""
    sizes, b = [], 1
    while b < max_batch_size:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch_size]


class Metrics:
    """The server's Prometheus metrics, in their own registry (several servers can live in one process)."""

    def __init__(self, max_batch_size: int, num_classes: int):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("jaxdl_requests", "HTTP requests by path and status code", ["path", "code"], registry=r)
        self.latency = Histogram(
            "jaxdl_request_latency_seconds",
            "wall time of POST /v1/predict, parse to response",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.batch_size = Histogram(
            "jaxdl_batch_size", "rows per model call (before padding)", buckets=allowed_batch_sizes(max_batch_size),
            registry=r,
        )  # fmt: skip
        self.model_seconds = Histogram("jaxdl_model_seconds", "time of one batched model call", registry=r)
        self.examples = Counter("jaxdl_examples", "examples predicted", registry=r)
        self.predicted = Counter("jaxdl_predicted_class", "predictions by class id", ["cls"], registry=r)
        for c in range(num_classes):
            self.predicted.labels(cls=str(c))
        self.confidence = Histogram(
            "jaxdl_confidence", "softmax probability of the predicted class",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0), registry=r,
        )  # fmt: skip
        self.queue_rows = Gauge("jaxdl_queue_rows", "rows waiting for the batcher", registry=r)
        self.drift = Gauge("jaxdl_drift", "latest drift statistic (ks_p, mmd_p: p-values; psi)", ["stat"], registry=r)
        self.drift_alerts = Counter("jaxdl_drift_alerts", "drift alerts by detector", ["detector"], registry=r)
        self.drift_checks = Counter("jaxdl_drift_checks", "drift checks run", registry=r)


class Batcher:
    """Merges concurrent requests into model calls of at most `max_batch_size` rows, waiting at most
    `max_wait_s` after the oldest queued request. `submit(x)` blocks until that request's logits are ready."""

    def __init__(self, artifact: Artifact, metrics: Metrics, max_batch_size: int, max_wait_s: float):
        self.artifact, self.metrics = artifact, metrics
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_s
        self.sizes = allowed_batch_sizes(max_batch_size)
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)

    def warm_up(self) -> None:
        """Compiles every allowed batch size once (before the server listens)."""
        for b in self.sizes:
            self.artifact(np.zeros((b, *self.artifact.input_shape), self.artifact.input_dtype))

    def start(self) -> None:
        self._thread.start()

    def submit(self, x: np.ndarray) -> np.ndarray:
        p = _Pending(x)
        self.metrics.queue_rows.inc(len(x))
        self._queue.put(p)
        p.done.wait()
        if p.error is not None:
            raise p.error
        return p.logits

    def stop(self) -> None:
        """Runs what is queued, then ends the worker thread."""
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        carry: _Pending | None = None
        while True:
            try:
                first = carry or self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch, rows, carry = [first], len(first.x), None
            deadline = first.arrived + self.max_wait_s
            while rows < self.max_batch_size:
                try:
                    p = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if rows + len(p.x) > self.max_batch_size:
                    carry = p  # starts the next batch
                    break
                batch.append(p)
                rows += len(p.x)
            self._run(batch, rows)

    def _run(self, batch: list[_Pending], rows: int) -> None:
        m = self.metrics
        m.queue_rows.dec(rows)
        try:
            x = np.concatenate([p.x for p in batch])
            size = next(s for s in self.sizes if s >= rows)
            if size > rows:
                x = np.concatenate([x, np.zeros((size - rows, *x.shape[1:]), x.dtype)])
            start = time.perf_counter()
            logits = self.artifact(x)[:rows]
            m.model_seconds.observe(time.perf_counter() - start)
            m.batch_size.observe(rows)
            offset = 0
            for p in batch:
                p.logits = logits[offset : offset + len(p.x)]
                offset += len(p.x)
        except Exception as e:  # reported to each waiting request (a 500), never kills the worker
            log.exception("batch of %d rows failed", rows)
            for p in batch:
                p.error = e
        for p in batch:
            p.done.set()


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # an idle keep-alive connection closes after this, so shutdown never waits on one for long

    def log_message(self, format: str, *args: Any) -> None:  # quiet: metrics count requests
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.server.app.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        path = self.path.split("?")[0]
        known = path if path in ("/v1/predict", "/healthz", "/metrics", "/v1/model") else "other"
        self.server.app.metrics.requests.labels(path=known, code=str(code)).inc()

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode())

    def do_GET(self) -> None:
        app, path = self.server.app, self.path.split("?")[0]
        if path == "/healthz":
            self._json(503, {"status": "draining"}) if app.draining else self._json(200, {"status": "ok"})
        elif path == "/metrics":
            self._send(200, generate_latest(app.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/v1/model":
            self._json(200, app.artifact.manifest)
        elif path == "/v1/predict":
            self._json(405, {"error": "use POST for /v1/predict"})
        else:
            self._json(404, {"error": f"no endpoint {path!r}; endpoints: POST /v1/predict, GET /healthz, /metrics"})

    def _not_allowed(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, self.server.app.max_body_bytes))
        self._json(405, {"error": f"method {self.command} is not allowed; use GET or POST"})

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def do_POST(self) -> None:
        app, path = self.server.app, self.path.split("?")[0]
        if path != "/v1/predict":
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, app.max_body_bytes))
            code = 405 if path in ("/healthz", "/metrics", "/v1/model") else 404
            return self._json(code, {"error": f"POST {path!r}: only POST /v1/predict"})
        start = time.perf_counter()
        try:
            body = self._read_body()
            self._json(200, app.predict(body))
        except RequestError as e:
            self._json(e.status, {"error": e.reason})
        except Exception as e:  # a server bug: 500 with the reason, the server keeps running
            log.exception("predict failed")
            self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})
        finally:
            app.metrics.latency.observe(time.perf_counter() - start)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RequestError(411, "Content-Length header is required")
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"Content-Length {length!r} is not an integer") from None
        if n > self.server.app.max_body_bytes:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise RequestError(413, f"body of {n} bytes exceeds max_body_bytes={self.server.app.max_body_bytes}")
        return self.rfile.read(n)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads: in-flight requests finish
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: the default 5 drops bursts of connections (1 s SYN retransmits)

    def __init__(self, address, app: Server):
        self.app = app
        super().__init__(address, _Handler)


class Server:
    """An artifact served over HTTP. `start()` returns once listening on (`host`, `port`; port 0 = a free one,
    read back from `.port`); `shutdown()` drains and stops."""

    def __init__(
        self,
        artifact: Artifact,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_body_bytes: int = 8 << 20,
        drift_window: int = 200,
    ):
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch_size >= 1 and max_wait_ms >= 0, got {max_batch_size}, {max_wait_ms}")
        self.artifact, self.max_batch_size, self.max_body_bytes = artifact, max_batch_size, max_body_bytes
        self.metrics = Metrics(max_batch_size, artifact.num_classes)
        self.batcher = Batcher(artifact, self.metrics, max_batch_size, max_wait_ms / 1000.0)
        self.draining = False
        reference = artifact.reference() if drift_window > 0 else None
        self.monitor = None
        if reference is not None:
            self.monitor = Monitor(
                reference["input"], reference_scores=reference["confidence"], window=drift_window,
                every=max(drift_window // 2, 1),
            )  # fmt: skip
        self._drift_queue: queue.Queue = queue.Queue()
        self._drift_thread = threading.Thread(target=self._drift_loop, name="drift", daemon=True)
        self.batcher.warm_up()
        self.httpd = _HTTPServer((host, port), self)
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def start(self) -> Server:
        self.batcher.start()
        if self.monitor is not None:
            self._drift_thread.start()
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Graceful: stop accepting, let in-flight requests finish, then stop the batcher."""
        self.draining = True
        self.httpd.shutdown()  # serve_forever returns; handler threads keep running
        self.httpd.server_close()  # joins them (block_on_close)
        self.batcher.stop()
        if self._drift_thread.is_alive():
            self._drift_queue.put(None)
            self._drift_thread.join()

    def _drift_loop(self) -> None:
        m = self.metrics
        while (item := self._drift_queue.get()) is not None:
            checks = self.monitor.checks
            try:
                alerts = self.monitor.add(*item)
            except Exception:  # a monitoring failure must not touch serving
                log.exception("drift check failed")
                continue
            if self.monitor.checks > checks:
                m.drift_checks.inc(self.monitor.checks - checks)
                for stat, value in self.monitor.last.items():
                    m.drift.labels(stat=stat).set(value)
            for a in alerts:
                m.drift_alerts.labels(detector=a.detector).inc()
                log.warning("drift alert: %s = %.4g (threshold %.4g)", a.detector, a.value, a.threshold)

    def parse(self, body: bytes) -> np.ndarray:
        """The request body -> the model input `[n, *input_shape]`, or RequestError(400/413) saying why not."""
        try:
            req = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"body is not valid JSON: {e}") from None
        if not isinstance(req, dict):
            raise RequestError(400, f'body must be a JSON object like {{"inputs": [...]}}, got {type(req).__name__}')
        keys = [k for k in ("inputs", "raw") if k in req]
        unknown = sorted(set(req) - {"inputs", "raw"})
        if unknown:
            raise RequestError(400, f"unknown key(s) {unknown}; send exactly one of 'inputs' or 'raw'")
        if len(keys) != 1:
            raise RequestError(400, "send exactly one of 'inputs' (preprocessed) or 'raw' (dataset features)")
        key, rows = keys[0], req[keys[0]]
        if not isinstance(rows, list) or not rows:
            raise RequestError(400, f"'{key}' must be a non-empty list of examples")
        if len(rows) > self.max_batch_size:
            raise RequestError(413, f"'{key}' has {len(rows)} examples; at most max_batch_size={self.max_batch_size}")
        try:
            x = self.artifact.preprocess(rows) if key == "raw" else rows
            return self.artifact.check_input(x)
        except ArtifactError as e:
            raise RequestError(400, f"'{key}': {e}") from None

    def predict(self, body: bytes) -> dict[str, Any]:
        x = self.parse(body)
        logits = self.batcher.submit(x)
        probs = _softmax(logits.astype(np.float64))
        pred = probs.argmax(-1)
        conf = probs[np.arange(len(pred)), pred]
        m = self.metrics
        m.examples.inc(len(pred))
        for c, p in zip(pred, conf, strict=True):
            m.predicted.labels(cls=str(int(c))).inc()
            m.confidence.observe(float(p))
        if self.monitor is not None:
            self._drift_queue.put((x, conf))
        out = {"predictions": pred.tolist(), "confidence": conf.tolist(), "logits": logits.tolist()}
        if self.artifact.class_names:
            out["labels"] = [self.artifact.class_names[int(c)] for c in pred]
        return out


def serve(artifact_dir: str, **kwargs: Any) -> None:
    """Loads (and hash-checks) the artifact, serves until SIGTERM/SIGINT, then shuts down gracefully."""
    import signal

    art = Artifact(artifact_dir)
    art.self_check()
    server = Server(art, **kwargs).start()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"serving {artifact_dir} on http://{server.host}:{server.port} (POST /v1/predict)", flush=True)
    stopping.wait()
    print("shutting down: finishing in-flight requests", flush=True)
    server.shutdown()
    print("stopped", flush=True)
