"""XLA:CPU options against the LeNet-5 / ResNet-20 train steps: each flag set in its own process (XLA reads its
flags once), interleaved over `--repeats` rounds so machine load hits every set alike; the last step's loss is kept
to show whether a flag changes numerics.

  python experiments/cpu_perf/flags.py --out=experiments/cpu_perf/flags.json [--repeats=2]

Writes {flag set: {model: [ms per round], "loss": ...}} plus the environment; prints the median table.
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from jaxdl.metrics import environment  # noqa: E402

flags.DEFINE_string("out", "experiments/cpu_perf/flags.json", "JSON with every timing.")
flags.DEFINE_integer("repeats", 2, "Interleaved rounds over the flag sets.")
flags.DEFINE_string("models", "lenet,resnet20", "Models (experiments/cpu_perf/run.py MODELS).")
flags.DEFINE_integer("steps", 10, "Timed steps per model and round.")
flags.DEFINE_list("sets", [], "Flag sets to time (default: all of FLAG_SETS).")
FLAGS = flags.FLAGS

# The XLA:CPU options that could change how convolutions and their gradients run (jax 0.12 / XLA of 2026-11):
# oneDNN thunks for matmul + convolution fusions, XNNPACK graph fusion, XNN / oneDNN fusion types, the runtime
# preset, and XNNPACK off (on by default) to see what it contributes.
FLAG_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "xnn_graph_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "xnn_fusions": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "onednn_fusions": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "fast_runtime_preset": "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
    "no_xnnpack": "--xla_cpu_use_xnnpack=false",
    # thread pool: Eigen's intra-op threads off (one thread per op, as PyTorch with 1 thread) vs XLA's default
    "eigen_single_thread": "--xla_cpu_multi_thread_eigen=false",
    # convolutions as library calls, one per convolution (LibraryFusionType INDIVIDUAL_CONVOLUTION): oneDNN's
    # convolution primitives (what PyTorch eager calls on x86) need the oneDNN runtime on as well; YNNPACK's
    "onednn_conv": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=individual_convolution",
    "onednn_conv_dot": "--xla_cpu_use_onednn=true"
    " --xla_cpu_experimental_onednn_fusion_type=individual_convolution,individual_dot",
    "onednn_conv_only_type": "--xla_cpu_experimental_onednn_fusion_type=individual_convolution",
    "ynn_conv": "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
}


def one(flag_set: str) -> dict:
    """Runs run.py's model timing for `flag_set` in a fresh process and parses its lines."""
    env = {**os.environ, "XLA_FLAGS": FLAG_SETS[flag_set]}
    cmd = [sys.executable, os.path.join(ROOT, "experiments/cpu_perf/run.py"), "--repeats=0", "--out=/dev/null"]
    cmd += [f"--models={FLAGS.models}", f"--model_steps={FLAGS.steps}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1][:300]}
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("jax "):  # "jax lenet: 52.31 ms/step (loss 2.3012)"
            name, rest = line[4:].split(":", 1)
            out[name] = float(rest.split()[0])
            if "loss" in rest:
                out[f"{name}_loss"] = float(rest.split("loss")[1].strip(" )"))
    return out


def main(argv):
    del argv
    unknown = set(FLAGS.sets) - set(FLAG_SETS)
    if unknown:
        raise app.UsageError(f"--sets: unknown flag sets {sorted(unknown)}; known: {sorted(FLAG_SETS)}")
    sets = FLAGS.sets or list(FLAG_SETS)
    rounds = {name: [] for name in sets}
    for r in range(FLAGS.repeats):
        for name in sets:
            rounds[name].append(one(name))
            print(r, name, rounds[name][-1], flush=True)
    result = dict(
        command="python experiments/cpu_perf/flags.py " + " ".join(sys.argv[1:]),
        date=time.strftime("%Y-%m-%d"),
        cpus=os.cpu_count(),
        environment=environment(),
        flag_sets={name: FLAG_SETS[name] for name in sets},
        rounds=rounds,
    )
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1)
    import numpy as np

    models = FLAGS.models.split(",")
    print("| flags | " + " | ".join(f"{m} ms" for m in models) + " |")
    for name, rs in rounds.items():
        cells = [
            f"{np.median([r[m] for r in rs if m in r]):.1f}" if all(m in r for r in rs) else "error" for m in models
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
