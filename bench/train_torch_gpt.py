#!/usr/bin/env python3
"""The PyTorch side of `sluice bench train --model gpt`: trains nanoGPT's GPT on the same token
windows the way sluice does and prints one JSON line
{"torch": version, "threads": n, "steps": s, "tokens_per_s": r, "samples_per_s": r / T, ...}.

sluice embeds this script and runs it with /usr/bin/python3 (or --python); it can be run by hand:

    python3 bench/train_torch_gpt.py --data TOKENS.safetensors --vocab-size 65 --block-size 64 \
        --n-layer 4 --n-head 4 --n-embd 128 --batch 12 --steps 40 --warmup 3

The model is nanoGPT's (model.py) with torch.nn modules, as tests/fixtures/make_torch_gpt_fixture.py
writes it out: token and position embeddings, pre-LN blocks with causal self-attention from one
c_attn projection (the masked-softmax path nanoGPT takes on PyTorch < 2.0, with its tril mask
buffer) and a GELU MLP, ln_f and lm_head, tied to wte or not; no dropout modules (sluice has none;
nanoGPT's dropout is 0 by default). Training is nanoGPT's train.py loop: AdamW with weight decay
only on tensors of two or more dimensions, zero_grad(set_to_none=True), the mean cross entropy over
every position, clip_grad_norm_, opt.step(), loss.item(). Step k takes rows (k*batch + i) mod N of
the data file (a safetensors with x and y I32 [N, T], y the next tokens), as sluice does for a token
safetensors. If PyTorch cannot be imported the script prints {"torch": null, "error": "..."} and
exits 0, so the bench can say so instead of failing.

With --text PATH (`sluice bench train --model gpt --shakespeare`) it trains on a text instead, as
nanoGPT's shakespeare_char recipe does: the text (gzip when it ends in .gz) tokenised by character
(the sorted set of its characters), the first 90% (--val-fraction 0.1) for training and the rest
for validation, every batch --batch random windows of block_size + 1 tokens (torch.randint, as
nanoGPT's get_batch), nanoGPT's get_lr (linear warm-up over --warmup-steps, cosine to --min-lr at
--decay-steps), and an evaluation (the mean loss over --eval-iters random batches of each share, in
eval mode without gradients) after every --eval-interval steps and after the last. Threads: the
library's default (--threads 0). It prints {"torch": version, "evals": [{"step", "val_loss",
"train_loss", "time_s"}...], ...}; time_s is the wall time from the first step to the end of the
step an evaluation follows (earlier evaluations included), as sluice's metrics.jsonl times it.
"""
import argparse
import json
import math
import struct
import sys
import time


def load_safetensors(path):
    import torch

    dtypes = {"F32": torch.float32, "I32": torch.int32, "I64": torch.int64, "F64": torch.float64}
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = bytearray(blob[8 + hlen + b:8 + hlen + e])
        out[name] = torch.frombuffer(raw, dtype=dtypes[t["dtype"]]).reshape(t["shape"]).clone()
    return out


def build(c):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class CausalSelfAttention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.n_head, self.n_embd = c["n_head"], c["n_embd"]
            self.c_attn = nn.Linear(self.n_embd, 3 * self.n_embd, bias=c["bias"])
            self.c_proj = nn.Linear(self.n_embd, self.n_embd, bias=c["bias"])
            T = c["block_size"]
            self.register_buffer("bias", torch.tril(torch.ones(T, T)).view(1, 1, T, T))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)

    class MLP(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c_fc = nn.Linear(c["n_embd"], 4 * c["n_embd"], bias=c["bias"])
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * c["n_embd"], c["n_embd"], bias=c["bias"])

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class LayerNorm(nn.Module):
        """nanoGPT's LayerNorm with an optional bias."""

        def __init__(self, ndim, bias):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(ndim))
            self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.ln_1 = LayerNorm(c["n_embd"], c["bias"])
            self.attn = CausalSelfAttention(c)
            self.ln_2 = LayerNorm(c["n_embd"], c["bias"])
            self.mlp = MLP(c)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(c["vocab_size"], c["n_embd"]),
                wpe=nn.Embedding(c["block_size"], c["n_embd"]),
                h=nn.ModuleList([Block(c) for _ in range(c["n_layer"])]),
                ln_f=LayerNorm(c["n_embd"], c["bias"])))
            self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
            if c["tie_embeddings"]:
                self.transformer.wte.weight = self.lm_head.weight
            self.apply(self._init)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c["n_layer"]))

        @staticmethod
        def _init(m):
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

        def forward(self, idx, targets):
            pos = torch.arange(0, idx.size(1), dtype=torch.long)
            x = self.transformer.wte(idx) + self.transformer.wpe(pos)
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                   ignore_index=-1)

    return GPT(c)


def train_text(a):
    """nanoGPT's shakespeare_char-style training on a text; prints one JSON line."""
    import gzip

    try:
        import torch
    except Exception as e:
        print(json.dumps({"torch": None, "error": "cannot import torch: %s" % e}))
        return 0
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    opener = gzip.open if a.text.endswith(".gz") else open
    with opener(a.text, "rb") as f:
        text = f.read().decode("utf-8")
    chars = sorted(set(text))
    if len(chars) > a.vocab_size:
        print(json.dumps({"torch": torch.__version__, "error": "%d characters, vocab_size %d" %
                          (len(chars), a.vocab_size)}))
        return 0
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    n = int(len(data) * (1.0 - a.val_fraction))
    splits = {"train": data[:n], "val": data[n:]}
    T, B = a.block_size, a.batch

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - T, (B,))
        x = torch.stack([d[i:i + T] for i in ix])
        y = torch.stack([d[i + 1:i + 1 + T] for i in ix])
        return x, y

    c = dict(vocab_size=a.vocab_size, block_size=T, n_layer=a.n_layer, n_head=a.n_head,
             n_embd=a.n_embd, bias=not a.no_bias, tie_embeddings=not a.untied)
    model = build(c)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": a.weight_decay},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    decay = a.decay_steps if a.decay_steps > 0 else a.steps

    def get_lr(it):  # nanoGPT's train.py
        if it < a.warmup_steps:
            return a.lr * (it + 1) / (a.warmup_steps + 1)
        if it > decay:
            return a.min_lr
        ratio = (it - a.warmup_steps) / (decay - a.warmup_steps)
        return a.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (a.lr - a.min_lr)

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {}
        for split in ("train", "val"):
            losses = torch.zeros(a.eval_iters)
            for k in range(a.eval_iters):
                x, y = get_batch(split)
                losses[k] = model(x, y).item()
            out[split] = losses.mean().item()
        model.train()
        return out

    model.train()
    evals = []
    t0 = time.perf_counter()
    for it in range(a.steps):
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        x, y = get_batch("train")
        loss = model(x, y)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = loss.item()
        if (it + 1) % a.eval_interval == 0 or it + 1 == a.steps:
            t = time.perf_counter() - t0
            e = estimate_loss()
            evals.append({"step": it, "val_loss": e["val"], "train_loss": e["train"], "time_s": t})
            print("torch: eval after step %d: val %.4f train %.4f at %.1f s" %
                  (it + 1, e["val"], e["train"], t), file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "steps": a.steps, "params": sum(p.numel() for p in params.values()),
                      "chars": len(chars), "evals": evals, "total_s": total,
                      "final_loss": loss}))
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", help="safetensors with x, y I32 [N, T]")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--block-size", type=int, required=True)
    p.add_argument("--n-layer", type=int, required=True)
    p.add_argument("--n-head", type=int, required=True)
    p.add_argument("--n-embd", type=int, required=True)
    p.add_argument("--no-bias", action="store_true")
    p.add_argument("--untied", action="store_true")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--microbatches", type=int, default=1)
    p.add_argument("--steps", type=int, required=True, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1, help="0: the library's default")
    p.add_argument("--text", help="train on this text (see the docstring) instead of --data")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--decay-steps", type=int, default=0)
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--eval-interval", type=int, default=500)
    p.add_argument("--eval-iters", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.text is not None:
        return train_text(a)
    if a.data is None:
        p.error("--data or --text is required")

    try:
        import torch
    except Exception as e:  # no PyTorch for this interpreter: say so, do not fail
        print(json.dumps({"torch": None, "error": "cannot import torch: %s" % e}))
        return 0

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = load_safetensors(a.data)
    x, y = data["x"].long(), data["y"].long()
    rows, T = x.shape
    if T != a.block_size:
        print(json.dumps({"torch": torch.__version__, "error": "windows of %d tokens, not %d" %
                          (T, a.block_size)}))
        return 0

    c = dict(vocab_size=a.vocab_size, block_size=a.block_size, n_layer=a.n_layer, n_head=a.n_head,
             n_embd=a.n_embd, bias=not a.no_bias, tie_embeddings=not a.untied)
    model = build(c)
    model.train()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": a.weight_decay},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    per = a.batch // a.microbatches
    base = torch.arange(a.batch)

    def step(k):
        idx = (base + k * a.batch) % rows
        total = 0.0
        for j in range(a.microbatches):
            mb = idx[j * per:(j + 1) * per]
            loss = model(x[mb], y[mb]) / a.microbatches
            loss.backward()
            total += loss.item()  # sluice reports every step's loss too
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    for k in range(a.warmup):
        step(k)
    t0 = time.perf_counter()
    loss = float("nan")
    for k in range(a.warmup, a.warmup + a.steps):
        loss = step(k)
    dt = time.perf_counter() - t0
    nparams = sum(p.numel() for p in params.values())
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "steps": a.steps, "warmup": a.warmup, "params": nparams,
                      "tokens_per_s": a.steps * a.batch * T / dt,
                      "samples_per_s": a.steps * a.batch / dt, "final_loss": loss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
