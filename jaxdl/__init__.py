"""jaxdl: a JAX research codebase for deep learning at scale."""

__version__ = "0.1.0"
