"""What every export format shares: the format names, ``ExportError`` and the version stamp."""

from __future__ import annotations

from cellsearch.errors import CellsearchError

FORMATS = ("py", "torchscript", "onnx", "yaml")


class ExportError(CellsearchError):
    """An export could not be written, or the written artifact does not compute the cell."""


def version() -> str:
    """cellsearch's version (``cellsearch.__version__``, else the installed distribution's)."""
    import cellsearch

    v = getattr(cellsearch, "__version__", None)
    if v:
        return str(v)
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("cellsearch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


__all__ = ["FORMATS", "ExportError", "version"]
