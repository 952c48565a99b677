"""The environment record every structured-prediction study writes beside its numbers (CSV columns / JSON)."""

import datetime
import os
import platform


def environment(**versions: str) -> dict:
    """device, date, python, jax, flax, plus `versions` (e.g. networkx=nx.__version__)."""
    import flax
    import jax

    return {
        "device": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared)",
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        **versions,
    }
