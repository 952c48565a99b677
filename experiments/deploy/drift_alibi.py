"""alibi-detect's KSDrift and MMDDrift (PyTorch backend) on the windows written by `drift_study.py`. Runs in the side
virtualenv (`/tmp/peer_deploy`: alibi-detect + torch, no jaxdl); imports nothing of jaxdl.

    /tmp/peer_deploy/bin/python experiments/deploy/drift_alibi.py WINDOWS.npz OUT.json P_VAL PERMUTATIONS

KSDrift: one KS test per feature, Bonferroni-corrected (its default), the window's p-value = min p · features
(capped at 1), the same aggregate as `jaxdl.serve.drift.ks_features`. MMDDrift: Gaussian RBF kernel, bandwidth from
the median heuristic on the reference (alibi's default), `PERMUTATIONS` permutations, its p-value
= mean(MMD²_perm ≥ MMD²) (no +1 correction).
"""

import json
import platform
import sys
import time

import numpy as np


def main(npz: str, out: str, p_val: float, permutations: int) -> None:
    import alibi_detect
    import torch
    from alibi_detect.cd import KSDrift, MMDDrift

    torch.set_num_threads(1)  # shared cores
    torch.manual_seed(0)
    d = np.load(npz)
    ref, mmd_ref = d["reference"], d["mmd_reference"]
    windows = {k.removeprefix("windows_"): d[k] for k in d.files if k.startswith("windows_")}
    ks = KSDrift(ref.astype(np.float32), p_val=p_val)
    mmd = MMDDrift(mmd_ref.astype(np.float32), backend="pytorch", p_val=p_val, n_permutations=permutations)
    t0 = time.time()
    res = {}
    for name, wins in windows.items():
        ks_p, mmd_p = [], []
        for win in wins:
            x = win.astype(np.float32)
            p = ks.predict(x, drift_type="feature")["data"]["p_val"]
            ks_p.append(float(min(1.0, np.min(p) * len(p))))
            mmd_p.append(float(mmd.predict(x)["data"]["p_val"]))
        res[name] = {"ks_p": ks_p, "mmd_p": mmd_p}
    env = {"alibi_detect": alibi_detect.__version__, "torch": torch.__version__, "numpy": np.__version__,
           "python": platform.python_version()}  # fmt: skip
    with open(out, "w") as f:
        json.dump({"p_values": res, "environment": env, "seconds": time.time() - t0}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
