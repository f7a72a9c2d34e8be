"""A search a newcomer can read: a filter stage that rejects every candidate says so in one line,
naming the stage and what to change, and the summary names the best *candidate*, not the reference."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.cli.progress import ProgressBars
from cellsearch.runner.events import SearchStarted, StageRejectedAll
from cellsearch.storage.results import stage_warnings
from cellsearch.storage.store import read_results

runner = CliRunner()
TINY = ["--space", "mutation", "--strategy", "evolution", "--budget", "5", "--hidden", "8", "--backend", "local",
        "-o", "settings=1", "-o", "population_size=4"]


def _search(tmp_path, name: str, *args: str):
    res = runner.invoke(app, ["search", *TINY, "--name", name, "--runs", str(tmp_path), *args])
    assert res.exit_code == 0, res.output
    return res


def test_a_stage_that_rejects_every_candidate_warns_once_and_the_summary_names_the_closest(tmp_path):
    # the absolute bar alone (as before memorize_fallback): 5 steps cannot memorise to 95%
    res = _search(tmp_path, "strict", "--trials", "4", "-o", "memorize_fallback=null", "--no-progress")
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, res.stderr  # once, though all 4 were rejected
    line = warnings[0]
    assert "stage 'memorize' has rejected all 3 candidates so far" in line
    assert "bar 0.95" in line and "reference 'gru'" in line and "best candidate" in line
    assert "raise the budget (--budget, now 5 steps)" in line and "-o memorize_threshold=" in line
    out = res.stdout
    assert "rejected at memorize" in out
    assert "best candidate (the reference cell left out): none has a score; the closest" in out and "at memorize, where it was rejected" in out
    assert line in out  # the leaderboard's footer repeats what the run kept
    assert list(stage_warnings(tmp_path / "strict")) == ["memorize"]
    again = runner.invoke(app, ["leaderboard", str(tmp_path / "strict")])
    assert again.exit_code == 0 and line in again.stdout and "best candidate (the reference cell left out):" in again.stdout
    more = runner.invoke(app, ["resume", str(tmp_path / "strict"), "--trials", "6", "--no-progress"])
    assert more.exit_code == 0, more.output
    assert "warning:" not in more.stderr and line in more.stdout  # told once per run, kept in its footer


def test_a_search_shorter_than_three_candidates_warns_at_its_end_with_the_progress_drawn(tmp_path):
    res = _search(tmp_path, "short", "--trials", "1", "-o", "memorize_fallback=null")
    assert "warning: stage 'memorize' has rejected all 1 candidates so far" in res.stderr


def test_the_memorisation_bar_follows_the_reference_when_the_reference_misses_it(tmp_path):
    _search(tmp_path, "relative", "--trials", "5", "--no-progress")
    df = read_results(tmp_path / "relative")
    ref = df[df.origin == "reference"].iloc[0].metrics["memorize"]["accuracy"]
    assert ref < 0.95  # 5 steps: the GRU misses the absolute bar itself ...
    trained = df[(df.origin != "reference") & df.reused_from.isna()]
    for _, row in trained.iterrows():  # ... so the bar is 0.9 × its memorisation, for every candidate
        accuracy = row.metrics["memorize"]["accuracy"]
        assert (row.status == "rejected" and row.stage == "memorize") == (accuracy < 0.9 * ref), (accuracy, ref)


def test_progress_draws_a_stage_warning_as_one_line():
    out = io.StringIO()
    bars = ProgressBars(Console(file=out, width=80))
    bars(SearchStarted(total=3, done=0, best=None))
    bars(StageRejectedAll("memorize", 3, "stage 'memorize' has rejected all 3 candidates so far (bar 0.95): "
                                         "raise the budget (--budget, now 5 steps) or lower the bar"))
    bars.close()
    text = out.getvalue()
    assert "warning: stage 'memorize' has rejected all 3 candidates so far (bar 0.95): raise the budget" in \
        text.replace("\n", " ")


def test_the_search_summary_keeps_the_warnings(tmp_path):
    res = _search(tmp_path, "summary", "--trials", "3", "-o", "memorize_fallback=null", "--no-progress")
    assert res.exit_code == 0
    from cellsearch.storage.store import Store

    with Store(tmp_path / "summary" / "results.db", readonly=True) as store:
        summary = store.get_meta("last_summary")
    assert len(summary["warnings"]) == 1 and "stage 'memorize'" in summary["warnings"][0]
    json.dumps(summary)



def test_when_the_bar_follows_the_reference_the_advice_names_the_fallback_once_per_run(tmp_path):
    from cellsearch.runner.search import SearchRun
    from cellsearch.storage.settings import SearchConfig

    cfg = SearchConfig(name="follow", space="mutation", strategy="evolution", trials=5, steps=40, backend="local")
    run = SearchRun(cfg, tmp_path)  # (a search made, not run: the controller's bookkeeping alone)
    ctl = run.controller
    heard = []
    ctl.on_warning = heard.append
    ctl.reference = {"memorize": 0.5, "arith": 0.3}
    ctl.trained, ctl.rejected_at, ctl.best_rejected = 2, {"memorize": 2}, {"memorize": 0.4}
    ctl.check_stages()
    assert heard == []  # two candidates are too few to tell ...
    ctl.trained, ctl.rejected_at = 3, {"memorize": 3}
    ctl.check_stages()  # ... three are enough
    assert [e.stage for e in heard] == ["memorize"] and heard[0].rejected == 3
    assert heard[0].message == ("stage 'memorize' has rejected all 3 candidates so far (bar 0.45 = 0.9 × the "
                                "reference's, best candidate 0.4, reference 'gru' 0.5): raise the budget "
                                "(--budget, now 40 steps) or lower the bar (-o memorize_fallback=...)")
    ctl.trained, ctl.rejected_at = 4, {"memorize": 4}
    ctl.check_stages(final=True)
    assert len(heard) == 1  # once per stage and run
    assert list(stage_warnings(tmp_path / "follow")) == ["memorize"]
    run.lock.release()
