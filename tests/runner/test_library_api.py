"""The library first: a search from Python is the search the command line runs (same defaults,
same overlays and checks), it takes Space and Strategy objects, and library objects leave the
process's state alone unless asked."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.errors import ConfigError
from cellsearch.runner.search import SearchRun
from cellsearch.storage.settings import SearchConfig
from cellsearch.spaces.base import Candidate
from cellsearch.storage.outcome import TrialOutcome
from cellsearch.strategies.base import Strategy, candidate_from_json, candidate_to_json
from cellsearch.testing import StrategyTestSuite, ToySpace

runner = CliRunner()


def dry_run(*args: str) -> dict:
    """The settings ``cellsearch search ARGS`` would record, from its --dry-run."""
    res = runner.invoke(app, ["search", *args, "--dry-run"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def written_config(cfg: SearchConfig, runs, **objects) -> dict:
    """The config.json ``SearchRun(cfg)`` writes (made, not run: nothing is trained)."""
    run = SearchRun(cfg, runs, **objects)
    run.lock.release()
    return json.loads((runs / cfg.name / "config.json").read_text())


@pytest.mark.parametrize("args, kw", [
    ([], {}),
    # the encoder a space whose cells read a memory gets, and the tasks it is checked against
    (["--space", "attention", "--tasks", "copy,reverse"], {"space": "attention", "tasks": ["copy", "reverse"]}),
    # a recipe under an explicit hidden size; minutes replace the default step budget
    (["--recipe", "nasbench-nlp", "--hidden", "32", "--minutes", "2"],
     {"recipe": "nasbench-nlp", "train": {"hidden_size": 32}, "minutes": 2}),
])
def test_python_resolves_to_the_settings_the_command_line_writes(tmp_path, args, kw):
    """Done-when of issue 25: ``SearchRun(SearchConfig(name='x'))`` is ``cellsearch search --name x``:
    the config.json each writes is equal, compared without training."""
    cli = dry_run("--name", "x", "--runs", str(tmp_path / "cli"), *args)
    python = written_config(SearchConfig(name="x", **kw), tmp_path / "py")
    assert python == cli
    assert asdict(SearchRun.resolve(SearchConfig(name="x", **kw))) == cli
    assert not (tmp_path / "cli").exists(), "--dry-run wrote a file"


def test_the_defaults_are_the_ones_users_have():
    """The README's defaults: 40 trials, 2 in parallel, 300 steps per trial, hidden 64."""
    cfg = SearchRun.resolve(SearchConfig(name="x"))
    assert (cfg.trials, cfg.parallel, cfg.steps, cfg.minutes, cfg.train["hidden_size"]) == (40, 2, 300, None, 64)
    assert SearchConfig(minutes=5).steps is None  # a time budget alone, as --minutes 5 gives
    assert "encoder" not in cfg.train
    assert SearchRun.resolve(SearchConfig(space="attention", tasks=["copy"])).train["encoder"] == "gru"


def test_resolving_twice_changes_nothing():
    once = SearchRun.resolve(SearchConfig(name="x", space="attention", tasks=["copy"], recipe="nasbench-nlp"))
    assert SearchRun.resolve(once) == once


def test_an_encoder_on_a_task_without_answers_is_refused_by_the_library():
    with pytest.raises(ConfigError, match="seq2seq") as exc:
        SearchRun.resolve(SearchConfig(space="attention", tasks=["xml"]))
    assert exc.value.fields == ("SearchConfig.tasks",)


# ---------------------------------------------------------------------- Space and Strategy objects
class HillClimb(Strategy):
    """A third-party strategy: a random cell first, then mutations of the best cell told so far."""

    name = "hill-climb"

    def __init__(self, space, seed: int = 0, **options):
        super().__init__(space, seed, **options)
        self.best: tuple[float, Candidate] | None = None

    def ask(self) -> Candidate:
        self.asked += 1
        if self.best is None:
            return self.space.sample(self.rng)
        return self.space.mutate(self.best[1], self.rng)

    def tell(self, candidate: Candidate, result: TrialOutcome) -> None:
        self.told += 1
        score = -math.inf if result.failed else float(result.score)
        if candidate.decisions is None:  # (a cell this space did not make cannot be mutated: the suite tells one)
            return
        if self.best is None or score > self.best[0]:
            self.best = (score, candidate)

    def state_dict(self) -> dict:
        best = None if self.best is None else [self.best[0], candidate_to_json(self.best[1])]
        return {**super().state_dict(), "best": best}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        best = state["best"]
        self.best = None if best is None else (best[0], candidate_from_json(best[1]))


class TestHillClimb(StrategyTestSuite):
    """The custom strategy is a proper strategy: it passes the suite third parties run."""

    @pytest.fixture
    def strategy_factory(self):
        return lambda space, seed: HillClimb(space, seed)


def test_a_search_takes_a_third_party_strategy_object(tmp_path):
    """The local backend searches with the object given: its asks are trained, its tells heard;
    config.json records its class and its space's name."""
    strategy = HillClimb(ToySpace(), seed=3)
    cfg = SearchConfig(name="own", trials=3, steps=2, backend="local", train={"hidden_size": 8, "batch_size": 4},
                       task_options={"arith": {"max_digits": 1, "eval_examples": 16}})
    summary = SearchRun(cfg, tmp_path, strategy=strategy).run()
    assert summary["trials"] == 3 and strategy.asked == 3 and strategy.told == 3
    config = json.loads((tmp_path / "own" / "config.json").read_text())
    assert config["strategy"] == f"{__name__}.HillClimb" and config["space"] == "toy"


def test_a_search_takes_a_space_object_with_a_strategy_by_name(tmp_path):
    space = ToySpace("my-toy")
    cfg = SearchRun.resolve(SearchConfig(name="x", strategy="random", backend="local"), space=space)
    assert cfg.space == "my-toy" and cfg.strategy == "random"


def test_a_strategy_object_and_another_space_are_refused():
    with pytest.raises(ConfigError, match="searches the space"):
        SearchRun.resolve(SearchConfig(), space=ToySpace("other"), strategy=HillClimb(ToySpace(), 0))
    with pytest.raises(ConfigError, match="a strategy name or a Strategy"):
        SearchRun.resolve(SearchConfig(), strategy=random.Random())


# ---------------------------------------------------------------------- the commands' defaults are the library's
def _option_defaults(command: str) -> dict:
    import typer

    group = typer.main.get_command(app)
    return {p.name: p.default for p in group.commands[command].params}


def test_the_train_command_shows_the_trainer_defaults():
    """`cellsearch train` passes TrainConfig only the options given; the defaults its --help shows are TrainConfig's."""
    from cellsearch.cli.train import TRAIN_FLAGS
    from cellsearch.training.config import TrainConfig

    shown, defaults = _option_defaults("train"), TrainConfig()
    for field, flag in TRAIN_FLAGS.items():
        if shown[flag] is not None and field != "seconds":
            assert shown[flag] == getattr(defaults, field), field


def test_a_recipe_lies_between_the_defaults_and_the_options_given():
    from cellsearch.training.recipes import load_recipe
    from cellsearch.training.config import TrainConfig

    recipe = load_recipe("nasbench-nlp")
    cfg = recipe.train_config({"task": "arith", "hidden_size": 32, "task_options": {"max_digits": 2}})
    assert cfg.hidden_size == 32 and cfg.num_layers == recipe.train["num_layers"]
    assert cfg.steps == recipe.train["steps"] and cfg.task_options["max_digits"] == 2
    timed = recipe.train_config({"task": "arith", "seconds": 60})
    assert (timed.steps, timed.seconds) == (None, 60)  # a budget given replaces the recipe's whole
    assert (TrainConfig(seconds=60).steps, TrainConfig().steps) == (None, 300)


# ---------------------------------------------------------------------- process-wide state
def test_a_trainer_leaves_the_process_as_it_found_it(monkeypatch):
    """Its threads only while it trains; glibc's malloc untouched (that is the process owner's call)."""
    import torch

    from cellsearch.training import allocator
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.events import StepDone
    from cellsearch.training.trainer import Trainer

    tuned = []
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator, "_set_thresholds", lambda: tuned.append(True) or True)
    before = torch.get_num_threads()
    asked = 1 if before > 1 else 2
    during = []
    cfg = TrainConfig(cell="tanh", steps=2, hidden_size=8, batch_size=4, threads=asked,
                      task_options={"max_digits": 1, "eval_examples": 8})
    trainer = Trainer(cfg)
    trainer.run(progress=lambda e: during.append(torch.get_num_threads()) if isinstance(e, StepDone) else None)
    trainer.evaluate("test")
    assert during and set(during) == {asked}
    assert torch.get_num_threads() == before
    assert tuned == []


def test_the_command_line_tunes_its_own_process(monkeypatch):
    from cellsearch.training import allocator

    tuned = []
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator, "_set_thresholds", lambda: tuned.append(True) or True)
    assert runner.invoke(app, ["cells", "info", "lstm"]).exit_code == 0
    assert tuned == [True]


# ---------------------------------------------------------------------- errors: the field in Python, the flag on the command line
def test_library_errors_name_the_field_and_the_command_line_its_flag(tmp_path):
    with pytest.raises(ConfigError, match="^trials must be at least 1") as exc:
        SearchRun.resolve(SearchConfig(trials=0))
    assert exc.value.fields == ("SearchConfig.trials",)
    res = runner.invoke(app, ["search", "--runs", str(tmp_path), "--budget", "0", "--dry-run"])
    assert res.exit_code == 2 and res.stderr.startswith("error: --budget must be at least 1"), res.stderr


def test_a_field_without_a_flag_in_the_running_command_keeps_its_name(monkeypatch):
    """evaluate has no --hidden: a recipe's bad hidden size is named as the setting it is."""
    from cellsearch.cli import flags

    error = ConfigError("hidden_size must be at least 1, not 0", field="TrainConfig.hidden_size")
    monkeypatch.setattr(flags, "_running_options", lambda: {"--budget", "--seeds"})
    assert flags.cli_message(error) == "hidden_size must be at least 1, not 0"
    monkeypatch.setattr(flags, "_running_options", lambda: {"--hidden"})
    assert flags.cli_message(error) == "--hidden must be at least 1, not 0"


def test_every_flag_of_the_table_is_an_option_of_a_command():
    import typer

    from cellsearch.cli.flags import FLAGS

    options = set()

    def walk(command):
        for param in command.params:
            options.update(getattr(param, "opts", ()))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    missing = {field: flag for field, flag in FLAGS.items() if not set(flag.split("/")) <= options}
    assert not missing


def test_evaluate_and_fidelity_show_the_library_defaults():
    """What `cellsearch evaluate`/`fidelity` run by default is what the library's functions do."""
    import inspect

    from cellsearch.analysis.evaluation import evaluate_run
    from cellsearch.analysis.fidelity import fidelity_run
    from cellsearch.runner.jobs import JobSettings
    from cellsearch.runner.protocol import DEFAULT_LR_FACTORS, protocol_for_run

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    evaluate, fidelity = _option_defaults("evaluate"), _option_defaults("fidelity")
    assert evaluate["top"] == default(evaluate_run, "top")
    assert evaluate["baselines"].split(",") == list(default(evaluate_run, "baselines"))
    assert evaluate["confidence"] == default(evaluate_run, "confidence")
    assert evaluate["seeds"] == default(protocol_for_run, "seeds")
    for options in (evaluate, fidelity):
        assert tuple(float(f) for f in options["lrs"].split(",")) == DEFAULT_LR_FACTORS
        assert options["parallel"] == JobSettings().parallel and options["backend"] == JobSettings().backend
    for name in ("sample", "min_tau", "target_tau"):
        assert fidelity[name] == default(fidelity_run, name), name
