"""Padding cost of length buckets on the Asterisk training split: the padded audio per epoch (what the model
computes on) when every batch is padded to 5 s vs padded to the smallest of the buckets of
`experiments/speech/asr.py:conformer` (2 / 3.5 / 5 s), with the train loader's own epoch plans (seed 0, the
epochs of 1000 steps of batch 16). Pure numpy; seconds.

    python experiments/speech/bucket_stats.py --out=experiments/speech/bucket_stats.json
"""

import json
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def main(argv):
    del argv
    from jaxdl import data
    from jaxdl.data import asterisk
    from jaxdl.data.pipeline import TrainLoader

    buckets = (16000, 28000, 40000)
    source = data.memory.cache(data.load("asterisk_speech", "train"), mode="memory")
    loader = TrainLoader(source, dataset="asterisk_speech", global_batch_size=16, seed=0, buckets=buckets)
    steps = 1000
    widths = np.array(
        [loader.bucket_plan(s // loader.steps_per_epoch)[1][s % loader.steps_per_epoch] for s in range(steps)]
    )
    sr = asterisk.SAMPLE_RATE
    out = {
        "train_utterances": int(len(loader.lengths)),
        "steps": steps,
        "batch_size": 16,
        "seed": 0,
        "buckets_seconds": [b / sr for b in buckets],
        "batches_per_bucket": {str(b / sr): int((widths == b).sum()) for b in buckets},
        "mean_padded_seconds_per_utterance": {"fixed_5s": 5.0, "buckets": float(widths.mean() / sr)},
        "mean_real_seconds_per_utterance": float(loader.lengths.mean() / sr),
        "padded_compute_ratio_buckets_over_fixed": float(widths.mean() / buckets[-1]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(out, indent=1))
    with open(FLAGS.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    flags.DEFINE_string("out", "experiments/speech/bucket_stats.json", "where the JSON goes")
    app.run(main)
