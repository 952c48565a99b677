"""Out of domain: the study models (trained on one Asterisk speaker, 8 kHz IVR prompts) on the transcribed
utterances of Debian `pocketsphinx-testdata` — 5 read playing-card phrases (`cards/`) and 5
LibriVox audiobook sentences (`librivox/`, "Sense and Sensibility"), 16 kHz mono WAVs — beside PocketSphinx
en-us on the same files at their native 16 kHz. Writes experiments/speech/out_of_domain.json.

    apt-get install -y pocketsphinx-testdata pocketsphinx pocketsphinx-en-us sox
    python experiments/speech/out_of_domain.py --workdirs=/tmp/runs/asr,/tmp/runs/asr_conformer \
        --out=experiments/speech/out_of_domain.json

Our models get each WAV resampled to 8 kHz by `sox IN -r 8000 OUT` and decoded with every decoder of
asr_study.py (the LM is still the one fitted on the Asterisk training prompts); all 10 utterances go in one batch
padded to the longest (the models are padding invariant, tests/test_conformer.py), so utterances longer than the
5 s training cap are kept. References: the packages' transcription files, normalised like the Asterisk prompts.
These utterances are PocketSphinx's own regression-test data (its expected outputs ship beside them), so the peer
may be favoured.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from asr_study import DECODERS  # noqa: E402
from peer_pocketsphinx import recognise  # noqa: E402

ROOT = "/usr/share/pocketsphinx/test/data"
SETS = {"cards": "cards/cards.transcription", "librivox": "librivox/transcription"}
FLAGS = flags.FLAGS


def utterances() -> list[tuple[str, str, str]]:
    """[(set, wav path, normalised reference)] from the `<s> text </s> (id)` transcription files."""
    from jaxdl.data import asterisk

    out = []
    for name, rel in SETS.items():
        path = os.path.join(ROOT, rel)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: apt-get install -y pocketsphinx-testdata")
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*<s>(.*)</s>\s*\((\S+)\)", line)
                if not m:
                    raise ValueError(f"{path}: unexpected transcription line {line.strip()!r}")
                wav = os.path.join(ROOT, name, m.group(2) + ".wav")
                out.append((name, wav, asterisk.normalize(m.group(1))))
    return out


def to_8k(path: str, tmp: str) -> np.ndarray:
    from jaxdl.audio.wav import read_wav

    out = os.path.join(tmp, "8k.wav")
    subprocess.run(["sox", path, "-r", "8000", "-c", "1", "-b", "16", out], check=True)
    return read_wav(out, 8000)


def score(utts, hyps: list[str]) -> dict:
    from jaxdl.evaluators.asr import error_rates

    out = {}
    for name in (*SETS, "all"):
        rows = [i for i, u in enumerate(utts) if name in (u[0], "all")]
        out[name] = error_rates([utts[i][2] for i in rows], [hyps[i] for i in rows])
    return out


def main(argv):
    del argv
    import jax

    from jaxdl import evaluators
    from jaxdl.state import restore_run
    from jaxdl.train import eval_context

    utts = utterances()
    results = {"utterances": [{"set": s, "wav": os.path.relpath(p, ROOT), "reference": r} for s, p, r in utts]}
    with tempfile.TemporaryDirectory() as tmp:
        audio = [to_8k(p, tmp) for _, p, _ in utts]
        results["seconds"] = [round(len(a) / 8000, 2) for a in audio]
        for workdir in FLAGS.workdirs:
            run = restore_run(workdir, None, jax.devices()[:1])
            ctx = eval_context(
                run.config, run.task, run.graphdef, run.ds_info, run.mesh, run.rules, run.state_sharding, workdir
            )
            evs = evaluators.make_all(DECODERS, ctx)
            width = max(len(a) for a in audio)
            x = np.zeros((len(audio), width), np.float32)
            for i, a in enumerate(audio):
                x[i, : len(a)] = a
            batch = jax.device_put({"input": x, "input_length": np.array([len(a) for a in audio], np.int32)})
            t0 = time.time()
            lp, frames = jax.device_get(evs["greedy"]._log_probs(run.state["params"], run.state["rest"], batch))
            entry = {"model": run.config.model.name, "checkpoint_step": run.step, "decoders": {}}
            for name, ev in evs.items():
                hyps = [ev.transcribe(np.asarray(lp[i, : int(frames[i])])) for i in range(len(audio))]
                entry["decoders"][name] = {**score(utts, hyps), "hypotheses": hyps}
            entry["decode_seconds"] = round(time.time() - t0, 1)
            results[workdir] = entry
            print(workdir, {k: v["all"] for k, v in entry["decoders"].items()}, flush=True)
        t0 = time.time()
        hyps = [recognise(p, tmp) for _, p, _ in utts]  # native 16 kHz (its sox `rate 16000` is a copy)
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "pocketsphinx"], capture_output=True, text=True)
    results["pocketsphinx"] = {
        "peer": f"pocketsphinx_continuous (Debian pocketsphinx {version.stdout}, pocketsphinx-en-us), 16 kHz input",
        **score(utts, hyps),
        "hypotheses": hyps,
        "decode_seconds": round(time.time() - t0, 1),
    }
    print("pocketsphinx", results["pocketsphinx"]["all"], flush=True)
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with open(FLAGS.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    flags.DEFINE_list("workdirs", None, "finished runs of experiments/speech/asr.py", required=True)
    flags.DEFINE_string("out", "experiments/speech/out_of_domain.json", "where the JSON goes")
    app.run(main)
