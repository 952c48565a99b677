"""Checkpoint converters between Hugging Face safetensors state dicts and jaxdl's NNX models.

`hf_bert`: BERT (BertModel / BertForMaskedLM / BertForSequenceClassification names) <-> `jaxdl.models.bert`,
plus `load_pretrained` for a HF model directory (config.json + model.safetensors) and `minilm_path` for the
offline all-MiniLM-L6-v2 weights package. Converters read and write numpy arrays (`safetensors.numpy`); no torch.
"""
