"""Generation speed of WaveNet: Fast WaveNet (per-layer queues, `wavenet.generate`) vs naive recomputation of the
receptive-field window for every sample (`wavenet.generate_naive`), at 1 s of 8 kHz audio, batch 1, on the study's
model configurations (experiments/speech/wavenet.py; speed does not depend on the weights, so they are freshly
initialised). Both programs are compiled ahead of time, so the timings are execution only; the samples of the two
are compared (same key → must be identical) and the result is recorded beside the timings.

  python experiments/speech/wavenet_bench.py --out=experiments/speech/wavenet_bench.json [--length=8000]

Prints a markdown table and writes JSON: samples/s of each, the speed-up, equality, device, date, versions.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from experiments.speech.wavenet import get_config  # noqa: E402
from jaxdl.models.speech import wavenet  # noqa: E402


def _compiled(fn, graphdef, state, key, cond, length):
    run = jax.jit(lambda s, k, c: fn(nnx.merge(graphdef, s), k, length=length, cond=c))
    t = time.perf_counter()
    compiled = run.lower(state, key, cond).compile()
    return compiled, time.perf_counter() - t


def bench(kind: str, length: int, repeats: int) -> dict:
    model_cfg = dict(get_config(kind).model)
    model_cfg.pop("name")
    with nnx.use_eager_sharding(False):
        model = wavenet.Model(input_shape=(length,), rngs=nnx.Rngs(0), **model_cfg)
    graphdef, state = nnx.split(model)
    key = jax.random.key(0)
    cond = None
    if model.cond_channels:  # frames for `length` samples (random: speed does not depend on them)
        cond = jax.random.normal(jax.random.key(1), (1, -(-length // model.hop), model.cond_channels))
    row = {"model": kind, "length": length, "receptive_field": model.receptive_field, "layers": len(model.dilations)}
    samples = {}
    for name, fn, reps in (("cached", wavenet.generate, repeats), ("naive", wavenet.generate_naive, 1)):
        compiled, compile_s = _compiled(fn, graphdef, state, key, cond, length)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            out = jax.block_until_ready(compiled(state, key, cond))
            times.append(time.perf_counter() - t)
        samples[name] = np.asarray(out)
        best = min(times)
        row |= {f"{name}_s": best, f"{name}_samples_per_s": length / best, f"{name}_compile_s": compile_s}
        row[f"{name}_times_s"] = times
        print(f"  {kind} {name}: {length / best:.0f} samples/s ({best:.2f} s, compile {compile_s:.1f} s)", flush=True)
    row["speedup"] = row["naive_s"] / row["cached_s"]
    row["identical_samples"] = bool(np.array_equal(samples["cached"], samples["naive"]))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="experiments/speech/wavenet_bench.json")
    p.add_argument("--length", type=int, default=8000)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the cached program (best kept)")
    a = p.parse_args()
    rows = [bench(kind, a.length, a.repeats) for kind in ("uncond", "cond")]
    import flax

    env = {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared with other jobs)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "command": " ".join(["python", *sys.argv]),
    }
    with open(a.out, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    print("| model | receptive field | cached samples/s | naive samples/s | speed-up | identical samples |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['receptive_field']} | {r['cached_samples_per_s']:.0f} | "
            f"{r['naive_samples_per_s']:.0f} | {r['speedup']:.0f}× | {r['identical_samples']} |"
        )


if __name__ == "__main__":
    main()
