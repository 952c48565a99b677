"""Zero-shot classification of a contrastive image–text model (CLIP) by prompt ensembles, on the dataset's seen
and held-out classes; also the shared embedding code of `retrieval` and `linear_probe`.

A class's text embedding is the mean of its prompts' normalized embeddings, normalized again (Radford et al.
2021, section 3.1.4); an image is assigned the class of highest cosine. The dataset module (the one defining the
registry's builder, e.g. `jaxdl.data.fmnist_captions`) must provide `prompts(label, kind)`, `SEEN`, `HELD_OUT`
and `MAX_LEN`. The model must define `encode_image(x)` and `encode_text(tokens)` (e.g. `clip`).

Metrics, each over the test images of a class group with candidates only from that group, and its chance level
(1 / classes in the group): `seen` / `chance_seen`, `held_out` / `chance_held_out` (classes never named in
training), `all` / `chance_all` (every image, every class: generalized zero-shot).
"""

import importlib

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxdl.evaluators.base import Context
from jaxdl.evaluators.base import Evaluator as BaseEvaluator

PROMPT_SETS = ("full", "names", "descriptions")  # see jaxdl.data.fmnist_captions.prompts


def dataset_module(name: str):
    """The module defining dataset `name`'s builder; ValueError unless it has prompts / SEEN / HELD_OUT."""
    from jaxdl.data.registry import DATASETS

    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown (config.data.name)")
    module = importlib.import_module(DATASETS[name][0].__module__)
    missing = [a for a in ("prompts", "SEEN", "HELD_OUT", "MAX_LEN") if not hasattr(module, a)]
    if missing:
        raise ValueError(f"dataset {name!r} ({module.__name__}) has no {missing}: it is not an image–text dataset")
    return module


def class_embeddings(prompt_emb: list[np.ndarray]) -> np.ndarray:
    """Per class: mean of its prompts' normalized embeddings [p_k, d], renormalized -> [classes, d] float32."""
    out = np.stack([e.mean(0) for e in prompt_emb]).astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def zero_shot_accuracy(image_emb: np.ndarray, labels: np.ndarray, class_emb: np.ndarray, classes) -> float:
    """Accuracy over the images whose label is in `classes`, choosing among `classes` only by cosine with
    `class_emb` [num_classes, d] (rows indexed by class id); ValueError when no image is in the group."""
    classes = np.asarray(classes)
    keep = np.isin(labels, classes)
    if not keep.any():
        raise ValueError(f"zero-shot: no image with a label in {classes.tolist()}")
    scores = image_emb[keep] @ class_emb[classes].T
    return float(np.mean(classes[np.argmax(scores, axis=1)] == labels[keep]))


class Embedder:
    """Jitted, sharded image / text encoders of a run's model, returning host numpy arrays."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        graphdef, out = ctx.graphdef, NamedSharding(ctx.mesh, PartitionSpec())

        def check(model):
            for name in ("encode_image", "encode_text", "image_features"):
                if not hasattr(model, name):
                    raise ValueError(f"model {type(model).__module__} has no {name}(): not an image–text model")

        def images(params, rest, batch):
            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                check(model)
                return model.encode_image(batch["input"]), model.image_features(batch["input"])

        def texts(params, rest, batch):
            with ctx.trace_context():
                model = nnx.merge(graphdef, params, rest)
                check(model)
                return model.encode_text(batch["text"])

        shard = (ctx.param_sharding, ctx.rest_sharding, ctx.batch_sharding)
        self._images = jax.jit(images, in_shardings=shard, out_shardings=(out, out))
        self._texts = jax.jit(texts, in_shardings=shard, out_shardings=out)

    def split(
        self, params, rest, split: str, batch_size: int, limit: int = 0, texts: bool = False
    ) -> dict[str, np.ndarray]:
        """The first `limit` (0: all) examples of `split`: image embeddings "image" [n, d], unnormalized
        "features" [n, d], "label" [n], and with `texts` the "text" tokens [n, L] and their embeddings
        "text_emb" [n, d] (ValueError if the split has no "text")."""
        out: dict[str, list] = {}
        for batch in self.ctx.batches(split, batch_size):
            real = np.asarray(jax.device_get(batch["mask"])) > 0
            emb, feats = jax.device_get(self._images(params, rest, batch))
            parts = {"image": emb, "features": feats, "label": batch["label"]}
            if texts:
                if "text" not in batch:
                    raise ValueError(f"split {split!r} of {self.ctx.config.data.name!r} has no text")
                parts |= {"text": batch["text"], "text_emb": self._texts(params, rest, batch)}
            for k, v in parts.items():
                out.setdefault(k, []).append(np.asarray(jax.device_get(v))[real])
            if limit and sum(len(x) for x in out["label"]) >= limit:
                break
        result = {k: np.concatenate(v) for k, v in out.items()}
        return {k: v[:limit] if limit else v for k, v in result.items()}

    def texts(self, params, rest, tokens: np.ndarray, batch_size: int) -> np.ndarray:
        """Normalized embeddings [n, d] of token rows int [n, L] (padded to whole sharded batches)."""
        n = len(tokens)
        padded = np.zeros((-(-n // batch_size) * batch_size, tokens.shape[1]), np.int32)
        padded[:n] = tokens
        outs = []
        for start in range(0, len(padded), batch_size):
            rows = jax.device_put(padded[start : start + batch_size], self.ctx.batch_sharding)
            outs.append(np.asarray(jax.device_get(self._texts(params, rest, {"text": rows}))))
        return np.concatenate(outs)[:n]


class Evaluator(BaseEvaluator):
    """Options: `batch_size` (default config.data.eval_batch_size), `prompt_set` "full" (names, attributes,
    glosses), "names" (name templates only) or "descriptions" (attributes and glosses, no class name)."""

    def __init__(self, ctx: Context, *, batch_size: int = 0, prompt_set: str = "full", **common):
        super().__init__(ctx, **common)
        if prompt_set not in PROMPT_SETS:
            raise ValueError(f"evaluator zero_shot: prompt_set={prompt_set!r} is not one of {PROMPT_SETS}")
        self.batch_size = batch_size or ctx.config.data.eval_batch_size
        self.module = dataset_module(ctx.config.data.name)
        self.prompt_set = prompt_set
        self.embedder = Embedder(ctx)

    def class_embeddings(self, params, rest) -> np.ndarray:
        from jaxdl.data import captions

        m = self.module
        classes = sorted({*m.SEEN, *m.HELD_OUT})
        prompts = [m.prompts(k, self.prompt_set) for k in classes]
        tokens = captions.encode([p for ps in prompts for p in ps], m.MAX_LEN).astype(np.int32)
        emb = self.embedder.texts(params, rest, tokens, self.batch_size)
        bounds = np.cumsum([0] + [len(p) for p in prompts])
        return class_embeddings([emb[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

    def run(self, params, rest) -> dict[str, float]:
        m = self.module
        data = self.embedder.split(params, rest, self.split, self.batch_size)
        class_emb = self.class_embeddings(params, rest)
        groups = {"seen": m.SEEN, "held_out": m.HELD_OUT, "all": sorted({*m.SEEN, *m.HELD_OUT})}
        out = {}
        for name, classes in groups.items():
            out[name] = zero_shot_accuracy(data["image"], data["label"], class_emb, classes)
            out[f"chance_{name}"] = 1.0 / len(classes)
        return out
