"""Peer for the ASR study: CMU PocketSphinx (Debian `pocketsphinx` 0.8+5prealpha + `pocketsphinx-en-us`, its
generic US-English acoustic model, 3-gram LM and CMU dictionary) decoding the same held-out test utterances.

    apt-get install -y pocketsphinx pocketsphinx-en-us sox
    python experiments/speech/peer_pocketsphinx.py --out=experiments/speech/peer_pocketsphinx.json

Each test WAV (8 kHz) is resampled to 16 kHz with `sox IN OUT rate 16000`: the en-us model's feat.params fix a
6.8 kHz upper mel edge, which pocketsphinx's front end rejects at 8 kHz (a copy with -upperf 3500 would run, but
on features unlike the ones the model was trained on); then `pocketsphinx_continuous -infile OUT -hmm … -lm …
-dict …`; its lines are joined, lower-cased, stripped of filler tokens such as `<sil>`, `[noise]`, and scored with
the same normaliser and jiwer CER/WER as our model.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jaxdl.data import asterisk  # noqa: E402
from jaxdl.evaluators.asr import error_rates  # noqa: E402

MODEL = "/usr/share/pocketsphinx/model/en-us"
FLAGS = flags.FLAGS


def test_utterances() -> list[tuple[str, str]]:
    """(wav path, reference) of the study's test split (held-out sentences of at most MAX_SECONDS)."""
    import wave

    items = asterisk.corpus()
    out = []
    for i in asterisk.split_names(items)["test"]:
        path, text = items[i]
        with wave.open(path) as w:
            if w.getnframes() <= asterisk.MAX_SAMPLES:
                out.append((path, text))
    return out


def recognise(path: str, tmp: str) -> str:
    wav16 = os.path.join(tmp, "in16.wav")
    subprocess.run(["sox", path, wav16, "rate", "16000"], check=True)
    cmd = [
        "pocketsphinx_continuous",
        "-infile",
        wav16,
        "-hmm",
        f"{MODEL}/en-us",
        "-lm",
        f"{MODEL}/en-us.lm.bin",
        "-dict",
        f"{MODEL}/cmudict-en-us.dict",
        "-logfn",
        "/dev/null",
    ]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    text = " ".join(res.stdout.split()).lower()
    text = re.sub(r"<[^>]*>|\[[^\]]*\]|\(\d+\)", " ", text)
    return asterisk.normalize(text)


def main(argv):
    del argv
    for tool in ("sox", "pocketsphinx_continuous"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            raise SystemExit(f"{tool} is missing: apt-get install -y pocketsphinx pocketsphinx-en-us sox")
    utts = test_utterances()
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, ref in utts:
            rows.append(
                {"wav": os.path.relpath(path, asterisk.ROOT), "reference": ref, "hypothesis": recognise(path, tmp)}
            )
    seconds = time.time() - t0
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "pocketsphinx"], capture_output=True, text=True)
    scores = error_rates([r["reference"] for r in rows], [r["hypothesis"] for r in rows])
    result = {
        "peer": "pocketsphinx_continuous (Debian pocketsphinx " + version.stdout + ", pocketsphinx-en-us)",
        "input": "8 kHz test WAVs resampled to 16 kHz by sox",
        "examples": len(rows),
        **scores,
        "decode_seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "utterances": rows,
    }
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "utterances"}, indent=1))


if __name__ == "__main__":
    flags.DEFINE_string("out", "experiments/speech/peer_pocketsphinx.json", "where the JSON goes")
    app.run(main)
