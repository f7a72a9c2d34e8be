"""Fixtures of the runner tests: a Ray in this process, and a Ray cluster of the test's own.

``ray_cluster`` starts a head and a worker node with ``ray start`` on ports it picked and in a
temporary folder of its own, so it never meets a Ray that someone else runs on the machine, and
stops exactly the processes it started (each ``ray start`` leads a session of its own, and its
daemons stay in it): never ``ray stop``, which stops every Ray here. The token its members
authenticate with is the session's (tests/conftest.py), held in the environment, not a file.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """Ray, imported (skips without it); whatever this module's tests started in-process is shut down after."""
    ray = pytest.importorskip("ray")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


@dataclass
class RayCluster:
    address: str  # the head's GCS, host:port
    temp_dir: Path  # where its nodes keep their sessions, logs and sockets
    sessions: list[int]  # the session ids (= the pids of the `ray start`s) holding its processes


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (held open together so that none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_ports(head: bool) -> list[str]:
    """Every port a node listens on, chosen free rather than Ray's defaults (GCS 6379, client server
    10001, agent 52365, workers 10002-19999), which another Ray on the machine may hold."""
    from ray._private.utils import get_ray_client_dependency_error

    names = ["node-manager-port", "object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "metrics-export-port", "runtime-env-agent-port"]
    if head and get_ray_client_dependency_error() is None:  # (without ray[client], no client server starts)
        names.append("ray-client-server-port")
    ports = [f"--{name}={port}" for name, port in zip(names, _free_ports(len(names)))]
    return ports + ["--min-worker-port=0", "--max-worker-port=0"]  # 0: each worker binds a port the OS picks


def session_members(sessions: list[int]) -> list[int]:
    """The pids of the live processes in the given sessions (field 6 of /proc/PID/stat)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
            if int(fields[3]) in sessions and fields[0] != "Z":  # (a zombie has exited already)
                pids.append(int(entry.name))
    return pids


def end_sessions(sessions: list[int]) -> None:
    """Stop every process of the given sessions: SIGTERM, up to 10 s to exit, then SIGKILL (what is
    left then holds nothing the test needs: its folder is removed after)."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        for pid in session_members(sessions):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while session_members(sessions) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not session_members(sessions):
            return
    assert not session_members(sessions), "the test's Ray nodes did not stop"


@pytest.fixture
def ray_cluster():
    """A two-node Ray cluster on 127.0.0.1 (a head and a worker, one CPU each), the test's own."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray_bin = str(Path(sys.executable).with_name("ray"))
    # short: Ray's Unix sockets live below it, and a socket path may not pass 107 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="cs-ray-"))
    port = _free_ports(1)[0]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    cluster = RayCluster(f"127.0.0.1:{port}", temp_dir, [])
    try:
        for args in (["--head", f"--port={port}", "--include-dashboard=false", *_node_ports(head=True)],
                     [f"--address={cluster.address}", *_node_ports(head=False)]):
            start = subprocess.Popen([ray_bin, "start", *args, *node], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
            cluster.sessions.append(start.pid)
            assert start.wait(timeout=180) == 0
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        end_sessions(cluster.sessions)
        shutil.rmtree(temp_dir, ignore_errors=True)
