"""`python -m jaxdl.serve --artifact=DIR --port=N [--host=127.0.0.1] [--max_batch_size=32] [--max_wait_ms=5]
[--drift_window=200]`:
serves an artifact of `python -m jaxdl.export` (see `jaxdl.serve.server`). SIGTERM/SIGINT drain and stop."""

import logging

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags, defined only when this module runs as the program (so importing it beside
    another jaxdl command cannot define a flag such as --workdir twice)."""
    flags.DEFINE_string("artifact", None, "artifact folder written by python -m jaxdl.export", required=True)
    flags.DEFINE_string("host", "127.0.0.1", "address to listen on")
    flags.DEFINE_integer("port", 8000, "port (0: a free one, printed at start)")
    flags.DEFINE_integer("max_batch_size", 32, "most rows per model call (and per request)")
    flags.DEFINE_float("max_wait_ms", 5.0, "longest wait after the oldest queued request before a batch runs")
    flags.DEFINE_integer("max_body_bytes", 8 << 20, "largest request body accepted (413 above)")
    flags.DEFINE_integer("drift_window", 200, "served rows the drift monitor compares with the reference (0: off)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("absl").setLevel(logging.WARNING)
    from jaxdl.serve.server import serve

    serve(
        FLAGS.artifact,
        host=FLAGS.host,
        port=FLAGS.port,
        max_batch_size=FLAGS.max_batch_size,
        max_wait_ms=FLAGS.max_wait_ms,
        max_body_bytes=FLAGS.max_body_bytes,
        drift_window=FLAGS.drift_window,
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
