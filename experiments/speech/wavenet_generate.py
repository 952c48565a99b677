"""Audio from the trained WaveNets of the study: unconditioned samples, and the conditioned model resynthesising a
held-out test prompt from its log-mel frames (a vocoder), as 16-bit WAV files plus one PNG of their log-mel
spectrograms beside the original prompt's. Fast WaveNet generation (`wavenet.generate`), temperature 1.

  python experiments/speech/wavenet_generate.py --uncond=/tmp/runs/wavenet_uncond --cond=/tmp/runs/wavenet_cond \
      --out=experiments/speech/wavenet_samples

Writes uncond_<i>.wav (`--seconds` s each), cond_<name>.wav (the test prompt's length), spectrograms.png and
generate.json (files, seeds, the runs' steps, generation seconds).
"""

import argparse
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from jaxdl.audio import mulaw  # noqa: E402
from jaxdl.audio.features import log_mel  # noqa: E402
from jaxdl.audio.wav import write_wav  # noqa: E402
from jaxdl.models.speech import wavenet  # noqa: E402
from jaxdl.state import restore_run  # noqa: E402


def _model(workdir: str):
    run = restore_run(workdir, devices=jax.devices()[:1])
    return run, nnx.merge(run.graphdef, run.state["params"], run.state["rest"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uncond", required=True, help="workdir of the unconditioned run")
    p.add_argument("--cond", required=True, help="workdir of the conditioned run")
    p.add_argument("--out", default="experiments/speech/wavenet_samples")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--count", type=int, default=2, help="unconditioned samples")
    p.add_argument("--test_file", type=int, default=0, help="index of the held-out prompt to resynthesise")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    record = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "seed": a.seed, "files": {}}
    spectra = []

    run, model = _model(a.uncond)
    n = int(a.seconds * 8000)
    t = time.perf_counter()
    codes = np.asarray(wavenet.generate(model, jax.random.key(a.seed), length=n, batch=a.count))
    record["uncond"] = {"workdir": a.uncond, "step": run.step, "seconds": time.perf_counter() - t, "length": n}
    for i, c in enumerate(codes):
        path = os.path.join(a.out, f"uncond_{i}.wav")
        write_wav(path, np.asarray(mulaw.decode(c)))
        record["files"][os.path.basename(path)] = f"unconditioned sample {i}"
        spectra.append((f"unconditioned sample {i}", np.asarray(mulaw.decode(c))))

    run, model = _model(a.cond)
    task = run.task
    test = task.waves("test")
    i = a.test_file
    codes_true = test.file_codes(i)
    cond = jnp.asarray(test.mels[test.frame_offsets[i] : test.frame_offsets[i] + len(codes_true) // task.hop])
    length = cond.shape[0] * task.hop
    t = time.perf_counter()
    out = np.asarray(wavenet.generate(model, jax.random.key(a.seed), length=length, cond=cond[None]))[0]
    name = os.path.splitext(os.path.basename(test.paths[i]))[0]
    record["cond"] = {
        "workdir": a.cond,
        "step": run.step,
        "seconds": time.perf_counter() - t,
        "length": length,
        "prompt": test.paths[i],
    }
    path = os.path.join(a.out, f"cond_{name}.wav")
    write_wav(path, np.asarray(mulaw.decode(out)))
    record["files"][os.path.basename(path)] = f"conditioned on the log-mel frames of held-out {test.paths[i]}"
    spectra.append((f"vocoder resynthesis of held-out '{name}'", np.asarray(mulaw.decode(out))))
    spectra.append(
        (
            f"original '{name}' (μ-law decoded; Allison Smith, CC-BY-SA-3.0)",
            np.asarray(mulaw.decode(codes_true[:length])),
        )
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(spectra), 1, figsize=(9, 2.2 * len(spectra)), squeeze=False)
    images = [np.asarray(log_mel(jnp.asarray(x, jnp.float32), n_mels=40)) for _, x in spectra]
    top = max(float(s.max()) for s in images)  # one colour scale for all panels: log(1e-6) … the loudest band
    for ax, (title, x), s in zip(axes[:, 0], spectra, images, strict=True):
        ax.imshow(
            s.T, origin="lower", aspect="auto", extent=(0, len(x) / 8000, 0, 40), cmap="magma", vmin=-14, vmax=top
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "spectrograms.png"), dpi=80)
    with open(os.path.join(a.out, "generate.json"), "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
