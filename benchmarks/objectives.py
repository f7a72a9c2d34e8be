"""Teacher forcing, scheduled sampling, REINFORCE and MIXER compared on one seq2seq task.

Trains one encoder-decoder model per (objective, seed) with the same budget and prints a markdown
table of mean ± std over the seeds (teacher-forced accuracy, greedy exact match at training
lengths and at up to 2x them), plus JSON with every member's metrics:

    python benchmarks/objectives.py --cell attn-gru --task reverse --steps 1000 --hidden 32 --seeds 0,1,2 \\
        --workers 2 --out docs/results/objectives-reverse.json

Objectives: ``xent`` (teacher forcing), ``ss`` (scheduled sampling, linear decay of teacher
forcing to 0.5 over the budget), ``reinforce`` (from the start) and ``mixer`` (teacher forcing for
the first third of the budget, then one teacher-forced answer token fewer every ``--mixer-every``
steps).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from length_generalisation import _stat, run_pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="attn-gru")
    ap.add_argument("--task", default="reverse")
    ap.add_argument("--objectives", default="xent,ss,reinforce,mixer")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-length", type=int, default=6)
    ap.add_argument("--eval-examples", type=int, default=256)
    ap.add_argument("--mixer-every", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from cellsearch.training.parallelism import map_in_workers

    settings = {"xent": {}, "ss": {"scheduled_sampling": "linear", "ss_k": args.steps * 2.0, "ss_min": 0.5},
                "reinforce": {"objective": "reinforce"},
                "mixer": {"objective": "mixer", "mixer_xent_steps": args.steps // 3, "mixer_every": args.mixer_every}}
    options = {"max_length": args.max_length, "eval_examples": args.eval_examples}
    jobs = [{"cell": args.cell, "task": args.task, "hidden": args.hidden, "steps": args.steps, "lr": args.lr,
             "seeds": [int(s) for s in args.seeds.split(",")], "task_options": options, "threads": 1,
             "label": name, "train": settings[name]} for name in args.objectives.split(",")]

    def done(i: int, n: int, result: dict) -> None:
        print(f"[{i}/{n}] {result['label']}: {result['seconds']:.0f}s", flush=True)

    results = map_in_workers(run_pair, jobs, args.workers, done)
    if args.out:
        args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "results": results},
                                       indent=1) + "\n")
    print("| objective | accuracy (teacher-forced) | exact match, training lengths | exact match, 2× lengths | seconds |")
    print("|---|---|---|---|---|")
    order = args.objectives.split(",")
    for r in sorted(results, key=lambda r: order.index(r["label"])):
        m = r["members"]
        print(f"| {r['label']} | {_stat(m, 'accuracy')} | {_stat(m, 'exact_match')} | {_stat(m, 'exact_match_long')} "
              f"| {r['seconds']:.0f} |")


if __name__ == "__main__":
    from cellsearch.training.allocator import keep_freed_memory

    keep_freed_memory()  # (a script is its own process: tuned for training steps, as the command line is)
    main()
