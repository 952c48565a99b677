"""BERT4Rec (Sun et al. 2019, "Sequential Recommendation with Bidirectional Encoder Representations from
Transformer"): SASRec's encoder (`jaxdl.models.recsys.sasrec`: the project's attention + MLP layers, pre-LN blocks,
item + learned position embeddings, tied output embeddings) made bidirectional, padding keys masked, with one extra
item-table row, the [mask] token (id `num_items`). Trained by `jaxdl.tasks.masked_items` (Cloze: predict randomly
masked items of the sequence from both sides). To score the next item, the model drops the oldest history item,
appends [mask] and reads the output at that last position (`user_vector`), so evaluation matches the Cloze task.

Simplifications against the paper, stated: no output projection + GELU + LayerNorm + bias head before the tied
softmax (the encoder's final LayerNorm output is scored directly, as SASRec does); no 80/10/10 token corruption
(the paper does not use it either). Item table [num_items + 1, dim] ("vocab", "embed"); the interface is
`jaxdl.models.recsys`'s (score / score_all / __call__ / l2) and `sequence`, `item_vectors`, `catalogue_logits`.
"""

import jax
import jax.numpy as jnp

from jaxdl.models.recsys import sasrec


class Model(sasrec.Model):
    name = "bert4rec"
    causal = False
    extra_rows = 1  # the [mask] token

    @property
    def mask_id(self) -> int:
        return self.num_items

    def user_vector(self, history: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        """float [B, dim]: the output at [mask] appended after history int [B, L] (its oldest item dropped, so
        the input stays L <= max_len long)."""
        if history.ndim != 2:
            raise ValueError(f"history {history.shape} must be [batch, length]")
        tokens = jnp.concatenate([history[:, 1:], jnp.full((history.shape[0], 1), self.mask_id, history.dtype)], 1)
        return self.sequence(tokens, train=train, rngs=rngs)[:, -1]
