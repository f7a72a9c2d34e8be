"""The CUDA path in one run on a GPU machine: equivalence with cuDNN, speed against it, populations, a training.

    PYTHONPATH=. python benchmarks/cuda_check.py [--out DIR]

1. A compiled LSTM and GRU (``from_torch``) against ``torch.nn.LSTM``/``GRU`` on CUDA (cuDNN),
   fp32 with TF32 off: largest absolute difference of the outputs, final states, input gradients
   and every weight gradient at a language-model size (the test suite's ``-k cuda`` tests check
   the same at small sizes, and random cells against the CPU).
2. Training-step ratio against cuDNN (``cellsearch.bench.bench_cudnn_sizes``: T 64, batch 64,
   hidden 256 and 1024) of the default GPU path (fused Triton kernels + CUDA graphs) and of its
   parts (eager steps, fused without graphs, graphs over eager steps).
3. A population of 32 members against 32 solo trainings (``bench_population``) at the search's
   sizes and at hidden 256.
4. A 300-step Arithmetic training of a compiled LSTM on CUDA through the trainer.
Prints each part as it finishes and writes ``cuda_check.json`` (to --out, default $OUT or .).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch


def equivalence(kind: str, device: str = "cuda", T: int = 35, B: int = 64, I: int = 650, H: int = 650) -> dict:
    from cellsearch.nn import from_torch

    torch.manual_seed(0)
    cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    ref = cls(I, H, num_layers=2).to(device)
    ours = from_torch(ref)
    x = torch.randn(T, B, I, device=device)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_r, st_r = ref(x1)
    out_o, st_o = ours(x2)
    st_r = st_r if isinstance(st_r, tuple) else (st_r,)
    w = torch.randn_like(out_r)
    (out_r * w).sum().backward()
    (out_o * w).sum().backward()
    out_o, out_r = out_o.detach(), out_r.detach()
    st_o, st_r = [s.detach() for s in st_o], [s.detach() for s in st_r]
    # weight gradients: torch's gradients loaded as if they were weights, through the same mapping
    grads_as_params = cls(I, H, num_layers=2).to(device)
    with torch.no_grad():
        for (_, dst), (_, src) in zip(grads_as_params.named_parameters(), ref.named_parameters()):
            dst.copy_(src.grad)
    expected = dict(from_torch(grads_as_params).named_parameters())
    weight_diff = max(float((p.grad - expected[name].detach()).abs().max())
                      for name, p in ours.named_parameters() if not name.endswith("__b"))
    weight_scale = max(float(expected[name].detach().abs().max()) for name, p in ours.named_parameters()
                       if not name.endswith("__b"))
    return {"size": f"T={T} B={B} I={I} H={H}, 2 layers",
            "weight_grad_scale": weight_scale,
            "relative_diff_weight_grads": weight_diff / weight_scale,
            "max_abs_diff_output": float((out_o - out_r).abs().max()),
            "max_abs_diff_states": max(float((a - b).abs().max()) for a, b in zip(st_o, st_r)),
            "max_abs_diff_input_grad": float((x2.grad - x1.grad).abs().max()),
            "max_abs_diff_weight_grads": weight_diff,
            "output_scale": float(out_r.abs().max())}


def main(argv=None) -> int:
    from cellsearch.bench import PopulationBenchConfig, bench_cudnn_sizes, bench_population
    from cellsearch.compile.fused import triton_available
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import Trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--parts", default="equivalence,vs_cudnn,vs_cudnn_tf32,population,training")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"env": {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version(), "triton": triton_available(),
                            "device": torch.cuda.get_device_name()}}

    def part(name, fn):
        if name not in args.parts.split(","):
            return
        t0 = time.perf_counter()
        try:
            result[name] = fn()
        except Exception:  # keep going: one broken part must not cost the others' figures
            result[name] = {"error": traceback.format_exc()}
        result[name + "_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({name: result[name]}, indent=2), flush=True)
        (out / "cuda_check.json").write_text(json.dumps(result, indent=2) + "\n")

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    part("equivalence", lambda: {k: equivalence(k) for k in ("lstm", "gru")})
    part("vs_cudnn", lambda: bench_cudnn_sizes(("lstm", "gru"), rounds=args.rounds))
    # torch's own default lets cuDNN use TF32 (and not cuBLAS): here both sides use it
    part("vs_cudnn_tf32", lambda: bench_cudnn_sizes(("lstm", "gru"), rounds=args.rounds, tf32=True))

    def population():
        return {f"hidden {h}": bench_population(PopulationBenchConfig(k=args.population, hidden_size=h, batch=32,
                                                                      rounds=3, device="cuda"))
                for h in (64, 256)}

    part("population", population)

    def training():
        t0 = time.perf_counter()
        res = Trainer(TrainConfig(cell="lstm", task="arith", steps=300, hidden_size=128, lr=5e-3, device="cuda",
                                  task_options={"max_digits": 2})).run()
        return {"cell": "lstm", "task": "arith", "steps": res.steps, "status": res.status,
                "seconds": round(time.perf_counter() - t0, 2), "metrics": res.metrics}

    part("training", training)
    return 0


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    sys.exit(main())
