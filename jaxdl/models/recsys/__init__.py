"""Recommenders over user / item ids (MovieLens: `jaxdl.data.movielens`). Registry keys = module names:
`mf` (biased matrix factorization; `biases=False` is BPR-MF's plain dot product), `neumf` (He et al. 2017: GMF +
MLP towers), `two_tower` (user / item towers with side features, in-batch softmax + logQ), `sasrec` (Kang &
McAuley 2018, from the project's attention and MLP layers), `bert4rec` (Sun et al. 2019: SASRec's encoder made
bidirectional, with a [mask] row), `lightgcn` (graph propagation over the train
interactions), `deepfm` (Guo et al. 2017: FM + MLP over shared field embeddings of user, age, gender, occupation,
item, genre bag and year).

The interface the recsys tasks (`rating`, `ranking`) and evaluators (`rating`, `ranking`) use, with `user` int32
[B] (the batch's "input"), item ids int32, and `**inputs` the batch's other model inputs (side features, history;
models ignore those they do not use):
  - `model(user, item=item [B], train=..., rngs=..., **inputs) -> float32 [B]`: predicted rating / score;
  - `model.score(user, items [B, C], **inputs) -> float32 [B, C]`: scores of candidate items;
  - `model.score_all(user, **inputs) -> float32 [B, num_items]`: scores of the whole catalogue;
  - `model.l2(user, items [B, C]) -> float32 [B]`: the squared norms of the parameters those pairs use (the
    per-example L2 term of Surprise-style regularization).
`num_classes` (from the dataset) is the number of items; `num_users` is a required `config.model` argument
(`jaxdl.data.movielens.NUM_USERS`). Embedding tables are [rows, dim] with logical axes ("vocab", "embed") and
biases [rows] ("vocab",), so `config.sharding.rules = (("vocab", "data"),)` shards every table row-wise over
`data` (the `tp` strategy puts them over `tensor`); `row_multiple` pads the rows to a multiple of the shard
count (padding rows are never looked up: ids come from the data, full ranking scores only the first num_items).
"""
