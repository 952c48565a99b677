"""Checkpoint converters between Hugging Face safetensors state dicts and jaxdl's NNX models.

`hf_bert`: BERT (BertModel / BertForMaskedLM / BertForSequenceClassification names) <-> `jaxdl.models.language.bert`,
plus `load_pretrained` for a HF model directory (config.json + model.safetensors) and `minilm_path` for the
offline all-MiniLM-L6-v2 weights package. `hf_gpt2`: GPT-2 (GPT2LMHeadModel / GPT2Model names) <->
`jaxdl.models.language.gpt` (learned positions, attention biases, LayerNorm eps 1e-5, tied embeddings), with
`load_pretrained` / `save_pretrained` for HF model directories. `_common` holds their shared name, shape and tie
checks. Converters read and write numpy arrays (`safetensors.numpy`); no torch.
"""
