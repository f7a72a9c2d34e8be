"""The CUDA path in one run on a GPU machine: compile, equivalence with cuDNN, speed, a training.

    PYTHONPATH=. python benchmarks/cuda_check.py [--out DIR]

1. A compiled LSTM and GRU (``from_torch``) against ``torch.nn.LSTM``/``GRU`` on CUDA (cuDNN),
   fp32 with TF32 off: largest absolute difference of the outputs, final states and input
   gradients at a language-model size (the test suite's ``-k cuda`` tests check the same at
   small sizes, weight gradients included).
2. Training-step throughput (forward + backward) of compiled cells vs cuDNN and the reference
   interpreter on the GPU (``cellsearch.bench`` with ``device="cuda"``) at three sizes.
3. A 300-step Arithmetic training of a compiled LSTM on CUDA through the trainer.
Prints and writes ``cuda_check.json`` (to --out, default $OUT or the current folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
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
    return {"size": f"T={T} B={B} I={I} H={H}, 2 layers",
            "max_abs_diff_output": float((out_o - out_r).abs().max()),
            "max_abs_diff_states": max(float((a - b).abs().max()) for a, b in zip(st_o, st_r)),
            "max_abs_diff_input_grad": float((x2.grad - x1.grad).abs().max()),
            "output_scale": float(out_r.abs().max())}


def main(argv=None) -> int:
    from cellsearch.bench import BenchConfig, run_benchmark
    from cellsearch.train import TrainConfig, Trainer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script where there is no GPU")
    ap.add_argument("--sizes", default="64x32x128x256,35x64x650x650,64x128x1024x1024", help="TxBxIxH,...")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    result: dict = {"env": {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version(),
                            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu"}}
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    result["equivalence"] = {k: equivalence(k, args.device) for k in ("lstm", "gru")}
    print(json.dumps(result, indent=2), flush=True)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    result["throughput"] = {}
    for T, B, I, H in sizes:
        cfg = BenchConfig(seq_len=T, batch=B, input_size=I, hidden_size=H, rounds=args.rounds, min_time=0.2,
                          device=args.device)
        r = run_benchmark(("lstm", "gru"), cfg)
        result["throughput"][f"T={T} B={B} I={I} H={H}"] = {
            k: {"tokens_per_s": v["tokens_per_s"], "vs_cudnn": v["vs_torch"], "vs_interpreter": v["vs_interpreter"]}
            for k, v in r.items() if k != "config"}
        print(json.dumps(result["throughput"][f"T={T} B={B} I={I} H={H}"], indent=2), flush=True)
    t0 = time.perf_counter()
    res = Trainer(TrainConfig(cell="lstm", task="arith", steps=300, hidden_size=128, lr=5e-3, device=args.device,
                              task_options={"max_digits": 2})).run()
    result["training"] = {"cell": "lstm", "task": "arith", "steps": res.steps, "status": res.status,
                          "seconds": round(time.perf_counter() - t0, 2), "metrics": res.metrics}
    print(json.dumps(result["training"], indent=2), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_check.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
