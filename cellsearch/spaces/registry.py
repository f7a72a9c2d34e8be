"""Which ``Space`` class each kind builds, the shipped spaces, and ``load_space``.

``load_space(spec)`` takes a shipped name (``SPACE_NAMES``), a path to a space file, a dict or a
``Space`` (returned as is); the mapping is checked by ``parse_config`` (one-line ``ConfigError``)
and built by the class of its ``kind`` (``SPACE_CLASSES``). The shipped spaces are the YAML files
of ``search_spaces/`` at the top of the repository, installed with the package as the package
data of ``cellsearch.spaces.builtin``.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from cellsearch import limits
from cellsearch.dsl.graph import cell_name_from
from cellsearch.errors import CellError, ConfigError
from cellsearch.limits import clipped, shown
from cellsearch.spaces.base import Space
from cellsearch.spaces.dag import DagSpace
from cellsearch.spaces.finite import FiniteSpace
from cellsearch.spaces.graph_space import GraphSpace
from cellsearch.spaces.mutation import MutationSpace
from cellsearch.spaces.parsing import parse_config
from cellsearch.spaces.schema import SpaceConfigBase
from cellsearch.spaces.tree import TreeSpace

# Shipped spaces, in display order: name → search_spaces/<name>.yaml.
SPACE_NAMES: tuple[str, ...] = ("nas_rl", "mutation", "mutation1", "dag", "dag4", "attention", "memory", "memory_attention",
                                  "nasbench_nlp", "greff")
SHIPPED_PACKAGE = "cellsearch.spaces.builtin"  # search_spaces/, installed as a package (see pyproject.toml)

SPACE_CLASSES: dict[str, type[Space]] = {"tree": TreeSpace, "mutation": MutationSpace, "dag": DagSpace,
                                         "graph": GraphSpace, "finite": FiniteSpace}


def space_classes() -> dict[str, type[Space]]:
    """kind → Space subclass."""
    return dict(SPACE_CLASSES)


def build_space(config: SpaceConfigBase, name: str) -> Space:
    """The Space object for a validated config."""
    # every concrete config (TreeConfig, ...) has its kind; the base class does not declare it
    cls = SPACE_CLASSES[getattr(config, "kind")]
    return cls(name=config.name or cell_name_from(name), description=config.description, **config.space_options())


def _shipped_folder() -> Traversable:
    """The folder of the shipped space files: the installed package data, or (a source checkout
    that is not installed) ``search_spaces/`` next to the package."""
    try:
        return resources.files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "search_spaces"


def shipped_text(name: str) -> str:
    """The YAML text of the shipped space ``name`` (one of ``SPACE_NAMES``)."""
    text: str = _shipped_folder().joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return text


def _exists(path: Path) -> bool:
    """``path.exists()``, False for a name the OS refuses (too long, ...) rather than an OSError."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _locate(spec: str | os.PathLike[str]) -> tuple[str, str, Path | None, str]:
    """(YAML text, source for messages, folder for relative cell paths, default name) of a shipped
    name or a space file; ConfigError if it is neither."""
    text = os.fspath(spec)
    path = Path(text)
    if text in SPACE_NAMES and not _exists(path):
        return shipped_text(text), f"{text}.yaml", None, text
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or os.sep in text or _exists(path)
    if not looks_like_path:
        close = difflib.get_close_matches(text, SPACE_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown search space {shown(text)}{hint}: give a shipped name "
                          f"({', '.join(SPACE_NAMES)}) or the path of a YAML file")
    from cellsearch.dsl.io import read_source

    try:  # the size is checked before the file is read
        body = read_source(path, limit="space file size", maximum=limits.MAX_SPACE_FILE_BYTES)
    except CellError as exc:  # the path itself may be what is wrong (too long for the OS)
        raise ConfigError(f"{clipped(text, 4 * limits.MAX_QUOTED_CHARS)}: {exc.reason}") from None
    return body, text, path.parent, path.stem


def space_text(spec: str | os.PathLike[str]) -> tuple[str, str]:
    """(YAML text, source) of a shipped name or a space file, as ``load_space`` reads it."""
    text, source, _, _ = _locate(spec)
    return text, source


def _load_text(text: str, source: str, base_dir: Path | None, default_name: str) -> Space:
    from cellsearch.dsl.io import load_yaml

    try:
        data, _ = load_yaml(text, source)
    except CellError as exc:
        line = f":{exc.line}" if exc.line is not None else ""
        raise ConfigError(f"{source}{line}: {exc.reason}") from None
    config = parse_config(data, source, base_dir)
    return build_space(config, default_name)


def load_space(spec: Any) -> Space:
    """A Space from a shipped name (``SPACE_NAMES``), a YAML path, a dict or a Space (returned as is)."""
    if isinstance(spec, Space):
        return spec
    if isinstance(spec, dict):
        config = parse_config(spec, "<config>")
        return build_space(config, "custom")
    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"a search space is a shipped name ({', '.join(SPACE_NAMES)}), a YAML path or a "
                          f"mapping, not {type(spec).__name__}")
    return _load_text(*_locate(spec))


def list_spaces() -> dict[str, str]:
    """Shipped space name → its description (one line)."""
    from cellsearch.dsl.io import load_yaml

    out = {}
    for name in SPACE_NAMES:
        data, _ = load_yaml(shipped_text(name), f"{name}.yaml")
        out[name] = " ".join(str(data.get("description", "")).split())
    return out


__all__ = ["SPACE_NAMES", "SPACE_CLASSES", "space_classes", "build_space", "shipped_text", "space_text",
           "load_space", "list_spaces"]
