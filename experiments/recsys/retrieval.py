"""Retrieval + re-ranking study on the MovieLens-100k leave-one-out test users (README "Retrieval + re-ranking"):
trained two-tower item embeddings indexed by faiss / hnswlib (`jaxdl.serve.ann`), ANN recall@100 against exact
search, per-query latency, and end-to-end HR@10 / NDCG@10 (full-ranking protocol: the user's train items and
validation item excluded) of retrieval alone vs retrieval + DeepFM re-ranking of the 100 candidates
(`jaxdl.serve.rerank`). Writes experiments/recsys/retrieval.json.

    python experiments/recsys/retrieval.py --two_tower=/tmp/runs/recsys_two_tower --deepfm=/tmp/runs/recsys_deepfm \
        --seeds=0,1,2 --out=experiments/recsys/retrieval.json

Seed s pairs the two-tower run of seed s with the DeepFM run of seed s (`jaxdl.ablate` workdirs). Queries are the
two-tower user vectors of the 943 test users (their test-example history and side features, as the `ranking`
evaluator feeds them), so exact retrieval alone reproduces the two-tower run's own full-ranking HR@10 (checked,
`crosscheck_*` in the JSON). Latency: one query at a time, 1 faiss / hnswlib thread, best of 3 passes per query,
median over queries. A synthetic catalogue (`--synthetic_items` random unit vectors, dim 64, queries = the real
user vectors) shows the latency where exact search is no longer cheap.
"""

import datetime
import json
import os
import platform
import sys
import time

import numpy as np
from absl import app, flags

from jaxdl.data import movielens as ml
from jaxdl.evaluators import _recsys_metrics as M
from jaxdl.serve import ann, rerank

flags.DEFINE_string("two_tower", "/tmp/runs/recsys_two_tower", "jaxdl.ablate workdir of config.py:two_tower")
flags.DEFINE_string("deepfm", "/tmp/runs/recsys_deepfm", "jaxdl.ablate workdir of config.py:deepfm")
flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds present in both workdirs")
flags.DEFINE_list("specs", ["hnsw:M=32,ef_construction=200,ef_search=64", "ivf:nlist=16,nprobe=8",
                            "hnswlib:M=16,ef_construction=200,ef_search=64"], "ANN indexes compared with exact search")  # fmt: skip
flags.DEFINE_integer("candidates", 100, "retrieved candidates per user (re-ranked by DeepFM); also the recall@K")
flags.DEFINE_integer("k", 10, "HR@k / NDCG@k of the final lists")
flags.DEFINE_integer("synthetic_items", 0, "size of the synthetic catalogue for latency (0: skip)")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "retrieval.json"), "output JSON")
flags.DEFINE_bool("render_only", False, "only rewrite the markdown table (retrieval.md) from an existing --out JSON")
FLAGS = flags.FLAGS


def test_users(data):
    """(users, positives, model inputs, seen lists) of the leave-one-out test rows, as the evaluator has them."""
    train, valid, test = ml.leave_one_out(data)
    users = data.user[test]
    inputs = dict(history=ml.histories(data)[test], age=data.age[users], gender=data.gender[users],
                  occupation=data.occupation[users])  # fmt: skip
    seen = np.zeros((data.num_users, data.num_items), bool)
    seen[data.user[train], data.item[train]] = True
    seen[data.user[valid], data.item[valid]] = True
    return users.astype(np.int32), data.item[test].astype(np.int64), inputs, seen[users]


def scores_of(lists, positives, k):
    r = rerank.list_ranks(lists, positives)
    return {f"hr{k}": float(M.hit_rate(r, k).mean()), f"ndcg{k}": float(M.ndcg(r, k).mean())}


def one_seed(seed: int, data, users, positives, inputs, seen) -> dict:
    import jax
    import jax.numpy as jnp

    tt_dir = os.path.join(FLAGS.two_tower, "two_tower", f"seed_{seed}")
    fm_dir = os.path.join(FLAGS.deepfm, "deepfm", f"seed_{seed}")
    tower, _ = rerank.load_model(tt_dir)
    ranker, _ = rerank.load_model(fm_dir)
    jin = {k: jnp.asarray(v) for k, v in inputs.items()}
    items = np.asarray(tower.item_vectors(jnp.arange(data.num_items)))
    queries = np.asarray(tower.user_vectors(jnp.asarray(users), **jin))
    c, k = FLAGS.candidates, FLAGS.k
    score = jax.jit(lambda u, cands, age, gender, occupation: ranker.score(u, cands, age=age, gender=gender,
                                                                           occupation=occupation))  # fmt: skip
    side = {key: jin[key] for key in ("age", "gender", "occupation")}
    out = dict(seed=seed, two_tower_workdir=tt_dir, deepfm_workdir=fm_dir, indexes={})
    exact = ann.build(items, "exact")
    _, exact_ids = exact.search(queries, c)
    for spec in ["exact", *FLAGS.specs]:
        index = exact if spec == "exact" else ann.build(items, spec, seed=seed)
        _, ids = index.search(queries, c)
        cand, _ = rerank.retrieve(index, queries, c, seen)
        final, _ = rerank.rerank(score, users, cand, **side)
        out["indexes"][spec] = dict(
            recall_at_candidates=ann.recall(ids, exact_ids), build_seconds=index.build_seconds,
            latency=ann.latency(index, queries, c), candidate_hit_rate=scores_of(cand, positives, c)[f"hr{c}"],
            retrieval_only=scores_of(cand[:, :k], positives, k), rerank=scores_of(final[:, :k], positives, k),
        )  # fmt: skip
        print(f"seed {seed} {spec}: {out['indexes'][spec]}", flush=True)
    t = time.perf_counter()
    np.asarray(score(jnp.asarray(users), jnp.asarray(cand), **side))
    out["deepfm_rerank_seconds_943_users"] = time.perf_counter() - t  # after compilation (jit ran above)
    with open(os.path.join(tt_dir, "result.json")) as f:
        own = json.load(f)["metrics"]
    out["crosscheck_two_tower_eval"] = {f"hr{k}": own[f"eval/hr{k}_full"], f"ndcg{k}": own[f"eval/ndcg{k}_full"]}
    with open(os.path.join(fm_dir, "result.json")) as f:
        own = json.load(f)["metrics"]
    out["deepfm_full_ranking_eval"] = {f"hr{k}": own[f"eval/hr{k}_full"], f"ndcg{k}": own[f"eval/ndcg{k}_full"]}
    if FLAGS.synthetic_items:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(FLAGS.synthetic_items, items.shape[1])).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        q = queries[:200]
        ex = ann.build(x, "exact")
        _, want = ex.search(q, c)
        syn = {"exact": dict(latency=ann.latency(ex, q, c), recall_at_candidates=1.0, build_seconds=ex.build_seconds)}
        for spec in FLAGS.specs:
            index = ann.build(x, spec, seed=seed)
            syn[spec] = dict(latency=ann.latency(index, q, c), build_seconds=index.build_seconds,
                             recall_at_candidates=ann.recall(index.search(q, c)[1], want))  # fmt: skip
            print(f"seed {seed} synthetic {spec}: {syn[spec]}", flush=True)
        out["synthetic"] = dict(items=FLAGS.synthetic_items, queries=len(q), indexes=syn)
    return out


def summary(per_seed: list[dict]) -> dict:
    """mean / sample std (ddof 1) / n over seeds of every number of `indexes` and `synthetic`."""

    def walk(dicts):
        if isinstance(dicts[0], dict):
            return {key: walk([d[key] for d in dicts]) for key in dicts[0]}
        v = np.asarray(dicts, np.float64)
        return dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else None, n=len(v))

    keys = ["indexes", "crosscheck_two_tower_eval", "deepfm_full_ranking_eval", "deepfm_rerank_seconds_943_users"]
    keys += ["synthetic"] if "synthetic" in per_seed[0] else []
    return {key: walk([r[key] for r in per_seed]) for key in keys}


def _pm(d: dict, digits: int = 4, scale: float = 1.0) -> str:
    m, sd = d["mean"] * scale, d["std"]
    return f"{m:.{digits}f}" if sd is None else f"{m:.{digits}f} ± {sd * scale:.{digits}f}"


def markdown(result: dict) -> str:
    """The README table: per index, recall@K vs exact, median per-query latency, build time, candidate hit rate,
    HR/NDCG@k of retrieval alone and of retrieval + DeepFM re-ranking (mean ± sample std over the seeds)."""
    env, s = result["environment"], result["summary"]
    c, k = env["candidates"], env["k"]
    out = [f"| index | recall@{c} vs exact | latency / query (µs, median) | build (s) | HR@{c} (candidates) | "
           f"HR@{k} retrieval | NDCG@{k} retrieval | HR@{k} + DeepFM re-rank | NDCG@{k} + DeepFM re-rank |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for spec, r in s["indexes"].items():
        cells = [_pm(r["recall_at_candidates"]), _pm(r["latency"]["median_us"], 1), _pm(r["build_seconds"], 3),
                 _pm(r["candidate_hit_rate"]), _pm(r["retrieval_only"][f"hr{k}"]), _pm(r["retrieval_only"][f"ndcg{k}"]),
                 _pm(r["rerank"][f"hr{k}"]), _pm(r["rerank"][f"ndcg{k}"])]  # fmt: skip
        out.append(f"| {spec} | " + " | ".join(cells) + " |")
    fm = s["deepfm_full_ranking_eval"]
    out.append(
        f"| (DeepFM alone, full ranking, its run's evaluator) | | | | | {_pm(fm[f'hr{k}'])} | {_pm(fm[f'ndcg{k}'])} | | |"
    )
    return "\n".join(out) + "\n"


def main(_):
    if FLAGS.render_only:
        with open(FLAGS.out) as f:
            result = json.load(f)
        with open(FLAGS.out.removesuffix(".json") + ".md", "w") as f:
            f.write(markdown(result))
        print(markdown(result))
        return
    import faiss
    import hnswlib  # noqa: F401
    import jax

    data = ml.load_raw()
    users, positives, inputs, seen = test_users(data)
    per_seed = [one_seed(int(s), data, users, positives, inputs, seen) for s in FLAGS.seeds]
    from importlib.metadata import version

    env = dict(
        date=datetime.date.today().isoformat(), device=f"{os.cpu_count()} CPU cores ({platform.machine()}), no accelerator",
        note="shared machine: other engineers' jobs ran at the same time, so latencies are under load",
        python=platform.python_version(), jax=jax.__version__, faiss=faiss.__version__, hnswlib=version("hnswlib"),
        command=" ".join(["python", *sys.argv]), candidates=FLAGS.candidates, k=FLAGS.k, test_users=len(users),
        protocol="full ranking: each test user's train items and validation item excluded before taking top-K",
    )  # fmt: skip
    result = dict(environment=env, summary=summary(per_seed), per_seed=per_seed)
    with open(FLAGS.out, "w") as f:
        json.dump(result, f, indent=1)
    with open(FLAGS.out.removesuffix(".json") + ".md", "w") as f:
        f.write(markdown(result))
    print(f"wrote {FLAGS.out}\n{markdown(result)}")


if __name__ == "__main__":
    app.run(main)
