"""A search that starts its own local Ray stops it again: normal end, Ctrl-C, error, in process.

The real-Ray tests record every process the search starts (its descendants: raylet, GCS,
monitors, API server, the raylet's agents, workers) while it runs, and check afterwards that
none of them is still running. Processes other commands start meanwhile (other tests, other
Ray instances on the machine) are not descendants, so they do not count.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

psutil = pytest.importorskip("psutil")  # installed with Ray

pytestmark = pytest.mark.ray  # searches that start and stop a local Ray

STOP_SECONDS = 10.0  # how long Ray's processes may take to exit once the search has ended


def search_cmd(tmp_path, trials: int = 1, budget: int = 5) -> list[str]:
    return [sys.executable, "-m", "cellsearch", "search", "--space", "greff", "--strategy", "random",
            "--trials", str(trials), "--budget", str(budget), "--hidden", "8", "--parallel", "1",
            "--backend", "ray", "--name", "r", "--runs", str(tmp_path), "--no-progress"]


def record_descendants(proc: psutil.Process, seen: dict[int, tuple[float, str]]) -> None:
    """Add ``proc``'s descendants to ``seen``: pid → (creation time, command line when first seen)."""
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            seen.setdefault(child.pid, (child.create_time(), " ".join(child.cmdline()) or child.name()))
        except psutil.Error:
            pass


def running(pid: int, created: float) -> bool:
    """Whether that process (not a later one with the same pid) still runs. An exited orphan nobody
    reaps (where the container's init does not) is a zombie: it runs nothing and holds nothing."""
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def survivors(seen: dict[int, tuple[float, str]]) -> list[str]:
    """The recorded processes still running after up to STOP_SECONDS."""
    deadline = time.monotonic() + STOP_SECONDS
    while True:
        left = [f"{pid} {cmd[:120]}" for pid, (created, cmd) in seen.items() if running(pid, created)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def started_ray(seen: dict[int, tuple[float, str]]) -> bool:
    return any("raylet" in cmd for _, cmd in seen.values())


def watch(proc: subprocess.Popen, seen: dict, timeout: float, until=None) -> bool:
    """Record ``proc``'s descendants until it exits (True) or ``until(proc)`` holds (False)."""
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        record_descendants(ps, seen)
        if until is not None and until(ps):
            return False
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"the search did not end within {timeout:.0f} s")
        time.sleep(0.1)
    return True


def trial_running(ps: psutil.Process) -> bool:
    """A Tune trial actor (``ray::ImplicitFunc``, its process title once it runs) is up."""
    try:
        children = ps.children(recursive=True)
    except psutil.Error:
        return False
    for child in children:
        try:
            if "ImplicitFunc" in " ".join(child.cmdline()):
                return True
        except psutil.Error:
            pass
    return False


# ---------------------------------------------------------------------- real Ray, as a command
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_search_leaves_no_ray_process_behind(tmp_path):
    pytest.importorskip("ray")
    seen: dict[int, tuple[float, str]] = {}
    with open(tmp_path / "out.txt", "wb") as out:
        proc = subprocess.Popen(search_cmd(tmp_path), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        watch(proc, seen, timeout=150)
    assert proc.returncode == 0, (tmp_path / "out.txt").read_text()[-3000:]
    assert started_ray(seen), sorted(cmd for _, cmd in seen.values())
    assert survivors(seen) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_during_a_trial_leaves_no_ray_process_behind(tmp_path):
    pytest.importorskip("ray")
    seen: dict[int, tuple[float, str]] = {}
    with open(tmp_path / "out.txt", "wb") as out:
        # a budget long enough that the trial is still training when Ctrl-C comes
        proc = subprocess.Popen(search_cmd(tmp_path, trials=4, budget=20000), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        ended = watch(proc, seen, timeout=120, until=trial_running)
        assert not ended, "the search ended before a trial started:\n" + (tmp_path / "out.txt").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole foreground process group
        watch(proc, seen, timeout=60)
    assert started_ray(seen)
    assert survivors(seen) == []
    assert "cellsearch resume" in (tmp_path / "out.txt").read_text()  # it stopped as an interrupted search


# ---------------------------------------------------------------------- real Ray, in this process
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_in_process_search_stops_the_ray_it_started(tmp_path):
    ray = pytest.importorskip("ray")
    from cellsearch.runner.search import SearchRun
    from cellsearch.storage.settings import SearchConfig

    if ray.is_initialized():
        ray.shutdown()
    cfg = SearchConfig(name="r", space="greff", strategy="random", trials=1, steps=5, parallel=1, backend="ray",
                       train={"hidden_size": 8, "batch_size": 4})
    seen: dict[int, tuple[float, str]] = {}
    done = threading.Event()

    def record() -> None:
        me = psutil.Process()
        while not done.is_set():
            record_descendants(me, seen)
            time.sleep(0.1)

    before = {c.pid for c in psutil.Process().children(recursive=True)}
    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    try:
        summary = SearchRun(cfg, tmp_path).run()
    finally:
        done.set()
        watcher.join()
    assert summary["trials"] == 1
    assert not ray.is_initialized()  # not left for the interpreter's exit
    seen = {pid: v for pid, v in seen.items() if pid not in before}
    assert started_ray(seen)
    assert survivors(seen) == []


# ---------------------------------------------------------------------- the session logic, without Ray
class FakeRay:
    def __init__(self, initialized: bool = False, fail_init: BaseException | None = None):
        self.initialized = initialized
        self.fail_init = fail_init
        self.calls: list[tuple[str, dict]] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs) -> None:
        self.calls.append(("init", kwargs))
        if self.fail_init is not None:
            raise self.fail_init
        self.initialized = True

    def shutdown(self, **kwargs) -> None:
        self.calls.append(("shutdown", kwargs))
        self.initialized = False


@pytest.fixture
def tune_module(monkeypatch):
    pytest.importorskip("ray")
    from cellsearch.runner import tune

    for name in ("RAY_DEDUP_LOGS", "RAY_AIR_NEW_OUTPUT", "RAY_prestart_worker_first_driver"):
        monkeypatch.delenv(name, raising=False)  # (what ray_session sets is undone after the test)
    return tune


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_local_ray_is_shut_down_however_the_run_ends(tune_module, monkeypatch, error):
    fake = FakeRay()
    monkeypatch.setattr(tune_module, "ray", fake)
    with pytest.raises(error):
        with tune_module.ray_session(SimpleNamespace(address=None)):
            raise error()
    (init, kw), (shutdown, _) = fake.calls
    assert (init, shutdown) == ("init", "shutdown")
    assert kw["include_dashboard"] is False and kw["address"] == "local"  # never a cluster `ray start` left
    assert os.environ["RAY_prestart_worker_first_driver"] == "0"  # no idle workers that no trial uses


def test_local_ray_is_shut_down_after_a_normal_run(tune_module, monkeypatch):
    fake = FakeRay()
    monkeypatch.setattr(tune_module, "ray", fake)
    with tune_module.ray_session(SimpleNamespace(address=None)):
        assert fake.initialized
    assert [c for c, _ in fake.calls] == ["init", "shutdown"] and not fake.initialized


def test_ctrl_c_while_ray_starts_still_shuts_it_down(tune_module, monkeypatch):
    fake = FakeRay(fail_init=KeyboardInterrupt())
    monkeypatch.setattr(tune_module, "ray", fake)
    with pytest.raises(KeyboardInterrupt):
        with tune_module.ray_session(SimpleNamespace(address=None)):
            pytest.fail("never reached")
    assert [c for c, _ in fake.calls] == ["init", "shutdown"]


def test_a_cluster_is_joined_and_left(tune_module, monkeypatch):
    """With --address, ray.shutdown() only disconnects this driver; the cluster runs on."""
    fake = FakeRay()
    monkeypatch.setattr(tune_module, "ray", fake)
    with tune_module.ray_session(SimpleNamespace(address="127.0.0.1:6379")):
        pass
    (init, kw), (shutdown, _) = fake.calls
    assert kw["address"] == "127.0.0.1:6379" and kw["_node_ip_address"] == "127.0.0.1"
    assert shutdown == "shutdown"
    assert "RAY_prestart_worker_first_driver" not in os.environ  # the cluster's settings are its own


def test_a_ray_the_caller_started_is_left_running(tune_module, monkeypatch):
    fake = FakeRay(initialized=True)
    monkeypatch.setattr(tune_module, "ray", fake)
    with tune_module.ray_session(SimpleNamespace(address=None)):
        pass
    assert fake.calls == [] and fake.initialized
