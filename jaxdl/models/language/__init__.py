"""Token models: `gpt` (decoder-only LM, KV cache, GPT-2 compatible), `bert` (encoder, HF BERT compatible),
`seq2seq` (transformer encoder-decoder), `lstm_seq2seq` (LSTM encoder-decoder, Bahdanau attention), `rnn_lm`
(LSTM/GRU LM or tagger); `_lm_head.py` is the output head (full / sampled / hierarchical softmax) of gpt and
rnn_lm. Registry keys = module names."""
