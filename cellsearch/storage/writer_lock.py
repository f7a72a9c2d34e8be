"""One writer per run: an exclusive lock on a run directory, naming its holder.

Every command that writes a run (search, resume, evaluate, fidelity) holds ``WriterLock(run_dir)``
for as long as it writes. The lock is an OS file lock (``filelock``: ``flock`` on POSIX), so the
kernel releases it when its holder dies, even by ``kill -9``: a stale lock never blocks a run.
Beside it, ``.writer.json`` records who holds it (pid, host, command, since when), so a second
writer is refused with one line naming the holder, and a writer that takes over from a killed
one says so. Neither file is run data: readers never look at them. A ``.lock`` that is a
symbolic link or not a regular file is refused in one line (the lock would be taken on
whatever it points to), and ``.writer.json`` is written atomically (``fileio``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from cellsearch.errors import CellsearchError, ConfigError, CellWarning
from cellsearch.fileio import FileRefusedError, atomic_write, read_regular
from cellsearch.limits import MAX_LOCK_HOLDER_BYTES

if TYPE_CHECKING:  # (filelock itself is imported when a lock is taken)
    from filelock import BaseFileLock

LOCK_FILE = ".lock"
HOLDER_FILE = ".writer.json"
BOOKKEEPING = (LOCK_FILE, HOLDER_FILE)  # files of the lock itself, not of the run


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
        self._lock: BaseFileLock | None = None

    @property
    def holder_path(self) -> Path:
        """Where the holder record (``.writer.json``) lives."""
        return self.run_dir / HOLDER_FILE

    def holder(self) -> dict:
        """What ``.writer.json`` says about the last process that took the lock ({} if unreadable)."""
        try:
            data = json.loads(read_regular(self.holder_path, "lock holder size", MAX_LOCK_HOLDER_BYTES, follow=False))
        except (OSError, ValueError, CellsearchError):  # (a link, a FIFO, garbage: nobody we know holds it)
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> "WriterLock":
        """Take the lock and record this process as its holder; returns the lock. RunLockedError (one
        line naming the holder) at once if another process holds it; taking it again in this process
        only counts, and warns if it takes over from a holder that died without releasing it."""
        from filelock import FileLock, Timeout

        if self._lock is not None:
            return self
        key = str(self.run_dir.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            self._lock = _HELD[key][0]
            return self
        self._check_lock_file()
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
        try:
            self._write_holder(released=False)
        except BaseException:  # (a full disk, a planted link): not locked after all
            self._lock = None
            _HELD.pop(key, None)
            lock.release()
            raise
        return self

    def release(self) -> None:
        """Give the lock up (when this process's last holder releases it) and record that; a no-op if
        this object does not hold it."""
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
        except CellsearchError:
            # (a full disk: the record is bookkeeping, and the error that stopped the writer is the one
            # to report; without the record the next writer takes over without a word)
            with contextlib.suppress(OSError):
                self.holder_path.unlink()
        finally:
            lock.release()

    def _check_lock_file(self) -> None:
        """Refuse a ``.lock`` that is a link (the lock file would be created or truncated wherever it
        points) or not a regular file."""
        path = self.run_dir / LOCK_FILE
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(f"{path}: cannot check the writer lock ({exc.strerror or exc})") from None
        if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise FileRefusedError(path, f"the run's writer lock is {what}; remove it (no cellsearch writer "
                                   "makes one) and try again")

    def _write_holder(self, released: bool) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "released": released}
        atomic_write(self.holder_path, json.dumps(info) + "\n")

    def __enter__(self) -> "WriterLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
