"""Held-out voices: the study model (trained on one real speaker only) on the held-out test prompts spoken by
espeak-ng voices it never heard, with every decoder of asr_study.py; writes experiments/speech/synthetic_voices.json.

    apt-get install -y espeak-ng sox
    python experiments/speech/synthetic_voices.py --workdir=/tmp/runs/asr --out=experiments/speech/synthetic_voices.json

Each test transcript is synthesised with `espeak-ng -v VOICE -w tmp.wav TEXT` (22.05 kHz) and converted with
`sox tmp.wav -r 8000 -c 1 -b 16 out.wav`, then read with jaxdl.audio.wav.read_wav like the real prompts; an
utterance longer than the model's 5 s input (asterisk.MAX_SECONDS) is left out and counted.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from asr_study import DECODERS  # noqa: E402

VOICES = ("en-us", "en+f3", "en-us+m3")
FLAGS = flags.FLAGS


def synthesise(text: str, voice: str, tmp: str) -> np.ndarray:
    from jaxdl.audio.wav import read_wav

    raw, out = os.path.join(tmp, "raw.wav"), os.path.join(tmp, "out.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", raw, text], check=True)
    subprocess.run(["sox", raw, "-r", "8000", "-c", "1", "-b", "16", out], check=True)
    return read_wav(out)


def main(argv):
    del argv
    import jax

    from jaxdl import evaluators
    from jaxdl.data import asterisk
    from jaxdl.evaluators.asr import error_rates
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    for tool in ("espeak-ng", "sox"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            raise SystemExit(f"{tool} is missing: apt-get install -y espeak-ng sox")
    run = restore_run(FLAGS.workdir, None, jax.devices()[:1])
    ctx = eval_context(
        run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding, FLAGS.workdir
    )
    evs = evaluators.make_all(DECODERS, ctx)
    params, rest = run.state["params"], run.state["rest"]
    items = asterisk.corpus()
    texts = [items[i][1] for i in asterisk.split_names(items)["test"]]
    results = {"run": FLAGS.workdir, "checkpoint_step": run.step, "voices": {}}
    batch_size = run.config.data.eval_batch_size
    with tempfile.TemporaryDirectory() as tmp:
        for voice in VOICES:
            audio, refs, too_long = [], [], 0
            for text in texts:
                x = synthesise(text, voice, tmp)
                if len(x) > asterisk.MAX_SAMPLES:
                    too_long += 1
                    continue
                audio.append(x)
                refs.append(text)
            hyps = {name: [] for name in evs}
            t0 = time.time()
            for start in range(0, len(audio), batch_size):
                chunk = audio[start : start + batch_size]
                x = np.zeros((batch_size, asterisk.MAX_SAMPLES), np.float32)
                n = np.full(batch_size, asterisk.MAX_SAMPLES, np.int32)
                for i, a in enumerate(chunk):
                    x[i, : len(a)], n[i] = a, len(a)
                batch = jax.device_put({"input": x, "input_length": n}, ctx.batch_sharding)
                lp, frames = jax.device_get(evs["greedy"]._log_probs(params, rest, batch))
                for i in range(len(chunk)):
                    for name, ev in evs.items():
                        hyps[name].append(ev.transcribe(np.asarray(lp[i, : int(frames[i])])))
            results["voices"][voice] = {
                "examples": len(refs),
                "left_out_longer_than_5s": too_long,
                "decode_seconds": round(time.time() - t0, 1),
                **{
                    name: {
                        **error_rates(refs, h),
                        "utterances": [{"reference": r, "hypothesis": y} for r, y in zip(refs, h, strict=True)],
                    }
                    for name, h in hyps.items()
                },
            }
            print(
                voice,
                {
                    k: {m: round(v[m], 3) for m in ("cer", "wer")}
                    for k, v in results["voices"][voice].items()
                    if isinstance(v, dict)
                },
                flush=True,
            )
    versions = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    results["espeak_ng"] = versions
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open(FLAGS.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "a finished run of experiments/speech/asr.py", required=True)
    flags.DEFINE_string("out", "experiments/speech/synthetic_voices.json", "where the JSON goes")
    app.run(main)
