#!/usr/bin/env python3
"""The PyTorch side of `sluice bench train`: trains the same model on the same data the way sluice
does and prints one JSON line {"torch": version, "threads": n, "steps": s, "samples_per_s": r}.

sluice embeds this script and runs it with /usr/bin/python3 (or --python); it can be run by hand:

    python3 bench/train_torch.py --data D.safetensors --layers linear:128,relu,linear:10 \
        --batch 64 --microbatches 8 --steps 300 --warmup 20 --lr 0.05 --momentum 0.9

Training follows sluice's rules (as tests/fixtures/make_torch_fixture.py does): step k uses rows
(k*batch + i) mod N, its micro-batches in order, each backward on sum-of-losses / batch so the
gradients accumulate to the mini-batch mean, then one torch.optim.SGD step. The data file is a
safetensors with x F32 [N, inputs] and y I32 [N]. If PyTorch cannot be imported the script prints
{"torch": null, "error": "..."} and exits 0, so the bench can say so instead of failing.
"""
import argparse
import json
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--layers", required=True, help="comma-separated sluice layer specs")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--microbatches", type=int, default=1)
    p.add_argument("--steps", type=int, required=True, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()

    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except Exception as e:  # no PyTorch for this interpreter: say so, do not fail
        print(json.dumps({"torch": None, "error": "cannot import torch: %s" % e}))
        return 0

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = load_safetensors(a.data)
    x, y = data["x"].float(), data["y"].long()
    rows = x.shape[0]

    mods, width = [], x.shape[1]
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    for spec in a.layers.split(","):
        if spec.startswith("linear:"):
            mods.append(nn.Linear(width, int(spec[7:])))
            width = int(spec[7:])
        elif spec == "gelu":
            mods.append(nn.GELU())
        elif spec == "gelu_tanh":
            mods.append(nn.GELU(approximate="tanh"))
        else:
            mods.append(acts[spec]())
    model = nn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    per = a.batch // a.microbatches
    base = torch.arange(a.batch)

    def step(k):
        idx = (base + k * a.batch) % rows
        opt.zero_grad()
        total = 0.0
        for j in range(a.microbatches):
            mb = idx[j * per:(j + 1) * per]
            loss = F.cross_entropy(model(x[mb]), y[mb], reduction="sum") / a.batch
            loss.backward()
            total += loss.item()  # sluice reports every step's loss too
        opt.step()
        return total

    for k in range(a.warmup):
        step(k)
    t0 = time.perf_counter()
    for k in range(a.warmup, a.warmup + a.steps):
        loss = step(k)
    dt = time.perf_counter() - t0
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": a.steps,
                      "samples_per_s": a.steps * a.batch / dt, "final_loss": loss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
