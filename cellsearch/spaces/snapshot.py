"""A self-contained copy of a search space file and the cell files it names.

A search over ``--space my/space.yaml`` must resume from any folder, and after the user has
edited or moved the file. ``snapshot_space`` writes ``FOLDER/space.yaml`` (the validated
settings) and ``FOLDER/cells/*.yaml`` (each cell file the space names, in canonical form),
with the space's references rewritten to those copies; ``load_space(FOLDER/space.yaml)``
gives the same space.
"""

from __future__ import annotations

import os
from pathlib import Path

from cellsearch.dsl.io import dump_yaml, load_cell, load_yaml, read_source, save_cell
from cellsearch.fileio import atomic_write
from cellsearch.spaces.parsing import parse_config
from cellsearch.spaces.registry import SPACE_NAMES
from cellsearch.spaces.vocabulary import CellRef

SPACE_FILE = "space.yaml"


def is_space_file(spec: str) -> bool:
    """Whether ``load_space(spec)`` reads a file (rather than a shipped space)."""
    return not (spec in SPACE_NAMES and not Path(spec).exists())


def _is_cell_list(annotation) -> bool:
    return annotation == list[CellRef]


def snapshot_space(source: str | os.PathLike, folder: str | Path) -> Path:
    """Copy the space file ``source`` (and the cell files it names) into ``folder``; its path.
    (Call it on a space that ``load_space`` accepted: errors here are not expected.)"""
    folder = Path(folder)
    source = Path(source)
    data, _ = load_yaml(read_source(source), str(source))
    config = parse_config(data, str(source), source.parent)
    data = config.model_dump(mode="json")
    for field, info in type(config).model_fields.items():
        if not _is_cell_list(info.annotation):
            continue
        refs = []
        for i, ref in enumerate(data[field]):
            looks_like_path = Path(ref).suffix in (".yaml", ".yml") or "/" in ref or os.sep in ref
            if looks_like_path:  # (built-in names stay names)
                # (the file's stem cut to 100 bytes of UTF-8: with the prefix it stays a name the file system takes)
                stem = Path(ref).stem.encode("utf-8", "surrogatepass")[:100].decode("utf-8", "ignore")
                copy = Path("cells") / f"{field}-{i}-{stem}.yaml"
                save_cell(load_cell(ref, warn=False), folder / copy)
                ref = copy.as_posix()
            refs.append(ref)
        data[field] = refs
    return atomic_write(folder / SPACE_FILE,
                        f"# snapshot of {source}, taken when the search started\n" + dump_yaml(data))
