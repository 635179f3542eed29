#!/usr/bin/python3
# Writes the whole-model golden files under tests/golden/<case>/ (corpus, job.yaml, init
# weights, per-step losses/lrs/grad norms, step-1 gradients and weights, final weights)
# by training the reference GPT-2 of gpt_torch.py in float32 on CPU, deterministically.
# Self-checks the model first (HF shapes, a naive float64 forward, finite differences).
# Usage: /usr/bin/python3 tools/reference/make_goldens.py --out tests/golden
import os

# Before torch loads: one thread everywhere, and a fixed OpenBLAS kernel so the files do
# not depend on which x86 CPU regenerates them (AVX2 Haswell kernels run on any of ours).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_CORETYPE"] = "Haswell"

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_torch as G  # noqa: E402

CORPUS_RANGE = "gen1:1-gen3:24"
CORPUS_MAX_BYTES = 6144  # whole verses of the range, up to ~6 KB
NO_DECAY = ["bias", "ln_"]

SMALL = dict(n_layer=2, n_head=2, d_model=32, seq_len=16, vocab=256)

CASES = [
    dict(case="adamw", model=SMALL, steps=6, global_batch=4, micro_batch=2,
         optimizer=dict(type="adamw", lr=1e-2, betas=[0.9, 0.999], eps=1e-8,
                        weight_decay=0.1, no_decay=NO_DECAY),
         lr_schedule=dict(warmup=2, decay="cosine", min_lr=1e-3)),
    dict(case="lamb", model=SMALL, steps=6, global_batch=4, micro_batch=2,
         optimizer=dict(type="lamb", lr=1e-2, betas=[0.9, 0.999], eps=1e-6,
                        weight_decay=0.01, trust_clip=10.0, no_decay=NO_DECAY),
         lr_schedule=dict(warmup=2, decay="cosine", min_lr=1e-3)),
    dict(case="lars", model=SMALL, steps=6, global_batch=4, micro_batch=2,
         optimizer=dict(type="lars", lr=1.0, momentum=0.9, trust_coef=0.02,
                        weight_decay=1e-4, no_decay=NO_DECAY),
         lr_schedule=dict(warmup=2, decay="cosine", min_lr=0.1)),
    dict(case="sgd", model=SMALL, steps=6, global_batch=4, micro_batch=2,
         optimizer=dict(type="sgd", lr=0.1, momentum=0.9, nesterov=True,
                        weight_decay=1e-4, no_decay=NO_DECAY),
         lr_schedule=dict(warmup=2, decay="cosine", min_lr=0.01)),
    dict(case="adamw_vocab300", model=dict(SMALL, n_layer=1, vocab=300), steps=4,
         global_batch=4, micro_batch=4,
         optimizer=dict(type="adamw", lr=1e-2, betas=[0.9, 0.999], eps=1e-8,
                        weight_decay=0.1, no_decay=NO_DECAY),
         lr_schedule=dict(warmup=1, decay="linear", min_lr=1e-3)),
]
GRAD_CLIP = 1.0
SEED = 1


# ------------------------------------------------------------------------------------
# Corpus and data order

def load_corpus(path_override):
    if path_override:
        with open(path_override, "rb") as f:
            text = f.read()
    else:
        try:
            text = subprocess.run(["bible", "-f", CORPUS_RANGE], check=True,
                                  capture_output=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit("make_goldens: `bible -f %s` failed (%s); install bible-kjv or pass "
                     "--corpus tests/golden/adamw/corpus.txt" % (CORPUS_RANGE, e))
    if len(text) > CORPUS_MAX_BYTES:
        text = text[:text.rindex(b"\n", 0, CORPUS_MAX_BYTES) + 1]
    return text


def windows_of(corpus, T):
    tokens = torch.tensor(list(corpus), dtype=torch.int64)
    W = (len(tokens) - 1) // T
    return torch.stack([tokens[k * T:k * T + T + 1] for k in range(W)])  # [W, T+1]


def step_batch(windows, step, G_):
    W = windows.shape[0]
    rows = windows[[(step * G_ + j) % W for j in range(G_)]]
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


# ------------------------------------------------------------------------------------
# Optimizers: torch's AdamW and SGD, LAMB and LARS by hand (formulas in README.md)

class Lamb:
    def __init__(self, params, decay_names, o):
        self.params, self.decay = params, set(decay_names)
        self.b1, self.b2 = o["betas"]
        self.eps, self.wd, self.trust_clip = o["eps"], o["weight_decay"], o["trust_clip"]
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()}
        self.t = 0

    @torch.no_grad()
    def step(self, lr):
        self.t += 1
        bc1, bc2 = 1.0 - self.b1 ** self.t, 1.0 - self.b2 ** self.t
        for n, w in self.params.items():
            g = w.grad
            m, v = self.m[n], self.v[n]
            m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
            u = (m / bc1) / ((v / bc2).sqrt() + self.eps)
            r = 1.0
            if n in self.decay:
                u = u + self.wd * w
                wn, un = w.norm().item(), u.norm().item()
                if wn > 0 and un > 0:
                    r = min(max(wn / un, 0.0), self.trust_clip)
            w.sub_(lr * r * u)


class Lars:
    def __init__(self, params, decay_names, o):
        self.params, self.decay = params, set(decay_names)
        self.mu, self.eta, self.wd = o["momentum"], o["trust_coef"], o["weight_decay"]
        self.buf = {n: torch.zeros_like(p) for n, p in params.items()}

    @torch.no_grad()
    def step(self, lr):
        for n, w in self.params.items():
            g = w.grad
            trust, wd = 1.0, 0.0
            if n in self.decay:
                wd = self.wd
                wn, gn = w.norm().item(), g.norm().item()
                if wn > 0 and gn > 0:
                    trust = self.eta * wn / (gn + wd * wn)
            local_lr = lr * trust
            buf = self.buf[n]
            buf.mul_(self.mu).add_(g + wd * w, alpha=local_lr)
            w.sub_(buf)


class TorchOpt:
    """torch.optim.AdamW / SGD with a decay and a no-decay group; lr set per step."""

    def __init__(self, params, decay_names, o):
        d = set(decay_names)
        groups = [{"params": [p for n, p in params.items() if n in d],
                   "weight_decay": o["weight_decay"]},
                  {"params": [p for n, p in params.items() if n not in d],
                   "weight_decay": 0.0}]
        if o["type"] == "adamw":
            self.opt = torch.optim.AdamW(groups, lr=o["lr"], betas=tuple(o["betas"]),
                                         eps=o["eps"], foreach=False)
        else:
            self.opt = torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"],
                                       nesterov=o["nesterov"], foreach=False)

    def step(self, lr):
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()


def make_optimizer(params, o):
    decay, _ = G.decay_groups(params, o["no_decay"])
    if o["type"] in ("adamw", "sgd"):
        return TorchOpt(params, decay, o)
    return {"lamb": Lamb, "lars": Lars}[o["type"]](params, decay, o)


# ------------------------------------------------------------------------------------
# Self-checks of the model

def naive_logits(params, seq, cfg):
    """Token-by-token float64 numpy forward of one sequence: an independent spelling of the
    architecture (Conv1D layouts, head columns, causal softmax, tanh GELU, tied head)."""
    P = {n: t.detach().double().numpy() for n, t in params.items()}
    C, H, D = cfg.d_model, cfg.n_head, cfg.head_dim

    def ln(x, w, b):
        mu = x.mean()
        var = ((x - mu) ** 2).mean()
        return (x - mu) / math.sqrt(var + G.LN_EPS) * w + b

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    T = len(seq)
    xs = [P["wte.weight"][seq[t]] + P["wpe.weight"][t] for t in range(T)]
    for i in range(cfg.n_layer):
        p = "h.%d." % i
        qkv = [ln(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"]) @ P[p + "attn.c_attn.weight"]
               + P[p + "attn.c_attn.bias"] for x in xs]
        new = []
        for t in range(T):
            y = np.zeros(C)
            for h in range(H):
                q = qkv[t][h * D:(h + 1) * D]
                s = np.array([q @ qkv[u][C + h * D:C + (h + 1) * D] / math.sqrt(D)
                              for u in range(t + 1)])
                a = np.exp(s - s.max())
                a /= a.sum()
                y[h * D:(h + 1) * D] = sum(a[u] * qkv[u][2 * C + h * D:2 * C + (h + 1) * D]
                                           for u in range(t + 1))
            x = xs[t] + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
            m = gelu(ln(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"]) @ P[p + "mlp.c_fc.weight"]
                     + P[p + "mlp.c_fc.bias"])
            new.append(x + m @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"])
        xs = new
    return np.stack([ln(x, P["ln_f.weight"], P["ln_f.bias"]) @ P["wte.weight"].T for x in xs])


def self_check(spec, corpus, log):
    cfg = G.GptConfig(**spec["model"])
    params = G.init_params(cfg, SEED)
    G.check_param_shapes(params, cfg)
    C, V, T = cfg.d_model, cfg.vocab, cfg.seq_len
    assert params["h.0.attn.c_attn.weight"].shape == (C, 3 * C)
    assert params["h.0.mlp.c_proj.weight"].shape == (4 * C, C)
    assert params["wte.weight"].shape == (V, C) and params["wpe.weight"].shape == (T, C)

    # Perturb biases and LN parameters away from 0/1 so their layout is exercised too.
    gen = torch.Generator().manual_seed(123)
    p64 = {n: (t.double() + 0.05 * torch.randn(t.shape, generator=gen, dtype=torch.float64)
               if (n.endswith("bias") or ".ln_" in n or n.startswith("ln_")) else t.double())
           for n, t in params.items()}

    x, y = step_batch(windows_of(corpus, T), 0, spec["global_batch"])
    ref = naive_logits(p64, x[1].tolist(), cfg)
    got = G.forward(p64, x[1:2], cfg)[0].detach().numpy()
    err = np.abs(ref - got).max()
    assert err < 1e-10, "torch forward disagrees with the naive forward: %g" % err
    log("  self-check: torch forward == naive float64 forward (max |diff| %.1e)" % err)

    # Finite differences in float64 on the step-0 global batch.
    leaves = {n: t.clone().requires_grad_(True) for n, t in p64.items()}
    loss = G.loss_fn(leaves, x, y, cfg)
    loss.backward()
    probes = [("h.0.attn.c_attn.weight", (3, 1)),        # q, head 0
              ("h.0.attn.c_attn.weight", (5, C + 20)),   # k, head 1
              ("h.1.attn.c_attn.weight", (7, 2 * C + 9)),  # v, head 0
              ("h.1.attn.c_attn.bias", (C + 3,)),
              ("h.0.attn.c_proj.weight", (11, 4)),
              ("h.1.mlp.c_fc.weight", (2, 100)),
              ("h.0.mlp.c_proj.weight", (77, 30)),
              ("h.0.ln_1.weight", (6,)), ("ln_f.bias", (9,)),
              ("wte.weight", (int(x[0, 0]), 13)),           # an input token's row
              ("wte.weight", (255 if V > 255 else V - 1, 5)),  # only used by the LM head
              ("wpe.weight", (T - 1, 8))]
    h = 1e-6
    worst = 0.0
    for name, idx in probes:
        w = p64[name]
        old = w[idx].item()
        w[idx] = old + h
        lp = G.loss_fn(p64, x, y, cfg).item()
        w[idx] = old - h
        lm = G.loss_fn(p64, x, y, cfg).item()
        w[idx] = old
        fd = (lp - lm) / (2 * h)
        an = leaves[name].grad[idx].item()
        # Central difference in float64: truncation ~h^2 and rounding ~1e-16*loss/h ~ 1e-9.
        assert abs(fd - an) <= 1e-8 + 1e-5 * abs(an), (name, idx, fd, an)
        worst = max(worst, abs(fd - an))
    log("  self-check: %d finite-difference probes agree with autograd (max |diff| %.1e)"
        % (len(probes), worst))
    return {n: t.grad for n, t in leaves.items()}


# ------------------------------------------------------------------------------------
# One case

def fmt(x):
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        r = repr(x)
        if "e" in r:
            m, e = r.split("e")
            if "." not in m:
                m += ".0"
            return "%se%s%02d" % (m, e[0] if e[0] == "-" else "", abs(int(e)))
        return r
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    return str(x)


def golden_json(golden):
    """JSON with one line per list of numbers (token rows stay readable)."""
    def dump(v, ind):
        if isinstance(v, dict):
            items = ["%s%s: %s" % (" " * (ind + 1), json.dumps(k), dump(x, ind + 1))
                     for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * ind + "}"
        if isinstance(v, list) and v and isinstance(v[0], list):
            return "[\n" + ",\n".join(" " * (ind + 1) + dump(x, ind + 1) for x in v) + \
                "\n" + " " * ind + "]"
        return json.dumps(v)
    return dump(golden, 0) + "\n"


def check_first_update(out_dir, spec, log):
    """Recomputes weights_step1 in float64 numpy from init, grads_step1 and the README's
    optimizer formulas; checks the files agree with each other and with the formulas."""
    o = spec["optimizer"]
    gj = json.load(open(os.path.join(out_dir, "golden.json")))
    w0 = G.load_safetensors(os.path.join(out_dir, "init.safetensors"))
    g0 = G.load_safetensors(os.path.join(out_dir, "grads_step1.safetensors"))
    w1 = G.load_safetensors(os.path.join(out_dir, "weights_step1.safetensors"))
    W = {n: t.double().numpy() for n, t in w0.items()}
    Gr = {n: t.double().numpy() for n, t in g0.items()}
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in Gr.values()))
    assert abs(norm - gj["grad_norms"][0]) <= 1e-5 * norm, (norm, gj["grad_norms"][0])
    scale = min(1.0, GRAD_CLIP / (norm + 1e-6))
    lr = gj["lrs"][0]
    worst = 0.0
    for n in W:
        w, g = W[n], Gr[n] * scale
        decay = not any(s in n for s in o["no_decay"])
        wd = o["weight_decay"] if decay else 0.0
        if o["type"] == "adamw":
            b1, b2 = o["betas"]
            m, v = (1 - b1) * g, (1 - b2) * g * g
            new = w * (1 - lr * wd) - lr / (1 - b1) * m / (np.sqrt(v) / math.sqrt(1 - b2)
                                                          + o["eps"])
        elif o["type"] == "lamb":
            b1, b2 = o["betas"]
            m, v = (1 - b1) * g, (1 - b2) * g * g
            u = (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + o["eps"]) + wd * w
            wn, un = np.linalg.norm(w), np.linalg.norm(u)
            r = min(max(wn / un, 0.0), o["trust_clip"]) if (decay and wn > 0 and un > 0) \
                else 1.0
            new = w - lr * r * u
        elif o["type"] == "lars":
            wn, gn = np.linalg.norm(w), np.linalg.norm(g)
            trust = o["trust_coef"] * wn / (gn + wd * wn) if (decay and wn > 0 and gn > 0) \
                else 1.0
            new = w - lr * trust * (g + wd * w)
        else:  # sgd, nesterov, first step: buf = d
            d = g + wd * w
            new = w - lr * (d + o["momentum"] * d)
        got = w1[n].double().numpy()
        err = np.abs(got - new).max()
        # float32 state and arithmetic: a few ulps of the weights (|w| < ~1).
        assert err <= 2e-6 + 1e-5 * np.abs(new).max(), (spec["case"], n, err)
        worst = max(worst, err)
    log("  self-check: weights_step1 == float64 recomputation from init and grads_step1 "
        "(max |diff| %.1e)" % worst)


def job_yaml(spec):
    m, o, s = spec["model"], spec["optimizer"], spec["lr_schedule"]
    model = ", ".join("%s: %s" % (k, fmt(m[k]))
                      for k in ("n_layer", "n_head", "d_model", "seq_len", "vocab"))
    opt = ", ".join("%s: %s" % (k, fmt(v)) for k, v in o.items())
    return (
        "# Generated by tools/reference/make_goldens.py; do not edit by hand.\n"
        "name: golden-%s\n" % spec["case"] +
        "model: {type: gpt, %s, init_from: init.safetensors}\n" % model +
        "data: {train: corpus.txt, tokenizer: bytes, val_fraction: 0.0, shuffle: false}\n"
        "train:\n"
        "  steps: %d\n" % spec["steps"] +
        "  global_batch: %d\n" % spec["global_batch"] +
        "  micro_batch: %d\n" % spec["micro_batch"] +
        "  optimizer: {%s}\n" % opt +
        "  lr_schedule: {warmup: %d, decay: %s, min_lr: %s}\n"
        % (s["warmup"], s["decay"], fmt(s["min_lr"])) +
        "  grad_clip: %s\n" % fmt(GRAD_CLIP) +
        "  seed: %d\n" % SEED +
        "  checkpoint: {every: 0}\n")


def run_case(spec, corpus, out_dir, log):
    cfg = G.GptConfig(**spec["model"])
    S, GB, MB = spec["steps"], spec["global_batch"], spec["micro_batch"]
    assert GB % MB == 0
    n_micro = GB // MB
    o, sch = spec["optimizer"], spec["lr_schedule"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "corpus.txt"), "wb") as f:
        f.write(corpus)
    with open(os.path.join(out_dir, "job.yaml"), "w") as f:
        f.write(job_yaml(spec))

    init = G.init_params(cfg, SEED)
    G.check_param_shapes(init, cfg)
    G.save_safetensors(os.path.join(out_dir, "init.safetensors"), init)
    params = {n: t.clone().requires_grad_(True) for n, t in init.items()}
    opt = make_optimizer(params, o)
    windows = windows_of(corpus, cfg.seq_len)

    losses, lrs, norms, scales = [], [], [], []
    tokens = None
    for s in range(S):
        lr = G.lr_at(s, o["lr"], S, sch["warmup"], sch["decay"], sch["min_lr"])
        x, y = step_batch(windows, s, GB)
        if s == 0:
            tokens = {"inputs_step0": x.tolist(), "targets_step0": y.tolist()}
        for p in params.values():
            p.grad = None
        mb_losses = []
        for k in range(n_micro):
            sl = slice(k * MB, (k + 1) * MB)
            loss = G.loss_fn(params, x[sl], y[sl], cfg)
            (loss / n_micro).backward()
            mb_losses.append(loss.item())
        losses.append(sum(mb_losses) / n_micro)
        if s == 0:
            grads = {n: p.grad.clone() for n, p in params.items()}
            G.save_safetensors(os.path.join(out_dir, "grads_step1.safetensors"), grads)
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), GRAD_CLIP).item()
        norms.append(norm)
        scales.append(min(1.0, GRAD_CLIP / (norm + 1e-6)))
        lrs.append(lr)
        opt.step(lr)
        if s == 0:
            G.save_safetensors(os.path.join(out_dir, "weights_step1.safetensors"),
                               {n: p.detach() for n, p in params.items()})
        for n, p in params.items():
            assert torch.isfinite(p).all(), (spec["case"], s, n)
    G.save_safetensors(os.path.join(out_dir, "weights_final.safetensors"),
                       {n: p.detach() for n, p in params.items()})
    golden = {"case": spec["case"], "steps": S, "losses": losses, "lrs": lrs,
              "grad_norms": norms, "tokens": tokens}
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        f.write(golden_json(golden))

    # Read back what was written.
    back = G.load_safetensors(os.path.join(out_dir, "weights_final.safetensors"))
    assert all(torch.equal(back[n], params[n].detach()) for n in params)
    return dict(case=spec["case"], losses=losses, lrs=lrs, norms=norms, scales=scales,
                cfg=cfg, spec=spec)


def check_grads_vs_float64(out_dir, spec, corpus, log):
    """The golden's float32 micro-batch-accumulated gradient vs a float64 full-batch one."""
    cfg = G.GptConfig(**spec["model"])
    p64 = {n: t.double().requires_grad_(True) for n, t in G.init_params(cfg, SEED).items()}
    x, y = step_batch(windows_of(corpus, cfg.seq_len), 0, spec["global_batch"])
    G.loss_fn(p64, x, y, cfg).backward()
    g32 = G.load_safetensors(os.path.join(out_dir, "grads_step1.safetensors"))
    worst = 0.0
    for n, p in p64.items():
        ref = p.grad
        scale = ref.abs().max().item()
        err = (g32[n].double() - ref).abs().max().item()
        # float32 with reductions of a few hundred terms: well inside 1e-4 of the largest.
        assert err <= 1e-9 + 1e-4 * scale, (n, err, scale)
        worst = max(worst, err / max(scale, 1e-30))
    log("  self-check: float32 accumulated gradients == float64 gradients "
        "(max |diff| / max|g| per tensor %.1e)" % worst)


# ------------------------------------------------------------------------------------
# README

README_HEAD = """# Whole-model golden files

Written by `tools/reference/make_goldens.py` (PyTorch %(torch)s, Debian `python3-torch`,
float32 on CPU, one thread, `torch.use_deterministic_algorithms(True)`,
`OPENBLAS_CORETYPE=Haswell`). Regenerate everything with:

```
/usr/bin/python3 tools/reference/make_goldens.py --out tests/golden
```

Running it twice gives byte-identical files (checked with `--check-determinism`, which
generates twice into temporary folders and compares SHA-256 of every file). Files written
on another CPU or BLAS build may differ in the last bits; the committed files are the
reference. The script self-checks before writing: HF parameter names and shapes, the torch
forward against a naive token-by-token float64 forward, 12 finite-difference probes
(float64, central, h=1e-6) against autograd, and the float32 micro-batch-accumulated
step-1 gradients against float64 full-batch gradients.

## Case directory (`tests/golden/<case>/`)
- `corpus.txt`: training text; the byte tokenizer maps byte b to token b. It is the first
  whole verses (%(corpus_bytes)d bytes) of `bible -f "%(range)s"` (package `bible-kjv`).
- `job.yaml`: the colossal job reproducing the case (paths relative to the case folder).
- `init.safetensors`: initial weights, HF GPT-2 names, F32 (GPT-2 init, `torch.manual_seed(1)`,
  tensors drawn in the order of `gpt_torch.param_shapes`).
- `golden.json`: `case`, `steps`, `losses` (mean loss of step s over the global batch,
  before its update), `lrs` (lr used at step s), `grad_norms` (global L2 norm of the
  gradient of step s, before clipping), `tokens.inputs_step0` / `tokens.targets_step0`
  (the step-0 batch, global_batch rows of seq_len tokens).
- `grads_step1.safetensors`: every parameter's gradient of step index 0: gradient of the
  global-batch mean loss, accumulated over micro-batches (sum of grad(loss_mb)/n_micro),
  before clipping.
- `weights_step1.safetensors`: every parameter after the first update.
- `weights_final.safetensors`: every parameter after the last step.

Safetensors files: 8-byte little-endian header length, JSON header with sorted keys and
no `__metadata__`, padded with spaces to a multiple of 8, then F32 little-endian data.

## Data order, schedule, clipping
- Corpus bytes form one stream; window k = tokens [k·T, k·T+T] (T+1 tokens), inputs the
  first T, targets the last T; W = (len−1)//T windows. Step s uses windows (s·G + j) mod W,
  j = 0..G−1, split into micro-batches of micro_batch rows in order. Loss per micro-batch
  = mean over its tokens; the step's gradient = mean over micro-batches.
- LR at step s: lr·(s+1)/W_up while s < W_up; then p = (s−W_up)/max(1, S−1−W_up) and
  cosine min_lr + ½(lr−min_lr)(1+cos πp), or linear lr − (lr−min_lr)·p.
- Clipping: `torch.nn.utils.clip_grad_norm_(max_norm=1.0)`: total = ‖(‖g_i‖)_i‖₂, every
  gradient scaled by min(1, 1.0/(total + 1e-6)).
- Weight-decay groups: a name containing `bias` or `ln_` gets weight decay 0 (and trust
  ratio 1 under LAMB and LARS).

## Vocabulary padding (`adamw_vocab300`)
vocab 300 > the 256 byte ids: rows 256..299 of `wte` are ordinary parameters. They are
never looked up as inputs, but their logits take part in every softmax, so they get a
gradient through the tied LM head, weight decay, and AdamW updates like any other row.

## Clipping coverage
The initial gradient norm is 1.96–2.43 and stays above 1 in every step of every case, so
every step is clipped (clip scale < 1 in the tables below); no case exercises the
unclipped branch.

## Optimizers (g = clipped gradient, lr = the step's scheduled lr)
- `adamw`: `torch.optim.AdamW` (foreach=False): w ← w·(1 − lr·wd); m ← β1m + (1−β1)g;
  v ← β2v + (1−β2)g²; w ← w − (lr/(1−β1^t))·m / (√v/√(1−β2^t) + eps), t from 1.
- `lamb`: m, v as Adam; u = m̂/(√v̂ + eps) + wd·w; r = ‖w‖/‖u‖ (1 if either is 0),
  clamped to [0, trust_clip]; no-decay tensors wd 0, r 1; w ← w − lr·r·u.
- `lars`: trust = η‖w‖/(‖g‖ + wd‖w‖) (1 if ‖w‖ or ‖g‖ is 0; no-decay tensors: 1, wd 0);
  buf ← μ·buf + lr·trust·(g + wd·w) (buf starts at 0); w ← w − buf.
- `sgd`: `torch.optim.SGD(momentum=0.9, nesterov=True)` (dampening 0, foreach=False):
  d = g + wd·w; buf ← d at t = 1, else μ·buf + d; w ← w − lr·(d + μ·buf).

## Cases
| case | model (L/H/C/T/V) | steps | global / micro batch | optimizer | schedule |
|---|---|---|---|---|---|
"""


def write_readme(out, results, corpus):
    text = README_HEAD % {"torch": torch.__version__, "corpus_bytes": len(corpus),
                          "range": CORPUS_RANGE}
    for r in results:
        sp, c = r["spec"], r["cfg"]
        o = {k: v for k, v in sp["optimizer"].items() if k not in ("type", "no_decay")}
        text += "| `%s` | %d/%d/%d/%d/%d | %d | %d / %d | %s %s | warm-up %d, %s to %s |\n" % (
            sp["case"], c.n_layer, c.n_head, c.d_model, c.seq_len, c.vocab, sp["steps"],
            sp["global_batch"], sp["micro_batch"], sp["optimizer"]["type"],
            ", ".join("%s %s" % (k, fmt(v)) for k, v in o.items()),
            sp["lr_schedule"]["warmup"], sp["lr_schedule"]["decay"],
            fmt(sp["lr_schedule"]["min_lr"]))
    text += "\n## Summary (from golden.json; clip scale = min(1, 1/(norm+1e-6)), < 1 means clipped)\n"
    for r in results:
        text += "\n`%s`\n\n| step | lr | loss | grad norm | clip scale |\n|---|---|---|---|---|\n" \
            % r["case"]
        for s in range(len(r["losses"])):
            text += "| %d | %.6g | %.6f | %.6f | %.4f |\n" % (
                s, r["lrs"][s], r["losses"][s], r["norms"][s], r["scales"][s])
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


# ------------------------------------------------------------------------------------

def generate(out, corpus, log):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(out, exist_ok=True)
    results = []
    for spec in CASES:
        log("case %s" % spec["case"])
        d = os.path.join(out, spec["case"])
        if os.path.isdir(d):
            shutil.rmtree(d)
        if spec["case"] == "adamw":
            self_check(spec, corpus, log)  # returns float64 grads; asserts on failure
        results.append(run_case(spec, corpus, d, log))
        if spec["case"] == "adamw":
            check_grads_vs_float64(d, spec, corpus, log)
        check_first_update(d, spec, log)
        r = results[-1]
        log("  losses %s" % " ".join("%.4f" % v for v in r["losses"]))
        log("  grad norms %s" % " ".join("%.4f" % v for v in r["norms"]))
        for f in sorted(os.listdir(d)):
            size = os.path.getsize(os.path.join(d, f))
            assert size < 256 * 1024, (d, f, size)
    write_readme(out, results, corpus)



def tree_hashes(root):
    out = {}
    for dp, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dp, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def main():
    ap = argparse.ArgumentParser(description="Write the whole-model golden files.")
    ap.add_argument("--out", required=True, help="folder for the case folders (tests/golden)")
    ap.add_argument("--corpus", default="", help="read the corpus from this file instead "
                    "of running `bible -f %s`" % CORPUS_RANGE)
    ap.add_argument("--check-determinism", action="store_true",
                    help="generate twice into <out>.det{1,2} and compare every file")
    args = ap.parse_args()
    torch.set_num_interop_threads(1)
    corpus = load_corpus(args.corpus)
    log = lambda m: print(m, flush=True)  # noqa: E731
    if args.check_determinism:
        a, b = args.out.rstrip("/") + ".det1", args.out.rstrip("/") + ".det2"
        generate(a, corpus, lambda m: None)
        generate(b, corpus, lambda m: None)
        ha, hb = tree_hashes(a), tree_hashes(b)
        assert ha == hb, sorted(k for k in set(ha) | set(hb) if ha.get(k) != hb.get(k))
        print("deterministic: %d files identical in %s and %s" % (len(ha), a, b))
        return
    generate(args.out, corpus, log)


if __name__ == "__main__":
    main()
