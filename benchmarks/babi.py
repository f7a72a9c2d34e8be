"""bAbI-style question answering: memn2n (the qa layout) against a plain LSTM reading the whole story.

Trains both on each task's fixed 1k training set (900 questions, 100 held out) for several seeds
and scores the 1,000 test questions with the weights of the best validation error (checked every
100 steps: the paper selects by validation too); prints a markdown table of the test error (%) per task,
mean ± std over the seeds and each seed's figure, and writes every run to JSON (a run already in
the JSON is not trained again: the script resumes):

    python benchmarks/babi.py --tasks 1,2,3,15,16 --seeds 0,1,2 --out docs/results/babi.json \
        --checkpoint runs/babi-memn2n-16

``--checkpoint DIR`` keeps the checkpoint of the first seed's memn2n on task 16, for
``cellsearch analyze hops DIR -o docs/results/babi-hops.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

EVAL_EVERY = 100  # steps between validations; the test error is the one at the best validation error
MODELS = {
    # the paper's 1k setting: d = 20, batch 32; Adam instead of its annealed SGD, no linear start or random noise
    "memn2n": {"hidden_size": 20, "lr": 0.01},
    # Weston et al.'s LSTM baseline reads the story as one sequence; hidden 50
    "lstm": {"hidden_size": 50, "lr": 0.005},
}


def train_one(model: str, task: int, seed: int, steps: int, seconds: float, examples: int,
              out_dir: str | None) -> dict:
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.trainer import Trainer

    cfg = TrainConfig(cell=model, task="babi", task_options={"task": task, "train_examples": examples}, seed=seed,
                      steps=steps, seconds=seconds, threads=1, eval_every=EVAL_EVERY, **MODELS[model])
    start = time.perf_counter()
    trainer = Trainer(cfg)
    best: dict = {"valid_error": 101.0}

    def select(step: int, metrics: dict) -> None:  # the validation set picks the model (early stopping)
        if metrics["error"] is not None and metrics["error"] < best["valid_error"]:
            best.update(step=step, valid_error=metrics["error"], test_error=trainer.evaluate("test")["error"])

    result = trainer.run(callback=select, out_dir=out_dir)
    return {"model": model, "task": task, "seed": seed, "steps": result.steps,
            "seconds": round(time.perf_counter() - start, 1), "final_valid_error": result.metrics["error"],
            "final_test_error": trainer.evaluate("test")["error"], "best_step": best.get("step"),
            "valid_error": best["valid_error"], "test_error": best.get("test_error"), "status": result.status}


def table(runs: list[dict], tasks: list[int], models: list[str]) -> str:
    """Test error (%) per task and model: at the best validation error and at the end of training,
    mean ± std over the seeds, with each seed's (best-validation) figure."""
    head = "| task | " + " | ".join(f"{m}: at best valid | {m}: final | {m}: per seed" for m in models) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(models)]

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.1f} ± {sd:.1f}"

    for task in tasks:
        cells = []
        for m in models:
            mine = [r for r in runs if r["model"] == m and r["task"] == task]
            if not mine:
                cells += ["—"] * 3
                continue
            cells += [spread([r["test_error"] for r in mine]), spread([r["final_test_error"] for r in mine]),
                      ", ".join(f"{r['test_error']:.1f}" for r in mine)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="1,2,3,15,16")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="memn2n,lstm")
    parser.add_argument("--examples", type=int, default=1000, help="training questions (the paper: 1000 or 10000)")
    parser.add_argument("--memn2n-steps", type=int, default=1500)
    parser.add_argument("--lstm-steps", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=45.0, help="time cap per training")
    parser.add_argument("--out", default="babi.json")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    tasks = [int(t) for t in args.tasks.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    out = Path(args.out)
    runs: list[dict] = json.loads(out.read_text())["runs"] if out.exists() else []
    for task in tasks:
        for model in models:
            for seed in seeds:
                if any(r["model"] == model and r["task"] == task and r["seed"] == seed for r in runs):
                    continue
                keep = args.checkpoint if (model == "memn2n" and task == 16 and seed == seeds[0]) else None
                steps = args.memn2n_steps if model == "memn2n" else args.lstm_steps
                runs.append(train_one(model, task, seed, steps, args.seconds, args.examples, keep))
                print(json.dumps(runs[-1]), flush=True)
                out.write_text(json.dumps({"settings": {**vars(args), "models": MODELS}, "runs": runs}, indent=1))
    print(table(runs, tasks, models))


if __name__ == "__main__":
    main()
