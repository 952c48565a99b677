"""Trustworthy learning: adversarial attacks (`attacks`: FGSM, PGD in L∞ / L2, pixel-unit budgets) and differential
privacy (`jaxdl.privacy`). The evaluator kind `robustness` and the task `adversarial` build on `attacks`."""
