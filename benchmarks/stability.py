"""Training stability of NAS-Bench-NLP cells: which diverge, and what each candidate fix changes.

    python benchmarks/stability.py                        # before vs after, 10 recipes + lstm, gru on PTB
    python benchmarks/stability.py --variants before,ar_tar,limit,after --recipes 7,8 --cells ''
    python benchmarks/stability.py --arith                # the arith check (lstm, gru, builtins)
    python benchmarks/stability.py --diagnose 7,8         # why they run away (the trainer as before)

Every run is ``cellsearch.training.trainer.train`` with the default settings except the variant's
overrides (``VARIANTS``); ``before`` is the trainer as it was before issue 13 (no activation
penalties, no state bound). One variant is not settings but a changed bound, patched into
``cellsearch.nn.model`` in the worker process for the run: ``clamp`` (values clamped to ±limit
instead of set to 0). Prints one row per run (and one JSON line as each run ends): status, steps
trained, validation perplexity (PTB) or char_accuracy (arith), first/largest/last training loss,
how many layer calls left the bound (``redo``), how many values the bound set to 0 (``resets``),
and seconds. Runs go to ``--workers`` processes with ``--threads`` torch threads each.
Results: docs/results/stability.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

OFF = {"ar": 0.0, "tar": 0.0, "state_limit": None}  # the trainer before issue 13
VARIANTS: dict[str, dict] = {
    "before": OFF,
    "after": {},  # the defaults now
    "ar_tar": {**OFF, "ar": 2.0, "tar": 1.0},  # AWD-LSTM's penalties alone
    "limit": {**OFF, "state_limit": 10.0},  # the state bound alone
    "limit100": {"state_limit": 100.0},  # the defaults with a looser bound
    "clamp": {},  # the defaults, but values clamped to ±limit instead of reset to 0 (patched)
    "warmup": {**OFF, "warmup_steps": 100},
    "nasbench": {**OFF, "lr": 1e-3, "clip": 0.25},  # NAS-Bench-NLP's lr and clip
    "nasbench_ar_tar": {**OFF, "lr": 1e-3, "clip": 0.25, "ar": 2.0, "tar": 1.0},
    "init_half": {**OFF, "init_scale": 0.5},
    "undetected": {**OFF, "diverge_factor": 1e30},  # before, but no loss spike counts as divergence
}


@contextmanager
def patched(variant: str, counter: list) -> Iterator[None]:
    """The bound as the variant has it, counting the layer calls whose outputs left it (the
    bound's recomputations); ``cellsearch.nn.model`` is restored afterwards (workers are reused)."""
    from cellsearch.nn import model

    saved = (model.bounded_layer, model._bound)
    inner = model.bounded_layer

    def counting(cell, x, state, result, limit):
        if limit is not None and model.out_of_bounds(result[0], limit):
            counter[0] += 1
        return inner(cell, x, state, result, limit)

    model.bounded_layer = counting
    if variant == "clamp":
        model._bound = lambda v, limit: v.clamp(-limit, limit).nan_to_num(0.0)  # (NaN: 0, as the reset)
    bound = model._bound

    def counting_bound(v, limit):  # every value the bound changes, carried states included
        counter[1] += int((~(v.abs() <= limit)).sum())
        return bound(v, limit)

    model._bound = counting_bound
    try:
        yield
    finally:
        model.bounded_layer, model._bound = saved


def run_one(job: dict) -> dict:
    """Train one (cell, variant, task) and summarise it (runs in a worker process)."""
    from cellsearch.dsl.nasbench import load_recipes
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import train
    from cellsearch.training.parallelism import use_threads

    use_threads(job["threads"])
    redo = [0, 0]
    graph = None
    if job["recipe"] is not None:
        graph = load_recipes(job["recipes_file"])[job["recipe"]]
    settings = dict(cell=job["cell"], task=job["task"], steps=job["steps"], seed=job["seed"])
    if job["task"] == "ptb":
        settings.update(data_dir=job["data_dir"], task_options={"eval_tokens": job["eval_tokens"]})
    else:
        settings.update(hidden_size=job["hidden"])
    settings.update(VARIANTS[job["variant"]])
    start = time.perf_counter()
    with patched(job["variant"], redo):
        result = train(TrainConfig(**settings), graph=graph)
    losses = [x for x in result.losses if math.isfinite(x)]
    metric = "perplexity" if job["task"] == "ptb" else "char_accuracy"
    return {"cell": job["name"], "variant": job["variant"], "task": job["task"], "status": result.status,
            "steps": result.steps, metric: result.metrics.get(metric),
            "first_loss": result.losses[0] if result.losses else None,
            "max_loss": max(losses) if losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "redo": redo[0], "resets": redo[1], "seconds": round(time.perf_counter() - start, 1)}


def diagnose(index: int, args) -> None:
    """The trainer as before issue 13 on one recipe, step by step: the training loss, the state's
    rms at the end of the batch, the spectral radius of the step Jacobian d h_t / d h_(t-1) (mean
    over 4 sequences, at the state after 34 steps of the next batch); then which weight's first
    updates made the state grow (each weight alone put back to its initial value); then, within
    the batch that overflows, the largest |h| step by step."""
    import copy

    import torch

    from cellsearch.dsl.nasbench import load_recipes
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import Trainer
    from cellsearch.training.parallelism import use_threads

    use_threads(args.threads)
    graph = load_recipes(args.recipes_file)[index]
    cfg = TrainConfig(cell=graph.name, task="ptb", data_dir=args.data_dir, steps=args.steps or 400,
                      diverge_factor=1e30, **OFF)
    trainer = Trainer(cfg, graph=graph)
    cell = trainer.model.rnn.cells[0]
    probe = next(trainer.task.train_stream(cfg.batch_size, cfg.seed))  # the first batch, as a fixed probe

    def radius_and_rms() -> tuple[float, float]:
        with torch.no_grad():
            x = trainer.model.embed(probe.inputs)
            out, state = cell(x[:-1], None)
        radii = []
        for j in range(4):
            jac = torch.autograd.functional.jacobian(lambda h: cell(x[-1:, j:j + 1], (h,))[1][0],
                                                     state[0][j:j + 1])[0, :, 0, :]
            radii.append(torch.linalg.eigvals(jac).abs().max().item() if torch.isfinite(jac).all() else math.nan)
        return sum(radii) / len(radii), out.pow(2).mean().sqrt().item()

    print(f"{graph.name} (one state: {len(graph.states) == 1}); before issue 13: ar 0, tar 0, no bound")
    r, rms = radius_and_rms()
    print(f"  init: Jacobian radius {r:.2f}, probe state rms {rms:.3g}")
    initial = copy.deepcopy(trainer.model.state_dict())
    last_good = initial
    for step in range(1, 13):
        batch = next(trainer.stream)
        carried = trainer.state
        trainer.set_lr(time.perf_counter())
        loss = trainer.train_step(batch)
        r, rms = radius_and_rms()
        end = trainer.state[0].pow(2).mean().sqrt().item() if trainer.state is not None else math.nan
        print(f"  step {step:2d}: loss {loss:10.4g}, carried state rms at the batch's end {end:9.3g}; "
              f"probe: Jacobian radius {r:.2f}, state rms {rms:.3g}")
        if not math.isfinite(loss):
            trainer.model.load_state_dict(last_good)  # the weights this batch ran with
            with torch.no_grad():
                x = trainer.model.embed(batch.inputs)
                h = tuple(s[0] for s in carried) if carried is not None else None
                sizes = []
                for t in range(x.shape[0]):
                    _, h = cell(x[t:t + 1], h)
                    sizes.append(h[0].abs().max().item())
            first_bad = next((t for t, v in enumerate(sizes) if not math.isfinite(v)), 11)
            print("  the overflowing batch, largest |h| per time step: "
                  + " ".join(f"{v:.2g}" for v in sizes[:max(first_bad + 1, 12)]))
            break
        last_good = copy.deepcopy(trainer.model.state_dict())
    trained = last_good
    trainer.model.load_state_dict(trained)
    base = radius_and_rms()[1]
    print(f"  after the last finite step the probe's state rms is {base:.3g}; with one weight put back to its "
          "initial value:")
    for name in trained:
        if name.startswith("rnn."):
            trainer.model.load_state_dict({**trained, name: initial[name]})
            print(f"    {name.split('.')[-1]:14s} max change {float((trained[name] - initial[name]).abs().max()):.4f}"
                  f" -> state rms {radius_and_rms()[1]:.3g}")


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.2e}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    metric = "perplexity" if rows and rows[0]["task"] == "ptb" else "char_accuracy"
    cols = ["cell", "variant", "status", "steps", metric, "first_loss", "max_loss", "last_loss", "redo", "resets", "seconds"]
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in cols))


def main() -> None:
    from cellsearch.training.parallelism import map_in_workers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="before,after", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--recipes", default="0,1,2,3,4,5,6,7,8,9",
                    help="indices into the recipe file ('' for none)")
    ap.add_argument("--recipes-file", default=str(SHARED / "nasbench_nlp" / "recipes_example.json"))
    ap.add_argument("--cells", default="lstm,gru", help="built-in cells to add ('' for none)")
    ap.add_argument("--arith", action="store_true",
                    help="the arith check instead: --cells on arith (default lstm,gru,nas,mut1,tanh), "
                         "300 steps, hidden 64, validation char_accuracy")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default 400 on PTB, 300 on arith)")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size on arith (PTB: the default, 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=str(SHARED / "ptb"))
    ap.add_argument("--eval-tokens", type=int, default=20000, help="PTB validation tokens evaluated")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--diagnose", default=None, help="trace these recipes (indices) with the old settings instead")
    args = ap.parse_args()
    if args.diagnose:
        for index in args.diagnose.split(","):
            diagnose(int(index), args)
        return

    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    task = "arith" if args.arith else "ptb"
    steps = args.steps or (300 if args.arith else 400)
    cells = args.cells if args.cells != "lstm,gru" or not args.arith else "lstm,gru,nas,mut1,tanh"
    subjects: list[tuple[str, str, int | None]] = [(c, c, None) for c in cells.split(",") if c]
    if not args.arith:
        stem = Path(args.recipes_file).stem
        subjects = [(f"{stem}_{i}", "lstm", int(i)) for i in args.recipes.split(",") if i] + subjects
    jobs = [{"name": name, "cell": cell, "recipe": recipe, "recipes_file": args.recipes_file, "variant": v,
             "task": task, "steps": steps, "seed": args.seed, "hidden": args.hidden, "data_dir": args.data_dir,
             "eval_tokens": args.eval_tokens, "threads": args.threads}
            for name, cell, recipe in subjects for v in variants]
    start = time.perf_counter()
    rows = map_in_workers(run_one, jobs, args.workers,
                          on_result=lambda i, n, r: print(f"[{i}/{n}] {json.dumps(r)}", flush=True))
    order = {(j["name"], j["variant"]): i for i, j in enumerate(jobs)}
    rows.sort(key=lambda r: order[(r["cell"], r["variant"])])
    print_table(rows)
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    main()
