"""Serving: `artifact` reloads what `python -m jaxdl.export` writes (jax + numpy + json only, never the model code);
`server` is the batching HTTP JSON server (`python -m jaxdl.serve --artifact=DIR --port=N`)."""
