#!/usr/bin/python3
# PyTorch peer benchmark for colossal's CPU trainer: times full training steps of the
# reference GPT-2 (tools/reference/gpt_torch.py) with AdamW on random token batches, in
# float32 or (--autocast bf16) under torch.autocast("cpu", bfloat16): fp32 master weights
# and optimizer, the forward and loss autocast (PyTorch's CPU autocast runs matmuls and
# linears in bf16, softmax, layer norm and the loss in fp32), the backward following it.
# --device cuda runs the same model on the GPU (AdamW fused, every step synchronised
# before its time is taken), --compile through torch.compile (the compile is in the
# warm-up steps): the peer tools/gpu/check.sh prints beside colossal's GPU step.
# It does not set thread/allocator environment variables: run it under the settings you
# want to measure (see tools/bench/README_torch.md); --threads sets torch.set_num_threads.
# Example: /usr/bin/python3 tools/bench/torch_gpt_bench.py --n_layer 12 --n_head 12 \
#   --d_model 768 --vocab 50257 --seq_len 64 --batch 4 --threads 2 --warmup 2 --steps 5 --json
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import gpt_torch as G  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="PyTorch GPT-2 training-step benchmark")
    ap.add_argument("--n_layer", type=int, default=12)
    ap.add_argument("--n_head", type=int, default=12)
    ap.add_argument("--d_model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq_len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps")
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--weight_decay", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    ap.add_argument("--checkpoint", action="store_true",
                    help="recompute every transformer layer in the backward (torch.utils.checkpoint)")
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: forward and loss under torch.autocast('cpu', torch.bfloat16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--compile", action="store_true", help="the loss through torch.compile")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    cfg = G.GptConfig(args.n_layer, args.n_head, args.d_model, args.seq_len, args.vocab)
    params = {n: t.to(args.device).requires_grad_(True) for n, t in G.init_params(cfg, args.seed).items()}
    decay, no_decay = G.decay_groups(params, ["bias", "ln_"])
    opt = torch.optim.AdamW(
        [{"params": [params[n] for n in decay], "weight_decay": args.weight_decay},
         {"params": [params[n] for n in no_decay], "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.999), eps=1e-8, **({"fused": True} if cuda else {}))
    loss_of = (lambda x, y: G.loss_fn(params, x, y, cfg, args.checkpoint))
    if args.compile:
        loss_of = torch.compile(loss_of)

    gen = torch.Generator().manual_seed(args.seed)
    n_steps = args.warmup + args.steps
    data = torch.randint(0, args.vocab, (n_steps, args.batch, args.seq_len + 1), generator=gen).to(args.device)

    step_ms, cpu_ms = [], []  # wall time; process CPU time (all threads, user + sys)
    loss = None
    for s in range(n_steps):
        x, y = data[s, :, :-1], data[s, :, 1:]
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        if args.autocast == "bf16":
            with torch.autocast(args.device, dtype=torch.bfloat16):
                loss = loss_of(x, y)
        else:
            loss = loss_of(x, y)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) * 1e3
        if s >= args.warmup:
            step_ms.append(dt)
            cpu_ms.append((time.process_time() - c0) * 1e3)
        if not args.json:
            print("step %d%s: %.1f ms, loss %.4f" % (
                s, " (warm-up)" if s < args.warmup else "", dt, loss.item()), flush=True)

    med = statistics.median(step_ms)
    n_params = G.count_params(cfg)
    matmul_params = n_params - cfg.seq_len * cfg.d_model  # all but wpe
    T, B, C, L = cfg.seq_len, args.batch, cfg.d_model, cfg.n_layer
    flops = B * T * (6 * matmul_params + 12 * L * T * C)  # model FLOPs per step
    out = {
        "step_ms": [round(v, 3) for v in step_ms],
        "step_ms_median": round(med, 3),
        "tokens_per_s": round(B * T / (med / 1e3), 2),
        # CPU time of this process per step: on a shared machine, wall time above
        # cpu_ms/threads means the process waited for a core.
        "cpu_ms_median": round(statistics.median(cpu_ms), 3),
        "threads": args.threads,
        "torch": torch.__version__,
        "params": n_params,
        "model_gflop_per_step": round(flops / 1e9, 2),
        "gflops": round(flops / 1e9 / (med / 1e3), 2),
        "final_loss": round(loss.item(), 4),
        "checkpoint": args.checkpoint,
        "autocast": args.autocast,
        "device": args.device,
        "compile": args.compile,
        "gpu_mem_peak": torch.cuda.max_memory_allocated() if cuda else 0,
        # Peak resident memory of the process (KiB): parameters, optimizer state,
        # activations, and the interpreter.
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "config": {"n_layer": L, "n_head": cfg.n_head, "d_model": C, "vocab": cfg.vocab,
                   "seq_len": T, "batch": B, "warmup": args.warmup, "steps": args.steps},
        "env": {k: os.environ.get(k, "") for k in
                ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "LD_PRELOAD",
                 "OPENBLAS_CORETYPE")},
        "loadavg_1min": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(out))
    else:
        print("median %.1f ms/step, %.0f tokens/s, %.1f GFLOP/s (model FLOPs), %d params, "
              "torch %s, %d threads" % (med, out["tokens_per_s"], out["gflops"], n_params,
                                        torch.__version__, args.threads))


if __name__ == "__main__":
    main()
