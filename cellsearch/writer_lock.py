"""One writer per run: an exclusive lock on a run directory, naming its holder.

Every command that writes a run (search, resume, evaluate, fidelity) holds ``WriterLock(run_dir)``
for as long as it writes. The lock is an OS file lock (``filelock``: ``flock`` on POSIX), so the
kernel releases it when its holder dies, even by ``kill -9``: a stale lock never blocks a run.
Beside it, ``.writer.json`` records who holds it (pid, host, command, since when), so a second
writer is refused with one line naming the holder, and a writer that takes over from a killed
one says so. Neither file is run data: readers never look at them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from cellsearch.errors import ConfigError, CellWarning

LOCK_FILE = ".lock"
HOLDER_FILE = ".writer.json"
BOOKKEEPING = (LOCK_FILE, HOLDER_FILE, HOLDER_FILE + ".tmp")  # files of the lock itself, not of the run


class RunLockedError(ConfigError):
    """Another process is writing this run."""


# run directory → [file lock, holders in this process]: a command that locks a run and then calls
# library code that locks it again (evaluate → Retrainer) is one writer, not two
_HELD: dict[str, list] = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WriterLock:
    """``with WriterLock(run_dir, "resume"):`` — refused at once (no waiting) if another process holds it."""

    def __init__(self, run_dir: str | Path, command: str = ""):
        self.run_dir = Path(run_dir)
        self.command = command or " ".join(["cellsearch", *sys.argv[1:2]])
        self._lock = None

    @property
    def holder_path(self) -> Path:
        return self.run_dir / HOLDER_FILE

    def holder(self) -> dict:
        """What ``.writer.json`` says about the last process that took the lock ({} if unreadable)."""
        try:
            data = json.loads(self.holder_path.read_text(encoding="utf-8")[:4096])
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> "WriterLock":
        from filelock import FileLock, Timeout

        if self._lock is not None:
            return self
        key = str(self.run_dir.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            self._lock = _HELD[key][0]
            return self
        lock = FileLock(str(self.run_dir / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            who = self.holder()
            pid = who.get("pid", "?")
            what = f" ({who['command']}, since {who['since']})" if who.get("command") and who.get("since") else ""
            raise RunLockedError(f"{self.run_dir} is being written by another process: pid {pid}{what}; "
                                 "wait for it to finish or stop it") from None
        self._lock = lock
        _HELD[key] = [lock, 1]
        previous = self.holder()
        pid = previous.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and previous.get("host") == socket.gethostname() \
                and not previous.get("released") and not _alive(pid):
            warnings.warn(CellWarning(f"{self.run_dir}: took over the lock of pid {pid} ({previous.get('command')}), "
                                      "which stopped without releasing it"))
        self._write_holder(released=False)
        return self

    def release(self) -> None:
        if self._lock is None:
            return
        key = str(self.run_dir.resolve())
        self._lock = None
        _HELD[key][1] -= 1
        if _HELD[key][1] > 0:
            return
        lock = _HELD.pop(key)[0]
        try:
            self._write_holder(released=True)
        finally:
            lock.release()

    def _write_holder(self, released: bool) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "released": released}
        tmp = self.holder_path.with_name(HOLDER_FILE + ".tmp")
        tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
        os.replace(tmp, self.holder_path)

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
