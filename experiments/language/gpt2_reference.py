"""Reference logits and greedy generations of a tiny random GPT-2 from transformers (PyTorch), saved as a test fixture.

Runs in a side virtualenv that has torch, not in the project's (CI must not install torch):

    python3.12 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch transformers
    /tmp/refvenv/bin/python experiments/language/gpt2_reference.py [--out tests/data/gpt2_reference.npz]

Builds a seeded random GPT2LMHeadModel (2 layers, width 64, 4 heads, 300 tokens, 32 positions) and perturbs every
parameter with N(0, 0.1^2) noise after init, so the attention/MLP biases and the LayerNorm scales and shifts are
not at their 0/1 init and a converter that drops or misplaces one of them fails. Writes: the weights exactly as
`save_pretrained` stores them in model.safetensors (keys `st.<name>`, GPT2LMHeadModel layout `transformer.*`, the
tied lm_head left out), the config.json text, two batches of input ids (lengths 32 = n_positions and 9) with their
logits, a greedy continuation (`generate(do_sample=False)`, KV cache on) of a 6-token prompt with the new tokens
and the logits that chose them, and the library versions. tests/test_hf_gpt2.py checks that jaxdl's `gpt` loaded
through `jaxdl.convert.hf_gpt2` reproduces all of them.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import safetensors
import torch
import transformers
from safetensors.numpy import load_file

CONFIG = dict(vocab_size=300, n_positions=32, n_embd=64, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)
LENGTHS = (32, 9)  # the full learned-position table, and a short batch
PROMPT, NEW = 6, 10  # greedy continuation: prompt length, generated tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests/data/gpt2_reference.npz"))
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.GPT2Config(**CONFIG)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # wte and the tied lm_head are one parameter: perturbed once, still tied
            p.add_(0.1 * torch.randn_like(p))
    out = {}
    with torch.no_grad():
        for n in LENGTHS:
            ids = torch.randint(0, CONFIG["vocab_size"], (2, n))
            out[f"input_ids_{n}"] = ids.numpy().astype(np.int32)
            out[f"logits_{n}"] = model(input_ids=ids).logits.numpy()
        prompt = torch.randint(0, CONFIG["vocab_size"], (2, PROMPT))
        gen = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=NEW,
            min_new_tokens=NEW,
            use_cache=True,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_logits=True,
        )
    new = gen.sequences[:, PROMPT:].numpy().astype(np.int32)
    gen_logits = torch.stack(gen.logits, 1).numpy()  # [batch, NEW, vocab]: the logits each new token was argmax of
    assert (gen_logits.argmax(-1) == new).all()
    top2 = np.sort(gen_logits, -1)[..., -2:]
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        weights = load_file(f"{d}/model.safetensors")
        config_json = Path(f"{d}/config.json").read_text()
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "attn_implementation": model.config._attn_implementation,
        "min_greedy_margin": float((top2[..., 1] - top2[..., 0]).min()),  # how far greedy is from a tie
    }
    np.savez_compressed(
        args.out,
        config=np.array(config_json),
        prompt_ids=prompt.numpy().astype(np.int32),
        generated_ids=new,
        generated_logits=gen_logits.astype(np.float32),
        meta=np.array(json.dumps(meta)),
        **out,
        **{f"st.{k}": v for k, v in weights.items()},
    )
    print(json.dumps(meta, indent=1))
    print(f"wrote {args.out}: {Path(args.out).stat().st_size} bytes; {len(weights)} weight tensors")


if __name__ == "__main__":
    main()
