"""The digits results: bits per pixel on the test images (unconditional and given the class) and captions' exact match.

Trains every (cell, task) row for each seed (a cell ``A+E``: cell A decoding from encoder E),
scores the trained model on the 250 test images, keeps each checkpoint under ``--runs`` (for ``cellsearch generate --image`` / ``--test-image``), and writes
every row to ``--out`` as it finishes (rows already there are skipped: the script resumes), then
prints the markdown tables of mean ± std over the seeds:

    python benchmarks/digits.py --steps 1000 --caption-steps 300 --seeds 0,1,2 \
        --out docs/results/digits.json --runs runs/digits

``--attention CHECKPOINT`` prints how spread a digits-caption decoder's attention is over the pixels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROWS = [  # (label, cell, task, task options)
    ("lstm", "lstm", "digits", {}),
    ("gru", "gru", "digits", {}),
    ("lstm, given the class", "lstm", "digits", {"conditional": True}),
    ("gru, given the class", "gru", "digits", {"conditional": True}),
    ("attn-gru (encoder gru)", "attn-gru", "digits-caption", {}),
    ("lstm (reads pixels, then writes)", "lstm", "digits-caption", {}),
    ("gru+gru (encoder gru, no attention)", "gru+gru", "digits-caption", {}),
]


def run_one(label: str, cell: str, task: str, options: dict, seed: int, steps: int, hidden: int,
            runs: Path) -> dict:
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import Trainer

    decoder, _, encoder = cell.partition("+")  # A+E: cell A decoding from encoder E
    cfg = TrainConfig(cell=decoder, encoder=encoder or None, task=task, task_options=options, steps=steps,
                      hidden_size=hidden, seed=seed, threads=1)
    out = runs / f"{task}-{cell.replace('+', '-')}{'-cond' if options.get('conditional') else ''}-s{seed}"
    trainer = Trainer(cfg)
    start = time.perf_counter()
    result = trainer.run(out_dir=out)
    test = trainer.evaluate("test")
    return {"label": label, "cell": cell, "task": task, "options": options, "seed": seed, "steps": steps,
            "hidden": hidden, "status": result.status, "seconds": round(time.perf_counter() - start, 1),
            "valid": result.metrics, "test": test, "checkpoint": str(out / "checkpoint.pt")}


def independent_pixels(conditional: bool) -> float:
    """Bits per test pixel of the baseline without a recurrence: each of the 64 positions its own
    distribution over the 17 levels, counted on the training images (add-one smoothing); given
    the class, one such table per class."""
    import math

    import torch

    from cellsearch.tasks.digits import CLASSES, LEVELS, PIXELS, digit_splits

    splits = digit_splits()
    train_pixels, train_classes = splits["train"]
    test_pixels, test_classes = splits["test"]
    groups = range(CLASSES) if conditional else [None]
    nll = 0.0
    for c in groups:
        pick = (lambda classes: classes == c) if c is not None else (lambda classes: torch.ones_like(classes).bool())
        counts = torch.ones(PIXELS, LEVELS)
        counts.scatter_add_(1, train_pixels[pick(train_classes)].t().contiguous(),
                            torch.ones(PIXELS, int(pick(train_classes).sum())))
        logp = (counts / counts.sum(1, keepdim=True)).log()  # (64, 17)
        test = test_pixels[pick(test_classes)]  # (n, 64)
        nll -= float(logp.gather(1, test.t().contiguous()).sum())
    return nll / test_pixels.numel() / math.log(2)


def attention_spread(checkpoint: str) -> str:
    """How spread a digits-caption decoder's attention is over the 64 pixels, on the 250 test images:
    the perplexity of its weights (64: uniform, 1: one pixel) and the largest weight, averaged over
    every character it reads with teacher forcing; and the model's test metrics."""
    from cellsearch.tasks import make_task
    from cellsearch.tasks.base import start_state
    from cellsearch.training.saved_model import load_model

    model, _, ckpt = load_model(checkpoint)
    task = make_task("digits-caption")
    task.use_layout("seq2seq")
    batch = task.encode(task.split("test"))
    maps = model.attention_maps(batch.inputs, start_state(model, batch))
    lines = []
    for name, w in maps.items():  # (T, B, 64)
        perplexity = (-(w.clamp_min(1e-12).log() * w).sum(-1)).exp()[batch.mask]
        lines.append(f"{name}: attention perplexity {float(perplexity.mean()):.1f} pixels of 64 (median "
                     f"{float(perplexity.median()):.1f}), largest weight {float(w.max(-1).values[batch.mask].mean()):.3f}")
    return "\n".join(lines + [f"test: {task.evaluate(model, 'test')}"])


def _stat(rows: list[dict], key: str, fmt: str = ".3f") -> str:
    values = [r["test"][key] for r in rows if r["test"].get(key) is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}}"


def tables(done: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for r in done:
        groups.setdefault(r["label"], []).append(r)
    lines = ["| model | bits per pixel (test) | pixel_prob | seeds | steps | seconds per run |", "|---|---|---|---|---|---|"]
    for conditional in (False, True):
        bpp = independent_pixels(conditional)
        lines.append(f"| independent pixels{', given the class' if conditional else ''} (no recurrence; counted "
                     f"on the training images) | {bpp:.3f} | {2 ** -bpp:.3f} | – | – | – |")
    for label, *_ in ROWS:
        rows = [r for r in groups.get(label, []) if r["task"] == "digits"]
        if rows:
            lines.append(f"| {label} | **{_stat(rows, 'bits_per_pixel')}** | {_stat(rows, 'pixel_prob')} | "
                         f"{len(rows)} | {rows[0]['steps']} | {statistics.mean(r['seconds'] for r in rows):.0f} |")
    lines += ["", "| model | exact match (test) | per-character accuracy | seeds | steps | seconds per run |",
              "|---|---|---|---|---|---|"]
    for label, *_ in ROWS:
        rows = [r for r in groups.get(label, []) if r["task"] == "digits-caption"]
        if rows:
            lines.append(f"| {label} | **{_stat(rows, 'exact_match')}** | {_stat(rows, 'accuracy')} | {len(rows)} | "
                         f"{rows[0]['steps']} | {statistics.mean(r['seconds'] for r in rows):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="training steps of the bits-per-pixel rows")
    ap.add_argument("--caption-steps", type=int, default=300, help="training steps of the caption rows")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default=None, help="labels to run, separated by semicolons (default: all rows)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/digits.json"))
    ap.add_argument("--runs", type=Path, default=Path("runs/digits"))
    ap.add_argument("--attention", default=None, help="a digits-caption checkpoint: print how spread its attention is")
    args = ap.parse_args()
    if args.attention:
        print(attention_spread(args.attention))
        return
    from cellsearch.fileio import atomic_write

    done: list[dict] = json.loads(args.out.read_text()) if args.out.is_file() else []
    have = {(r["label"], r["seed"]) for r in done}
    only = set(args.only.split(";")) if args.only else None
    for label, cell, task, options in ROWS:
        if only is not None and label not in only:
            continue
        for seed in (int(s) for s in args.seeds.split(",")):
            if (label, seed) in have:
                continue
            steps = args.caption_steps if task == "digits-caption" else args.steps
            row = run_one(label, cell, task, options, seed, steps, args.hidden, args.runs)
            print(f"{label} seed {seed}: {row['test']} ({row['seconds']} s)", flush=True)
            done.append(row)
            atomic_write(args.out, json.dumps(done, indent=1) + "\n")
    print(tables(done))


if __name__ == "__main__":
    main()
