"""Safe file I/O: atomic writes that never follow a planted link, bounded reads of regular files only.

Every file cellsearch writes goes through ``atomic_write`` (one file) or ``staged`` (several
files that stand or fall together, e.g. an export's module and its weights): the data goes to
a fresh temporary name in the target's folder, created with ``O_CREAT|O_EXCL|O_NOFOLLOW``
(``tempfile.mkstemp``), so a link planted at a predictable name such as ``state.json.tmp``
is never followed; it is flushed and ``fsync``-ed, then renamed over the target with
``os.replace``. A reader, or a crash, sees the old file or the new one, never half of one,
and on any failure the temporary file is removed and the old file is left as it was: a full
disk costs the write under way, not what was stored before. cellsearch never writes through
or over a symbolic link, a directory or a special file: such a target is refused.

A failed write (no space left, quota, read-only file system, permission, ...) raises
``WriteError`` (``DiskFullError`` for a full disk or quota) with one line naming the file and
the file system, so the caller can add what to do (``cellsearch resume RUN``, the checkpoint
that is kept) and the CLI prints it as the one line of a refusal.

Every file cellsearch reads from a user (cell, space and recipe files, run files, tables,
checkpoints) goes through ``open_regular``/``read_regular``: what is not a regular file (a
FIFO, a device such as ``/dev/zero``, a directory) is refused before it is read (opened with
``O_NONBLOCK``, so even a FIFO does not block the open, then checked with ``fstat``), and a
read stops one byte past its limit whatever ``stat`` said. Run files are read with
``follow=False``: a run file that is a symbolic link is refused.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from cellsearch.errors import CellsearchError, ConfigError
from cellsearch.limits import LimitError, clipped, named

Writer = Callable[[BinaryIO], Any]  # writes the contents to a binary file object (torch.save, df.to_parquet)

# a failed write, by errno: how the message says it
_FULL = {errno.ENOSPC: "no space left on", errno.EDQUOT: "disk quota exceeded on"}
_DENIED = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied"}
# what only a write fails with, whoever raised it (a writer function's own OSError may be anything else)
_UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
# A library that writes to a path itself (torch.jit, the ONNX exporter) may report a full disk as its
# own RuntimeError; a write that failed while the file system had less than this left counts as one.
_NEARLY_FULL_BYTES = 1 << 20


# ---------------------------------------------------------------------- errors
class WriteError(CellsearchError):
    """A file could not be written (the disk is full, read-only, not ours, ...); nothing was replaced."""

    def __init__(self, path: str | os.PathLike, reason: str, advice: str = ""):
        self.path = Path(path)
        self.reason = reason
        self.advice = advice
        super().__init__(reason + (f"; {advice}" if advice else ""))

    def advised(self, advice: str) -> "WriteError":
        """The same error with ``advice`` (what to do now) after the reason."""
        return type(self)(self.path, self.reason, advice)


class DiskFullError(WriteError):
    """No space (or no quota) left on the file system of the file being written."""


class FileRefusedError(ConfigError):
    """A file is not something cellsearch reads or replaces: a link, a FIFO, a device, a directory."""

    def __init__(self, path: str | os.PathLike, reason: str, field: str | None = None):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{_where(path)}: {reason}", field=field)


class FileTooLargeError(LimitError):
    """A file is larger than its limit (``size`` says how large, as far as it was read)."""

    def __init__(self, path: str | os.PathLike, limit: str, size: str, maximum: int):
        self.path = Path(path)
        self.size = size
        self.maximum = maximum
        super().__init__(_where(path), limit, size, f"{maximum} bytes")


def _where(path: str | os.PathLike) -> str:
    # (a path may itself be what is wrong: too long to show, or holding a newline)
    return clipped(os.fspath(path), 320)


def _file_system(path: Path) -> str:
    """The mount point of the file system holding ``path`` (what the user has to free)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        while not os.path.ismount(p) and p != p.parent:
            p = p.parent
    except OSError:  # pragma: no cover - ismount stats: a path the OS refuses
        pass
    return str(p)


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """The one-line error for ``exc``, raised while writing ``path``."""
    where = _where(path)
    code = exc.errno
    if code in _FULL:
        return DiskFullError(path, f"{_FULL[code]} {_file_system(Path(path).parent)} while writing {where}")
    if code == errno.EROFS:
        return WriteError(path, f"cannot write {where}: {_file_system(Path(path).parent)} is a read-only file system")
    reason = (_DENIED.get(code) if code is not None else None) or exc.strerror or type(exc).__name__
    return WriteError(path, f"cannot write {where}: {clipped(reason, 160)}")


def _nearly_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL_BYTES


# ---------------------------------------------------------------------- checking outputs before the work
def check_target(path: str | os.PathLike, what: str = "") -> Path:
    """Refuse a file cellsearch is about to write (now, before the work that makes its contents)
    when it could not be replaced safely: it is a symbolic link (which would be replaced, not
    followed: surely not what was meant), a directory or a special file (``/dev/full``, a FIFO),
    or a folder above it is a file. ``what`` names it in the message: a field (``"Trainer.out_dir"``,
    see ``limits.named``) or words."""
    path = Path(path)
    what, field = named(what)
    label = f"{what} {_where(path)}" if what else _where(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a name the OS refuses (too long), a folder above that is a file
        if exc.errno == errno.ENOTDIR:
            _check_folder(path.parent, what, field)
        raise ConfigError(f"{label}: cannot write there ({clipped(exc.strerror or str(exc), 160)})", field=field) from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise FileRefusedError(path, f"is a symbolic link{f' ({what})' if what else ''}; cellsearch does not "
                                   "write through or over links: remove it, or write elsewhere", field)
        if stat.S_ISDIR(st.st_mode):
            raise FileRefusedError(path, f"is a directory, not a file{f' ({what})' if what else ''}", field)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefusedError(path, f"is not a regular file ({_kind(st.st_mode)}){f' ({what})' if what else ''};"
                                   " give the name of a file to write", field)
    _check_folder(path.parent, what, field)
    return path


def check_output_dir(path: str | os.PathLike, what: str = "", files: tuple[str, ...] = ()) -> Path:
    """Refuse an output directory before the work: it is a file, a folder above it is a file, or
    one of ``files`` in it could not be replaced (see ``check_target``)."""
    path = Path(path)
    shown_as, field = named(what)
    label = f"{shown_as} {_where(path)}" if shown_as else _where(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{label} is a file, not a directory: give a directory (a new one is created)", field=field)
    _check_folder(path, shown_as, field)
    if path.is_dir():
        for name in files:
            check_target(path / name, what)
    return path


def _check_folder(folder: Path, what: str, field: str | None = None) -> None:
    """The nearest existing folder at or above ``folder`` is a directory this process may write."""
    p = Path(os.path.abspath(folder))
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    label = f" ({what})" if what else ""
    if not p.is_dir():
        raise ConfigError(f"{_where(p)} is a file, not a directory: cannot write {_where(folder)}{label}", field=field)
    if not os.access(p, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        reason = f"{_file_system(p)} is a read-only file system" if read_only else "permission denied"
        raise ConfigError(f"cannot write in {_where(p)}: {reason}{label}", field=field)


# ---------------------------------------------------------------------- writing
class _Sink(io.RawIOBase):
    """A raw file over ``fd`` that remembers the OSError a write raised, whatever the library
    calling it (torch, pyarrow) turns that error into."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return os.write(self.fd, data)
        except OSError as exc:
            self.error = exc
            raise

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def close(self) -> None:  # the fd is the caller's
        super().close()


_UMASK: int | None = None


def _new_file_mode() -> int:
    """0o666 less the umask: the mode ``open(path, "w")`` would give a new file (mkstemp gives 0o600)."""
    global _UMASK
    if _UMASK is None:
        try:  # (reading it from /proc avoids setting it, which would race with other threads)
            with open("/proc/self/status", encoding="ascii") as f:
                _UMASK = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return 0o666 & ~_UMASK


def atomic_write(path: str | os.PathLike, data: bytes | str | Writer, *, encoding: str = "utf-8") -> Path:
    """Write ``path`` whole or not at all (see the module docstring); ``data`` is bytes, text, or a
    function that writes the contents to the binary file object it is given. The folder is
    created if missing. Raises ``WriteError`` when the file system refuses, ``FileRefusedError``
    when ``path`` is a link, a directory or a special file; an exception of ``data``'s own goes on
    as it is. Either way the temporary file is gone and ``path`` is unchanged."""
    path = Path(path)
    check_target(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise write_error(path, exc) from None
    sink = _Sink(fd)
    foreign = None  # an exception of the writer function's own (not of the file system): it goes on as it is
    try:
        try:
            try:
                old = os.stat(path)
                mode = stat.S_IMODE(old.st_mode) if stat.S_ISREG(old.st_mode) else _new_file_mode()
            except FileNotFoundError:
                mode = _new_file_mode()
            os.fchmod(fd, mode)
            with io.BufferedWriter(sink, buffer_size=1 << 20) as out:
                if callable(data):
                    try:
                        data(out)
                    except BaseException as exc:
                        foreign = exc
                        raise
                else:
                    out.write(data.encode(encoding) if isinstance(data, str) else data)
            if sink.error is not None:  # a library that swallowed the failed write: the file is short
                raise sink.error
            os.fsync(fd)  # (a full disk may only show here, e.g. on NFS)
        except BaseException as exc:
            if sink.error is not None:  # whatever a library made of it, the write failed
                raise write_error(path, sink.error) from None
            if isinstance(exc, OSError) and (exc is not foreign or exc.errno in _UNWRITABLE):
                raise write_error(path, exc) from None
            raise
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise write_error(path, exc) from None
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_folder(folder)
    return path


def write_csv(path: str | os.PathLike, frame: Any, **options: Any) -> Path:
    """``frame.to_csv(path, **options)`` (a pandas DataFrame), written as ``atomic_write`` writes."""
    return atomic_write(path, lambda f: frame.to_csv(f, **options))


def save_figure(figure: Any, path: str | os.PathLike, **options: Any) -> Path:
    """``figure.savefig(path, **options)`` (a matplotlib Figure), in the format the file name's suffix
    says (png by default), written as ``atomic_write`` writes."""
    path = Path(path)
    fmt = options.pop("format", None) or path.suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda f: figure.savefig(f, format=fmt, **options))


def _sync_folder(folder: Path) -> None:
    """``fsync`` a folder, so that a rename in it survives a crash (best effort: not every file system can)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def staged(*targets: str | os.PathLike) -> Iterator[list[Path]]:
    """Write several files that stand or fall together: ``with staged(a, b) as (sa, sb):`` gives
    paths of the same names in a private folder beside the targets (all in one folder, so that
    moving them into place is a rename); the block writes them
    (by path: any library), and when it succeeds every file is ``fsync``-ed and renamed over its
    target. When it fails, the private folder is removed and no target changes; a failure of the
    file system becomes ``WriteError``. Each target is checked first (``check_target``)."""
    import shutil

    paths = [Path(t) for t in targets]
    for p in paths:
        check_target(p)
    if len({p.name for p in paths}) < len(paths) or len({p.parent.resolve() for p in paths}) > 1:
        # (the private copies share one folder by name, and a rename stays inside one file system)
        raise ValueError("staged() takes targets with distinct names in one folder")
    folder = paths[0].parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=f".{paths[0].name[:100]}.", suffix=".tmp", dir=folder))
    except OSError as exc:
        raise write_error(paths[0], exc) from None
    try:
        stage = [private / p.name for p in paths]
        try:
            yield stage
        except OSError as exc:
            raise write_error(_target_of(exc, stage, paths), exc) from None
        except CellsearchError:
            raise
        except Exception as exc:  # a library that reports a full disk its own way
            if _nearly_full(private):
                raise write_error(paths[0], OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from exc
            raise
        for s, p in zip(stage, paths):
            if not s.is_file() or s.is_symlink():
                raise write_error(p, OSError(errno.ENOENT, "the file was not written", str(s)))
        try:
            for s in stage:
                fd = os.open(s, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise write_error(paths[0], exc) from None
        for p in paths:  # all of them again before any moves: nothing may have appeared there meanwhile
            check_target(p)
        for s, p in zip(stage, paths):
            try:  # same folder: a rename, which does not fail for space
                os.replace(s, p)
            except OSError as exc:
                raise write_error(p, exc) from None
        _sync_folder(folder)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _target_of(exc: OSError, stage: list[Path], targets: list[Path]) -> Path:
    """The target whose private copy ``exc`` names (the first target if it names none)."""
    name = exc.filename and Path(os.fsdecode(exc.filename)).name
    for s, t in zip(stage, targets):
        if s.name == name:
            return t
    return targets[0]


# ---------------------------------------------------------------------- reading
def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a file"  # pragma: no cover


def open_regular(path: str | os.PathLike, *, follow: bool = True) -> int:
    """A read-only descriptor of ``path``, after checking that it is a regular file
    (``FileRefusedError`` otherwise; with ``follow=False`` a symbolic link is refused too).
    ``FileNotFoundError`` and other ``OSError``s go to the caller, who knows what is missing."""
    st = os.stat(path) if follow else os.lstat(path)  # (a device is refused before it is even opened)
    if not follow and stat.S_ISLNK(st.st_mode):
        raise FileRefusedError(path, "is a symbolic link (a run's files are never read through links)")
    if not stat.S_ISREG(st.st_mode):
        raise FileRefusedError(path, f"is not a regular file ({_kind(st.st_mode)})")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since the lstat
            raise FileRefusedError(path, "is a symbolic link") from None
        raise
    st = os.fstat(fd)  # what was opened: it may have been replaced since the stat
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileRefusedError(path, f"is not a regular file ({_kind(st.st_mode)})")
    os.set_blocking(fd, True)
    return fd


@contextmanager
def opened_regular(path: str | os.PathLike, limit: str, maximum: int, *, follow: bool = True) -> Iterator[BinaryIO]:
    """``open_regular`` as a binary file object, after checking its size against ``maximum``
    (``FileTooLargeError`` naming ``limit``): for readers that take a file (torch.load, pandas)."""
    fd = open_regular(path, follow=follow)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > maximum:
            raise FileTooLargeError(path, limit, f"{size} bytes", maximum)
        yield f


def check_regular(path: str | os.PathLike, limit: str, maximum: int, *, follow: bool = True) -> int:
    """The size of the regular file ``path``, after the checks of ``opened_regular``: for a reader
    that must hand a library the path (which opens it again) rather than the file."""
    with opened_regular(path, limit, maximum, follow=follow) as f:
        return os.fstat(f.fileno()).st_size


def read_regular(path: str | os.PathLike, limit: str, maximum: int, *, follow: bool = True) -> bytes:
    """The contents of the regular file ``path`` (see ``open_regular``), at most ``maximum`` bytes:
    a larger file is refused with ``FileTooLargeError`` naming ``limit``, by its size before
    reading, and by what the read gave after reading at most ``maximum + 1`` bytes."""
    with opened_regular(path, limit, maximum, follow=follow) as f:
        data = f.read(maximum + 1)
    if len(data) > maximum:
        raise FileTooLargeError(path, limit, f"over {maximum} bytes", maximum)
    return data


__all__ = ["DiskFullError", "FileRefusedError", "FileTooLargeError", "WriteError", "atomic_write", "check_output_dir",
           "save_figure", "write_csv",
           "check_regular", "check_target", "open_regular", "opened_regular", "read_regular", "staged", "write_error"]
