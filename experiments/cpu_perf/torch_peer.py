"""The PyTorch side of experiments/cpu_perf/run.py: one AdamW train step of LeNet-5, ResNet-20 and a small GPT on
the same shapes as jaxdl's models, eager and torch.compile, on the threads torch picks for this machine.

Runs in a side virtualenv (never a project dependency): see experiments/cpu_perf/README.md. Prints one JSON line
{model: {torch_eager_ms, torch_compile_ms}, "versions": {...}} (medians of --steps timed steps after 3 warm-up).

Shapes (NCHW here, NHWC in jaxdl; fp32):
  lenet     [256, 1, 28, 28]: conv5x5 6 same, relu, maxpool 2, conv5x5 16 valid, relu, maxpool 2, 400-120-84-10
  resnet20  [128, 3, 32, 32]: CIFAR ResNet-20 (16/32/64 channels, BatchNorm, option-A shortcuts), 10 classes
  gpt       [32, 128] tokens, vocab 256: 4 pre-LayerNorm blocks of width 128, 4 heads, MLP 512 (GELU), learned
            positions, causal attention by F.scaled_dot_product_attention, untied output projection
"""

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.head = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1)
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        s = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            s = F.pad(s, (0, 0, 0, 0, 0, self.pad))
        return F.relu(h + s)


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(3):
                blocks.append(Block(cin, cout, 2 if stage and not i else 1))
                cin = cout
        self.blocks, self.head = nn.Sequential(*blocks), nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.blocks(F.relu(self.bn(self.stem(x)))).mean((2, 3)))


class GPTBlock(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.n1, self.n2, self.heads = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6), heads
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(a)
        return x + self.mlp(self.n2(x))


class GPT(nn.Module):
    def __init__(self, vocab=256, dim=128, depth=4, heads=4, mlp=512, seq=128):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Parameter(torch.zeros(seq, dim))
        self.blocks = nn.Sequential(*[GPTBlock(dim, heads, mlp) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, vocab)

    def forward(self, t):
        return self.head(self.norm(self.blocks(self.tok(t) + self.pos[: t.shape[1]])))


def make(name):
    g = torch.Generator().manual_seed(0)
    if name == "lenet":
        return LeNet(), torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g)
    if name == "resnet20":
        return ResNet20(), torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    if name == "gpt":
        t = torch.randint(0, 256, (32, 129), generator=g)
        return GPT(), t[:, :-1], t[:, 1:]
    raise ValueError(f"unknown model {name!r}")


def time_step(name, compiled, steps):
    model, x, y = make(name)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if compiled else step
    times = []
    for i in range(3 + steps):
        t0 = time.perf_counter()
        fn(x, y)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--models", default="lenet,resnet20,gpt")
    p.add_argument("--no_compile", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = {}
    for name in a.models.split(","):
        out[name] = {"torch_eager_ms": time_step(name, False, a.steps)}
        if not a.no_compile:
            try:
                out[name]["torch_compile_ms"] = time_step(name, True, a.steps)
            except Exception as e:  # inductor needs a C++ compiler: report what happened, keep the eager number
                out[name]["torch_compile_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    out["versions"] = dict(torch=torch.__version__, threads=torch.get_num_threads(), python=platform.python_version())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
