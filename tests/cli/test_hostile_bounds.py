"""Hostile inputs, second round: sizes without an upper bound, values in range for their type but
meaningless, and names too long in bytes for the file system (issue 24).

Every probe is one line on stderr, exit status 2, no traceback (``refused``, under an address-space
cap and the module's timeout), and nothing is written: the output directory, the run directory or
the table a refused command would have made does not exist afterwards, and an existing run or
checkpoint is unchanged (``unchanged``). The library refuses the same settings (``TrainConfig``,
``SearchConfig``, the tasks, the decoders), so Python callers get the same one-line errors; the
last tests show that large but sane settings (hidden 1024, the defaults, the shipped recipes)
still pass.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cellsearch import limits
from cellsearch.errors import ConfigError
from cellsearch.limits import LimitError
from cellsearch.runner.search import SearchRun
from cellsearch.storage.settings import SearchConfig
from tests.support.hostile import cli, refused, unchanged

pytestmark = pytest.mark.timeout(60)

HUGE = "100000000000000000000"  # 10**20: past every limit, and past 64 bits
LONG_NAME = "名" * 100  # 100 characters (under a 200-character limit) but 300 bytes of UTF-8
TINY = ["--hidden", "8", "--batch-size", "4", "--steps", "2", "--no-progress"]


def many(n: int, value: str = "1") -> str:
    return ",".join([value] * n)


def limit(name: str) -> str:
    """The fragment of a refusal that names limit ``name``."""
    return f"exceeds limit '{name}'"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny finished search (local backend, 2 trials of 2 steps)."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = SearchConfig(name="done", space="greff", strategy="random", trials=2, steps=2, backend="local",
                       train={"hidden_size": 8, "batch_size": 4, "lr": 1e-2},
                       task_options={"arith": {"max_digits": 1, "eval_examples": 8}})
    SearchRun(cfg, runs).run()
    return runs / "done"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "t"
    res = cli("train", "lstm", *TINY, "-t", "max_digits=1", "-t", "eval_examples=8", "--out", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    return out


def recipe(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------- 1. sizes without an upper bound
TRAIN_SIZES = [
    (["--hidden", "1000000"], limit("hidden size")),
    (["--layers", "100000"], limit("layers")),
    (["--batch-size", "100000000"], limit("batch size")),
    (["--threads", "100000"], limit("threads")),
    (["--seed", HUGE], limit("seed")),
    (["--seeds", f"0,{HUGE}"], limit("seed")),
    (["--seeds", many(1024), "--lrs", many(1024, "1e-3"), "--clips", many(1024)], limit("population size")),
    (["-t", "max_digits=1000000000"], limit("arith digits")),
    (["-t", "max_distractors=1000000000"], limit("arith distractors")),
    (["-t", "eval_examples=1000000000"], limit("evaluation examples")),
    (["--task", "xml", "-t", "eval_chars=100000000000"], limit("evaluation tokens")),
    (["--task", "xml", "-t", "bptt=1000000000"], limit("sequence length")),
    (["--task", "xml", "-t", "max_steps=1000000000"], limit("xml steps")),
    (["--task", "ptb", "-t", "bptt=1000000000"], limit("sequence length")),
    (["--task", "ptb", "-t", "eval_tokens=1000000000000"], limit("evaluation tokens")),
    (["--task", "copy", "-t", "max_length=1000000"], limit("task length")),
    (["--task", "memorize", "-t", "length=1000000"], limit("task length")),
    (["--task", "recall", "-t", "item_length=1000"], limit("recall item length")),
    (["--memory-rows", "4096"], limit("memory rows")),
    (["--steps", HUGE], limit("steps")),
    (["--minutes", "1e20"], limit("training time")),
    (["--eval-every", HUGE], limit("steps")),
    (["--mixer-delta", "1000000000"], limit("sequence length")),
    # each setting within its own limit, together far past the machine: the memory estimate refuses
    (["--hidden", "8192", "--layers", "64"], limit("training memory")),
]


@pytest.mark.parametrize("args, says", TRAIN_SIZES)
def test_train_sizes_are_bounded_before_anything_is_written(tmp_path, args, says):
    """Probe: sizes without an upper bound (train --hidden/--layers/--batch-size/--threads/--seed/--seeds/
    --lrs×--clips/--memory-rows/--steps, task options max_digits, max_distractors, eval_examples,
    eval_chars, bptt): refused in one line naming the limit, no output directory."""
    out = tmp_path / "out"
    refused("train", "lstm", "--steps", "2", "--no-progress", "--out", str(out), *args, says=says)
    assert not out.exists(), "a refused training created its output directory"


@pytest.mark.parametrize("text, says", [
    ("batch_size: 1.0e+8\n", limit("batch size")),
    ("num_layers: 100000\n", limit("layers")),
    ("hidden_size: 1000000\n", limit("hidden size")),
    ("eval_batch_size: 100000000\n", limit("batch size")),
    ("steps: 100000000000000000000\n", limit("steps")),
    ("task_options: {arith: {max_digits: 1000000000}}\n", limit("arith digits")),
])
def test_recipe_sizes_are_bounded(tmp_path, text, says):
    """Probe: a recipe's hidden_size, batch_size 1e8, num_layers 100000 (train --recipe and search --recipe)."""
    out, runs = tmp_path / "out", tmp_path / "runs"
    file = recipe(tmp_path, text)
    refused("train", "lstm", "--recipe", file, "--no-progress", "--out", str(out), says=says)
    assert not out.exists()
    refused("search", "--runs", str(runs), "--name", "x", "--backend", "local", "--no-progress",
            "--recipe", file, says=says)
    assert not runs.exists()


SEARCH_SIZES = [
    (["--hidden", "1000000"], limit("hidden size")),
    (["--budget", HUGE], limit("steps")),
    (["--minutes", "1e20"], limit("training time")),
    (["--seed", HUGE], limit("seed")),
    (["--seeds", "100000"], limit("population size")),
    (["--trials", "100000000000"], limit("trials")),
    (["--parallel", "100000"], limit("parallel")),
    (["--cpus-per-trial", "100000"], limit("threads")),
    (["--gpus-per-trial", "1e9"], limit("gpus per trial")),
    (["--hidden", "4096", "--seeds", "1024"], limit("training memory")),
]


@pytest.mark.parametrize("args, says", SEARCH_SIZES)
def test_search_sizes_are_bounded_before_the_run_directory(tmp_path, args, says):
    """Probe: sizes without an upper bound (search --hidden/--budget/--seed/--seeds/--trials/--parallel/...)."""
    runs = tmp_path / "runs"
    refused("search", "--runs", str(runs), "--name", "x", "--backend", "local", "--no-progress",
            "--strategy", "random", *args, says=says)
    assert not runs.exists(), "a refused search created its run directory"


@pytest.mark.parametrize("args, says", [
    (["--trials", HUGE], limit("trials")),
    (["--trials", "0"], "--trials must be at least 1"),
])
def test_resume_options_are_bounded(finished_run, args, says):
    """Probe: sizes without an upper bound (resume --trials past 64 bits)."""
    with unchanged(finished_run):
        refused("resume", str(finished_run), "--no-progress", *args, says=says)


@pytest.mark.parametrize("args, says", [
    (["evaluate", "--budget", HUGE], limit("steps")),
    (["evaluate", "--minutes", "1e20"], limit("training time")),
    (["evaluate", "--seeds", "100000"], limit("population size")),
    (["evaluate", "--seeds", "1000", "--lrs", "0.5,1,2"], limit("population size")),
    (["evaluate", "--parallel", "100000"], limit("parallel")),
    (["evaluate", "--cpus-per-trial", "100000"], limit("threads")),
    (["evaluate", "--gpus-per-trial", "1e9"], limit("gpus per trial")),
    (["fidelity", "--budget", HUGE], limit("steps")),
    (["fidelity", "--budgets", f"100,{HUGE}"], limit("steps")),
])
def test_evaluate_and_fidelity_sizes_are_bounded(finished_run, args, says):
    """Probe: sizes without an upper bound (evaluate/fidelity --budget, fidelity --budgets 1e20, --seeds, --parallel)."""
    command, *options = args
    with unchanged(finished_run):
        refused(command, str(finished_run), "--backend", "local", "--no-progress", *options, says=says)
    assert not (finished_run / "evaluation").exists() and not (finished_run / "fidelity").exists()


def test_evaluate_recipe_sizes_are_bounded(finished_run, tmp_path):
    """Probe: a recipe's hidden_size (evaluate --recipe)."""
    file = recipe(tmp_path, "hidden_size: 1000000\n")
    with unchanged(finished_run):
        refused("evaluate", str(finished_run), "--backend", "local", "--no-progress", "--recipe", file,
                says=limit("hidden size"))


@pytest.mark.parametrize("args, says", [
    (["--length", "100000000000"], limit("generated tokens")),
    (["--beam", "1000000"], limit("beam")),
    (["--temperature", "1", "--seed", HUGE], limit("seed")),
])
def test_generate_sizes_are_bounded(checkpoint, args, says):
    """Probe: sizes without an upper bound (generate --length, --beam, --seed)."""
    with unchanged(checkpoint):
        refused("generate", str(checkpoint), *args, says=says)


@pytest.mark.parametrize("args, says", [
    (["--threads", "100000"], limit("threads")),
    (["-H", "1000000"], limit("hidden size")),
    (["-I", "1000000"], limit("hidden size")),
    (["-T", "1000000000"], limit("sequence length")),
    (["-B", "1000000000"], limit("batch size")),
    (["--rounds", "1000000000"], limit("bench rounds")),
    (["--population", "100000"], limit("population size")),
    (["-T", "10000", "-B", "16384", "-H", "8192"], limit("training memory")),
])
def test_bench_sizes_are_bounded(args, says):
    """Probe: sizes without an upper bound (bench --threads 100000, -H, -T, -B, --population)."""
    refused("bench", "--json", *args, says=says)


@pytest.mark.parametrize("args, says", [
    (["-H", "1000000"], limit("hidden size")),
    (["-T", "1000000000"], limit("sequence length")),
    (["--seed", HUGE], limit("seed")),
])
def test_export_sizes_are_bounded(tmp_path, args, says):
    """Probe: sizes without an upper bound (export --hidden-size, --seq-len, --seed)."""
    out = tmp_path / "out"
    refused("export", "lstm", "-f", "py", "-o", str(out / "cell.py"), *args, says=says)
    assert not out.exists()


# ---------------------------------------------------------------------- 2. in range for the type, but meaningless
@pytest.mark.parametrize("args, says", [
    (["-t", "max_digits=0"], "max_digits must be at least 1"),
    (["-t", "max_distractors=-1"], "max_distractors must be at least 0"),
    (["-t", "eval_examples=0"], "eval_examples must be at least 1"),
    (["-t", "eval_examples=-1"], "eval_examples must be at least 1"),
    (["-t", "no_such_option=1"], "has no option 'no_such_option'"),
    (["--task", "xml", "-t", "bptt=-3"], "bptt must be at least 1"),
    (["--task", "xml", "-t", "eval_chars=0"], "eval_chars must be at least 32"),
    (["--task", "ptb", "-t", "bptt=0"], "bptt must be at least 1"),
    (["--task", "memorize", "-t", "length=0"], "length must be at least 1"),
    (["--lr", "nan"], "lr must be a positive number"),
    (["--lr", "inf"], "lr must be a positive number"),
    (["--lr", "0"], "lr must be a positive number"),
    (["--clip", "-1"], "clip must be a number >= 0"),
    (["--dropout", "1.5"], "dropout"),
    (["--init-scale", "nan"], "--init-scale must be a number >= 0"),
    (["--forget-bias", "inf"], "--forget-bias must be a number"),
    (["--state-limit", "-1"], "--state-limit must be a positive number"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--layers", "0"], "--layers must be at least 1"),
    (["--seed", "-1"], "seed must be at least 0"),
    (["--threads", "0"], "threads must be at least 1"),
    (["--memory-rows", "0"], "--memory-rows must be at least 1"),
    (["--lrs", "1e-3,nan"], "lr must be a positive number"),
    (["--clips", "-1"], "clip must be a number >= 0"),
    (["--ss-k", "nan"], "--ss-k must be a number >= 0"),
])
def test_meaningless_training_values_are_refused(tmp_path, args, says):
    """Probe: values in range for the type but meaningless (-t max_digits=0, eval_examples=0/-1, negative bptt,
    --lr nan/inf, negative --clip)."""
    out = tmp_path / "out"
    refused("train", "lstm", "--steps", "2", "--no-progress", "--out", str(out), *args, says=says)
    assert not out.exists()


@pytest.mark.parametrize("args, says", [
    (["--beam", "0"], "--beam must be at least 1"),
    (["--length", "-5"], "--length must be at least 0"),
    (["--temperature", "nan"], "temperature must be a positive number"),
    (["--temperature", "inf"], "temperature must be a positive number"),
    (["--temperature", "0"], "temperature must be a positive number"),
    (["--temperature", "1", "--top-k", "-1"], "--top-k must be at least 1"),
    (["--temperature", "1", "--top-k", "0"], "--top-k must be at least 1"),
    (["--beam", "2", "--length-penalty", "nan"], "--length-penalty must be a number >= 0"),
    (["--beam", "2", "--length-penalty", "-1"], "--length-penalty must be a number >= 0"),
    # found in review: a large length penalty overflowed length ** alpha (an OverflowError)
    (["--temperature", "1e5"], "exceeds limit 'temperature'"),
    (["--beam", "2", "--length-penalty", "200"], "exceeds limit 'length penalty'"),
])
def test_meaningless_generation_values_are_refused(checkpoint, args, says):
    """Probe: values in range for the type but meaningless (generate --beam 0, --length -5,
    --temperature nan, --top-k -1)."""
    with unchanged(checkpoint):
        refused("generate", str(checkpoint), *args, says=says)


@pytest.mark.parametrize("args, says", [
    (["evaluate", "--confidence", "1.5"], "--confidence"),
    (["evaluate", "--confidence", "0"], "--confidence"),
    (["evaluate", "--confidence", "nan"], "--confidence"),
    (["fidelity", "--min-tau", "2"], "--min-tau"),
    (["fidelity", "--min-tau", "nan"], "--min-tau"),
    (["fidelity", "--target-tau", "nan"], "--target-tau"),
])
def test_meaningless_report_values_are_refused_before_training(finished_run, args, says):
    """Probe: values in range for the type but meaningless (evaluate --confidence 1.5: trained, then a
    traceback); refused before the protocol line and before any training."""
    command, *options = args
    with unchanged(finished_run):
        refused(command, str(finished_run), "--backend", "local", "--no-progress", *options, says=says)
    assert not (finished_run / "evaluation").exists() and not (finished_run / "fidelity").exists()


# ---------------------------------------------------------------------- 3. names: bytes, as the file system counts
def test_a_run_name_is_limited_in_bytes(tmp_path):
    """Probe: --name of 100 CJK characters (300 bytes) was a traceback from the file system."""
    runs = tmp_path / "runs"
    refused("search", "--runs", str(runs), "--name", LONG_NAME, "--backend", "local", "--no-progress",
            says=(limit("file name length"), "300 bytes"))
    assert not runs.exists()


def test_an_output_directory_name_is_limited_in_bytes(tmp_path):
    """Probe: names (train --out with a 300-byte component): refused before training."""
    out = tmp_path / LONG_NAME
    refused("train", "lstm", *TINY, "--out", str(out), says=limit("file name length"))
    assert not any(tmp_path.iterdir())


def test_output_file_names_are_limited_in_bytes(tmp_path, finished_run, checkpoint):
    """Probe: names (export --output, runs export --output, cells draw, generate --attention-map)."""
    refused("export", "lstm", "-f", "py", "-o", str(tmp_path / f"{LONG_NAME}.py"), says=limit("file name length"))
    refused("cells", "draw", "lstm", "-o", str(tmp_path / f"{LONG_NAME}.dot"), says=limit("file name length"))
    with unchanged(finished_run):
        refused("runs", "export", str(finished_run), "-o", str(tmp_path / f"{LONG_NAME}.csv"),
                says=limit("file name length"))
    with unchanged(checkpoint):
        refused("generate", str(checkpoint), "--attention-map", str(tmp_path / f"{LONG_NAME}.png"),
                says=limit("file name length"))
    assert not any(tmp_path.iterdir())


def test_a_name_at_the_limit_is_fine(tmp_path):
    """Probe: names — the limit is on bytes, so 66 CJK characters (198 bytes) still make a run."""
    name = "名" * 66
    cfg = SearchConfig(name=name)
    cfg.validate()
    with pytest.raises(LimitError, match="file name length"):
        SearchConfig(name=name + "名").validate()


# ---------------------------------------------------------------------- the library refuses the same
def test_python_users_get_the_same_limits():
    """Probe: sizes without an upper bound, from Python: TrainConfig checks itself when made."""
    from cellsearch.training.config import TrainConfig

    with pytest.raises(LimitError, match="limit 'hidden size'"):
        TrainConfig(hidden_size=10**6)
    with pytest.raises(LimitError, match="limit 'sequence length'"):
        TrainConfig(task="xml", task_options={"bptt": 10**9})
    with pytest.raises(ConfigError, match="eval_examples must be at least 1"):
        TrainConfig(task_options={"eval_examples": 0})
    with pytest.raises(LimitError, match="limit 'seed'"):
        TrainConfig.from_dict({"seed": 2**70})
    cfg = TrainConfig(hidden_size=64)
    import dataclasses

    with pytest.raises(LimitError, match="limit 'layers'"):
        dataclasses.replace(cfg, num_layers=10**5)


def test_the_population_product_is_counted_before_it_is_built():
    """Probe: --seeds × --lrs × --clips of 1,024 each used to build 2^30 members before the limit."""
    from cellsearch.training.population import members_product

    values = list(range(1024))
    with pytest.raises(LimitError, match=r"1073741824 exceeds limit 'population size'"):
        members_product(seed=values, lr=[1e-3] * 1024, clip=[1.0] * 1024)


def test_task_options_are_checked_without_building_the_task():
    """Probe: -t max_digits=0 (a traceback) and eval_examples 1e9, from Python."""
    from cellsearch.tasks import make_task, task_class

    with pytest.raises(ConfigError, match="max_digits must be at least 1"):
        make_task("arith", max_digits=0)
    with pytest.raises(LimitError, match="limit 'evaluation examples'"):
        task_class("memorize").check_options({"eval_examples": 10**9})
    with pytest.raises(LimitError, match="limit 'evaluation tokens'"):
        task_class("ptb").check_options({"eval_tokens": 10**12})  # (no PTB data needed to refuse it)


def test_decoding_errors_are_config_errors_and_value_errors():
    """Probe: generate --temperature nan, from Python: one line at the CLI, a ValueError as before."""
    import torch

    from cellsearch.nn.decoding import DecodingError, beam_search, sample
    from cellsearch.nn.model import ModelConfig, SeqModel

    model = SeqModel("gru", ModelConfig(vocab_size=5, hidden_size=4))
    with pytest.raises(DecodingError) as info:
        sample(model, torch.tensor([[1]]), 3, temperature=math.nan)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    with pytest.raises(LimitError, match="limit 'beam'"):
        beam_search(model, torch.tensor([1]), limits.MAX_BEAM + 1, 3)


# ---------------------------------------------------------------------- large but sane still passes
def test_sane_settings_pass():
    """Probe: the limits leave real work alone — hidden 1024, the defaults, the shipped recipes on every
    task, and the settings `cellsearch search` embeds."""
    from cellsearch.training.recipes import load_recipe, recipe_names
    from cellsearch.tasks import TASK_NAMES
    from cellsearch.training.config import TrainConfig

    TrainConfig()
    TrainConfig(hidden_size=1024, num_layers=3, batch_size=64)
    for name in recipe_names():
        for task in TASK_NAMES:
            TrainConfig(task=task, **load_recipe(name).settings(task))
    search = SearchConfig(tasks=["arith", "xml", "memorize", "ptb"])
    search.validate()
    for name in recipe_names():
        search.train, search.task_options = load_recipe(name).overlay(search.train, search.task_options)
        search.validate()


def test_a_large_but_sane_training_runs(tmp_path):
    """Probe: sizes — hidden 1024 is under every limit and trains."""
    out = tmp_path / "out"
    res = cli("train", "lstm", "--hidden", "1024", "--batch-size", "2", "--steps", "1", "--no-progress",
              "-t", "max_digits=1", "-t", "eval_examples=4", "--out", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    assert (out / "checkpoint.pt").exists()


def test_the_memory_estimate_is_against_the_device_that_trains():
    """Review of this change: a GPU training or a search on a cluster's workers was refused against
    this machine's RAM. A CUDA training is checked against the GPU's memory (unknown without one:
    the training's own device check speaks), a search on a cluster where its trials run."""
    import torch

    from cellsearch.training.config import TrainConfig

    big = dict(hidden_size=4096, num_layers=4, batch_size=256)
    from cellsearch.training.memory_estimate import check_training_memory

    with pytest.raises(LimitError, match="physical memory"):
        check_training_memory(TrainConfig(**big, device="cpu"))
    if not torch.cuda.is_available():
        check_training_memory(TrainConfig(**big, device="cuda"))  # not refused for this machine's RAM
    SearchConfig(name="x", address="10.0.0.5:6379", train=dict(big)).validate()
    with pytest.raises(LimitError, match="training memory"):
        SearchConfig(name="x", train=dict(big)).validate()


def test_a_subnormal_temperature_samples_greedily(checkpoint):
    """Review of this change: --temperature 1e-320 became 0 in float32, and 0 / 0 at the largest
    logit gave NaN probabilities (a traceback in torch.multinomial). Its limit is greedy decoding."""
    res = cli("generate", str(checkpoint), "--temperature", "1e-320", "--length", "5")
    greedy = cli("generate", str(checkpoint), "--length", "5")
    assert res.exit_code == 0 and greedy.exit_code == 0, res.stderr
    assert res.stdout == greedy.stdout


@pytest.mark.parametrize("minutes, says", [("1e300", "--minutes: 1e+300 exceeds limit 'training time'"),
                                           ("0", "--minutes must be a positive number"),
                                           ("-1", "--minutes must be a positive number")])
def test_train_minutes_are_checked_as_minutes(tmp_path, minutes, says):
    """Review of this change: `train --minutes 1e300` named its limit in seconds; `--minutes 0`
    was read as no time budget at all."""
    refused("train", "lstm", "--minutes", minutes, "--out", str(tmp_path / "t"), "--no-progress", says=says)
    assert not (tmp_path / "t").exists()
