"""Serving: `artifact` reloads what `python -m jaxdl.export` writes (jax + numpy + json only, never the model code);
`server` is the batching HTTP JSON server (`python -m jaxdl.serve --artifact=DIR --port=N`); `drift` the input /
confidence drift detectors and the sliding-window monitor; `cascade` the cheap → expensive confidence cascade (and
its accuracy vs FLOPs sweep); `ab` the offline A/B comparison of two models on replayed traffic (paired bootstrap
interval, always-valid mixture SPRT); `ann` the faiss / hnswlib inner-product indexes of the retrieval stage (recall,
latency) and `rerank` retrieve (seen items skipped) → re-rank with a second model."""
