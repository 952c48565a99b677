"""Differential privacy: DP-SGD's privatized gradient (`dpsgd`: per-example gradients by vmap, clipping, Gaussian
noise, as the gradient of a scalar) and its accounting with dp-accounting (`accounting`). Task: `dp_classify`;
evaluator: `privacy` (ε at δ of the run so far)."""
