"""Explanations of classifiers: input attributions (gradient saliency, integrated gradients), attention rollout for
the transformer models, and the model-randomization sanity check of Adebayo et al. 2018.

- `attributions.py`: `saliency`, `integrated_gradients`, `completeness_gap` (jit-able, any `x -> logits` function);
- `rollout.py`: attention rollout (Abnar & Zuidema 2020) of the per-layer probabilities the models return with
  `return_attention=True` (`jaxdl.models.transformer`, `vit`, `bert`);
- `sanity.py`: cascading re-initialization of the top layers and the Spearman rank correlation (scipy) of the
  trained vs the randomized model's attribution maps.

The `attributions` evaluator (`jaxdl/evaluators/attributions.py`) runs them on a split and writes PNG panels.
"""
