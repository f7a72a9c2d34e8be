"""cellsearch: neural architecture search for recurrent cells.

Describe a cell in YAML (``cellsearch.dsl``), compile it to a fast PyTorch layer
(``cellsearch.compile``, ``cellsearch.nn``), train and score it (``cellsearch.training``,
``cellsearch.tasks``), search for new cells (``cellsearch.spaces``, ``cellsearch.strategies``,
``cellsearch.runner``), analyse (``cellsearch.analysis``) and export (``cellsearch.export``).
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("cellsearch")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"
