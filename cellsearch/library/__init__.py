"""Built-in cells, shipped as YAML files next to this module.

``resolve_cell("lstm")`` loads a built-in by name; anything that looks like a path
(or names an existing file) is loaded from disk instead.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib import resources
from pathlib import Path

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.io import load_cell, loads_cell
from cellsearch.errors import CellError

# Display order for `cellsearch cells list`: baselines, Greff et al., Jozefowicz et al., Zoph & Le.
ORDER = ("tanh", "lstm", "gru",
         "vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr",
         "lstm-f", "lstm-i", "lstm-o", "lstm-b", "mut1", "mut2", "mut3",
         "nas")


def _files() -> dict[str, str]:
    root = resources.files(__name__)
    return {p.name[:-5]: p.read_text(encoding="utf-8") for p in root.iterdir() if p.name.endswith(".yaml")}


@lru_cache(maxsize=None)
def _texts() -> dict[str, str]:
    return _files()


def builtin_names(memory: bool | None = None) -> list[str]:
    """The built-in cells, in the order of ``cellsearch cells list``; ``memory`` False: only the
    plain cells, True: only those with a memory (attention decoders, the NTM)."""
    names = list(_texts())
    ordered = [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)
    if memory is None:
        return ordered
    return [n for n in ordered if bool(get_cell(n).memory or get_cell(n).memory_states) == memory]


@lru_cache(maxsize=None)
def get_cell(name: str) -> CellGraph:
    """The built-in cell ``name`` (``builtin_names()``), parsed once; CellError naming the closest name."""
    texts = _texts()
    if name not in texts:
        close = difflib.get_close_matches(name, list(texts), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise CellError(f"no built-in cell named '{name}'{hint}; `cellsearch cells list` shows them, "
                        "or pass the path of a YAML file", source=name)
    return loads_cell(texts[name], source=f"<builtin {name}>")


def list_cells() -> list[CellGraph]:
    """Every built-in cell, in ``builtin_names`` order."""
    return [get_cell(n) for n in builtin_names()]


def resolve_cell(spec: str | Path | CellGraph) -> CellGraph:
    """A cell from a built-in name, a YAML path, or a CellGraph (returned as is)."""
    if isinstance(spec, CellGraph):
        return spec
    text = str(spec)
    path = Path(text)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or path.exists()
    if looks_like_path and not (text in _texts() and not path.exists()):
        return load_cell(path)
    return get_cell(text)
