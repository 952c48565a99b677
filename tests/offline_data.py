"""One rule for tests that need data from a Debian package: skip only when the package's files are genuinely
absent, saying how to get them; any other failure (a broken builder, a bad file) stays an error.

The check looks at the raw files themselves (the same lookup the builders use, which raises FileNotFoundError
naming the folder and the apt package) before the test touches the dataset, so a FileNotFoundError raised later
by the code under test is never turned into a skip.
"""

import pytest

from jaxdl.data import fashion_mnist, text_corpora

SETUP = "`bash launch/setup.sh` (as root) installs it with apt"


def require_fashion_mnist() -> None:
    """Skips the calling test unless Debian's `dataset-fashion-mnist` idx files are there (or
    $JAXDL_FASHION_MNIST_DIR points at them)."""
    try:
        fashion_mnist.raw_dir()
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed: {e} {SETUP}.")


def require_fortunes() -> None:
    """Skips the calling test unless Debian's `fortunes` files are there (or $JAXDL_FORTUNES_DIR points at them)."""
    try:
        text_corpora.fortunes_dir()
    except FileNotFoundError as e:
        pytest.skip(f"the fortunes corpus is not installed: {e} {SETUP}.")
