# The PyTorch reference GPT-2 shared by make_goldens.py and tools/bench/torch_gpt_bench.py:
# parameters as a dict keyed by Hugging Face GPT-2 names (Conv1D layouts, y = x @ W + b),
# GPT-2 initialisation, a functional forward/loss, weight-decay groups and the LR schedule.
# It also holds a minimal safetensors writer/reader (no safetensors package on Debian).
# It does not own data order, optimizers or golden layout (make_goldens.py does).
import json
import math
import struct
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
import torch.nn.functional as F

LN_EPS = 1e-5


@dataclass(frozen=True)
class GptConfig:
    n_layer: int
    n_head: int
    d_model: int
    seq_len: int
    vocab: int

    @property
    def head_dim(self):
        assert self.d_model % self.n_head == 0, "d_model must be a multiple of n_head"
        return self.d_model // self.n_head


def param_shapes(cfg):
    """Every parameter's HF name and shape, in a fixed order (also the init RNG order)."""
    V, T, C = cfg.vocab, cfg.seq_len, cfg.d_model
    shapes = [("wte.weight", (V, C)), ("wpe.weight", (T, C))]
    for i in range(cfg.n_layer):
        p = "h.%d." % i
        shapes += [
            (p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,)),
        ]
    shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    return shapes


def init_params(cfg, seed, dtype=torch.float32):
    """GPT-2 init from torch.manual_seed(seed): N(0, 0.02) for wte, wpe and linear weights,
    N(0, 0.02/sqrt(2*n_layer)) for attn.c_proj and mlp.c_proj weights, biases 0, LN 1/0.
    Tensors are drawn in param_shapes() order with Tensor.normal_ on the default generator."""
    torch.manual_seed(seed)
    proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)
    params = {}
    for name, shape in param_shapes(cfg):
        t = torch.empty(shape, dtype=torch.float32)
        if name.endswith(".bias"):
            t.zero_()
        elif ".ln_" in name or name.startswith("ln_"):
            t.fill_(1.0)
        elif name.endswith("c_proj.weight"):
            t.normal_(0.0, proj_std)
        else:
            t.normal_(0.0, 0.02)
        params[name] = t.to(dtype)
    return params


def check_param_shapes(params, cfg):
    expected = param_shapes(cfg)
    assert list(params.keys()) == [n for n, _ in expected], "parameter names/order differ"
    for name, shape in expected:
        assert tuple(params[name].shape) == tuple(shape), (name, params[name].shape, shape)


def count_params(cfg):
    n = 0
    for _, shape in param_shapes(cfg):
        k = 1
        for d in shape:
            k *= d
        n += k
    return n


def block(params, i, x, cfg):
    """Transformer layer i (pre-norm attention, then MLP) of x [B, T, C]."""
    B, T, C = x.shape
    H, D = cfg.n_head, cfg.head_dim
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    scale = 1.0 / math.sqrt(D)
    p = "h.%d." % i
    h = F.layer_norm(x, (C,), params[p + "ln_1.weight"], params[p + "ln_1.bias"], LN_EPS)
    qkv = h @ params[p + "attn.c_attn.weight"] + params[p + "attn.c_attn.bias"]
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B, T, H, D).transpose(1, 2)  # [B, H, T, D]; head h = columns h*D..h*D+D-1
    k = k.view(B, T, H, D).transpose(1, 2)
    v = v.view(B, T, H, D).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) * scale
    att = att.masked_fill(~causal, float("-inf"))
    att = torch.softmax(att, dim=-1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    x = x + (y @ params[p + "attn.c_proj.weight"] + params[p + "attn.c_proj.bias"])
    h = F.layer_norm(x, (C,), params[p + "ln_2.weight"], params[p + "ln_2.bias"], LN_EPS)
    h = h @ params[p + "mlp.c_fc.weight"] + params[p + "mlp.c_fc.bias"]
    h = F.gelu(h, approximate="tanh")
    return x + (h @ params[p + "mlp.c_proj.weight"] + params[p + "mlp.c_proj.bias"])


def forward(params, idx, cfg, checkpoint=False):
    """idx: [B, T'] int64 with T' <= seq_len. Returns logits [B, T', vocab].
    checkpoint: recompute each transformer layer in the backward
    (torch.utils.checkpoint) instead of keeping its activations."""
    B, T = idx.shape
    C = cfg.d_model
    x = params["wte.weight"][idx] + params["wpe.weight"][:T]
    for i in range(cfg.n_layer):
        if checkpoint:
            x = torch.utils.checkpoint.checkpoint(block, params, i, x, cfg, use_reentrant=False)
        else:
            x = block(params, i, x, cfg)
    x = F.layer_norm(x, (C,), params["ln_f.weight"], params["ln_f.bias"], LN_EPS)
    return x @ params["wte.weight"].t()  # LM head tied to wte


def loss_fn(params, inputs, targets, cfg, checkpoint=False):
    """Mean cross-entropy over every token of the batch."""
    logits = forward(params, inputs, cfg, checkpoint)
    return F.cross_entropy(logits.reshape(-1, cfg.vocab), targets.reshape(-1))


def decay_groups(params, no_decay):
    """Names split into (decayed, not decayed): a name containing any no_decay string is not."""
    nd = [n for n in params if any(s in n for s in no_decay)]
    d = [n for n in params if n not in nd]
    return d, nd


def lr_at(step, base_lr, steps, warmup, decay, min_lr):
    """LR of step `step` (0-based) of `steps`: linear warm-up lr*(s+1)/W, then decay."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - 1 - warmup)
    if decay == "cosine":
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * p))
    if decay == "linear":
        return base_lr - (base_lr - min_lr) * p
    if decay == "constant":
        return base_lr
    raise ValueError("unknown decay %r" % decay)


# ---- safetensors (F32 only, little-endian, header keys sorted, padded to 8 bytes) ----

def save_safetensors(path, tensors, metadata=None):
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu()
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[base + b:base + e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out
