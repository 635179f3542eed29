#!/usr/bin/env python3
# PyTorch's rate for each workload of tools/gpu/cuda_kernel_bench.cc, on the same GPU:
# the same shapes, inputs and timing rule (one untimed call, then calls until 0.2 s have
# passed, at least 3, synchronised at the end; the mean call), one JSON object per line
# with the same "kernel" and "shape" keys, so tools/gpu/check.sh can print them side by
# side. The PyTorch operation is the one a PyTorch GPT-2 would run for that step:
# torch.matmul (fp32 with TF32 off, as colossal's CUBLAS_COMPUTE_32F; bf16 on bf16
# inputs), F.scaled_dot_product_attention(is_causal=True) (its fastest backend: flash or
# memory-efficient) for both attention rows, F.layer_norm, F.gelu(approximate="tanh"),
# F.cross_entropy's forward and backward, torch.add, torch.sum(x*x) for the sum of
# squares, F.embedding, and torch.optim.AdamW(fused=True) for the optimizer step.
# Usage: torch_kernel_bench.py [--quick]
import json
import sys
import time

import torch
import torch.nn.functional as F


def timed(f):
    f()
    torch.cuda.synchronize()
    reps = 0
    t0 = time.perf_counter()
    elapsed = 0.0
    while reps < 3 or elapsed < 0.2:
        f()
        reps += 1
        if reps < 4 or reps % 4 == 0:
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - t0
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def emit(kernel, shape, seconds, flops=None, nbytes=None):
    out = {"kernel": kernel, "shape": shape, "ms": round(seconds * 1e3, 4)}
    if flops is not None:
        out["tflops"] = round(flops / seconds / 1e12, 2)
    else:
        out["gbps"] = round(nbytes / seconds / 1e9, 1)
    print(json.dumps(out), flush=True)


def dims(*d):
    return "x".join(str(x) for x in d)


def main():
    quick = "--quick" in sys.argv
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}), flush=True)

    def uniform(*shape, dtype=torch.float32):
        return (torch.rand(*shape, device=dev) * 2 - 1).to(dtype)

    s = 2048 if quick else 8192
    shapes = [(s, s, s, False, "square"), (8192, 2304, 768, False, "gpt2 qkv fwd"),
              (8192, 3072, 768, False, "gpt2 fc fwd"), (8192, 768, 3072, False, "gpt2 proj fwd"),
              (768, 3072, 8192, True, "gpt2 fc dW")]
    for m, n, k, ta, what in shapes:
        shape = "%s %s%s" % (what, dims(m, n, k), " At" if ta else "")
        flops = 2.0 * m * n * k
        for dtype, name in ((torch.bfloat16, "matmul_low bf16"), (torch.float32, "matmul fp32")):
            if dtype == torch.float32 and what not in ("square", "gpt2 fc fwd"):
                continue
            a = uniform(k, m, dtype=dtype) if ta else uniform(m, k, dtype=dtype)
            b = uniform(k, n, dtype=dtype)
            if ta:
                emit(name, shape, timed(lambda: torch.matmul(a.t(), b)), flops=flops)
            else:
                emit(name, shape, timed(lambda: torch.matmul(a, b)), flops=flops)
            del a, b

    B, T, H, D = (2 if quick else 8), 1024, 12, 64
    ashape = dims(B, T, H, D) + " (B,T,H,D)"
    flops = 4.0 * B * H * T * T * D / 2
    q, k, v = (uniform(B, H, T, D).requires_grad_(True) for _ in range(3))
    emit("attention fwd", ashape, timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)), flops=flops)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    dout = uniform(B, H, T, D)
    emit("attention bwd", ashape, timed(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)),
         flops=2.5 * flops)
    emit("block attention fwd", ashape,
         timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)), flops=flops)
    del q, k, v, out, dout

    n = (1 << 24) if quick else (1 << 27)
    a, b = uniform(n), uniform(n)
    c = torch.empty_like(a)
    emit("add", dims(n), timed(lambda: torch.add(a, b, out=c)), nbytes=12.0 * n)
    emit("gelu fwd", dims(n), timed(lambda: F.gelu(a, approximate="tanh")), nbytes=8.0 * n)
    emit("sum of squares", dims(n), timed(lambda: torch.linalg.vector_norm(a)), nbytes=4.0 * n)
    del a, b, c

    p = (1 << 22) if quick else 124439808
    w = torch.nn.Parameter(uniform(p))
    w.grad = uniform(p)
    opt = torch.optim.AdamW([w], lr=1e-4, weight_decay=0.1, fused=True)
    emit("adamw", dims(p), timed(opt.step), nbytes=28.0 * p)
    del w, opt

    rows, cols = (4096 if quick else 16384), 768
    x = uniform(rows, cols).requires_grad_(True)
    lw, lb = uniform(cols).requires_grad_(True), uniform(cols).requires_grad_(True)
    emit("layer_norm fwd", dims(rows, cols), timed(lambda: F.layer_norm(x, (cols,), lw, lb)), nbytes=8.0 * rows * cols)
    y = F.layer_norm(x, (cols,), lw, lb)
    dy = uniform(rows, cols)
    emit("layer_norm bwd", dims(rows, cols),
         timed(lambda: torch.autograd.grad(y, (x, lw, lb), dy, retain_graph=True)), nbytes=12.0 * rows * cols)
    del x, y, dy

    n, vocab = (2048 if quick else 8192), 50304
    logits = uniform(n, vocab).requires_grad_(True)
    targets = torch.randint(0, vocab, (n,), device=dev)
    emit("softmax_xent fwd", dims(n, vocab), timed(lambda: F.cross_entropy(logits, targets)), nbytes=4.0 * n * vocab)
    loss = F.cross_entropy(logits, targets)
    emit("softmax_xent bwd", dims(n, vocab), timed(lambda: torch.autograd.grad(loss, logits, retain_graph=True)),
         nbytes=8.0 * n * vocab)
    del logits, loss

    rows, c = 50304, 768
    ids = torch.randint(0, rows, (n,), device=dev)
    table = uniform(rows, c)
    emit("embedding fwd", dims(n, rows, c), timed(lambda: F.embedding(ids, table)), nbytes=8.0 * n * c)


if __name__ == "__main__":
    main()
