"""The YAML schema of a search space, and ``load_space``.

A search-space file is one mapping whose ``kind`` picks the model (and the ``Space`` class)::

    kind: dag            # tree | mutation | dag | graph | finite
    name: my_dag         # optional (default: the file name)
    description: ...     # optional
    nodes: 6             # the fields of that kind (see docs/search_spaces.md)

``load_space(spec)`` takes a shipped name (``SPACE_NAMES``), a path to such a file or a dict.
Every problem is a ``ConfigError`` with one line naming the file and the field, e.g.
``my.yaml: field 'activations[2]': unknown activation 'tanhh' (allowed: ...)``. Unknown fields
are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter,
                      ValidationError, ValidationInfo, field_validator, model_validator)

from cellsearch import limits
from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.ops import ACTIVATIONS, OPS
from cellsearch.errors import CellError, ConfigError
from cellsearch.limits import clipped, shown

# Shipped spaces, in display order: name → file in cellsearch/spaces/builtin/.
SPACE_NAMES: tuple[str, ...] = ("nas_rl", "mutation", "dag", "dag4", "nasbench_nlp", "greff")
KINDS: tuple[str, ...] = ("tree", "mutation", "dag", "graph", "finite")

# ---------------------------------------------------------------------- vocabularies
TREE_COMBINATIONS = ("add", "mul")
ELEMENTWISE_OPS = ("add", "sub", "mul")
TRANSFORMATIONS = ("replace_activation", "swap_op", "insert_activation", "remove_node",
                   "replace_by_ancestor", "replace_by_combination")
MUTATION_RATES = ("uniform", "one_to_three")
GRAPH_OPS = ("linear", "blend", "add", "sub", "mul", "neg", "one_minus", "diag",
             "tanh", "sigmoid", "relu", "leaky_relu", "identity")
_LINEAR_A = re.compile(r"linear(-?\d+(?:\.\d+)?)")


def linear_activation_value(label: str) -> float | None:
    """``A`` for Jozefowicz's ``linearA`` (``linear0.9`` → 0.9), None for any other label."""
    m = _LINEAR_A.fullmatch(label)
    return float(m.group(1)) if m else None


def activation_label(value: float) -> str:
    return f"linear{value:g}"


MUTATION_ACTIVATIONS_TEXT = ", ".join(ACTIVATIONS) + ", linearA for a number A (e.g. linear0.9)"


class FieldProblem(ValueError):
    """A model-level check that knows which field is wrong (``path`` as in the error message)."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


# ---------------------------------------------------------------------- item validators
def _choice(what: str, allowed: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown {what} {shown(value)} ({hint}allowed: {', '.join(allowed)})")
        return value
    return check


def _mutation_activation(value: str) -> str:
    if value in ACTIVATIONS:
        return value
    a = linear_activation_value(value)
    if a is None:
        close = difflib.get_close_matches(value, [*ACTIVATIONS, "linear0", "linear1", "linear0.9", "linear1.1"], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown activation {shown(value)} ({hint}allowed: {MUTATION_ACTIVATIONS_TEXT})")
    return activation_label(a)


def _graph_op(value: str) -> str:
    if value in OPS and value not in GRAPH_OPS:
        raise ValueError(f"op {shown(value)} cannot be used in a graph space (allowed: {', '.join(GRAPH_OPS)})")
    return _choice("op", GRAPH_OPS)(value)


def _resolve_cell_ref(value: str, info: ValidationInfo) -> tuple[str, CellGraph]:
    """A cell given by built-in name or path (relative to the space file's folder)."""
    from cellsearch.library import builtin_names, get_cell
    from cellsearch.dsl.io import load_cell

    base_dir = (info.context or {}).get("base_dir")
    path = Path(value)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in value or os.sep in value
    if not looks_like_path:
        if value in builtin_names():
            return value, get_cell(value)
        names = builtin_names()
        close = difflib.get_close_matches(value, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown cell {shown(value)} ({hint}built-in cells: {', '.join(names)}; "
                         "or give the path of a YAML cell file)")
    try:
        if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
            path = Path(base_dir) / path
        return str(path), load_cell(path, warn=False)
    except CellError as exc:
        raise ValueError(f"cannot load cell {shown(value)}: {exc}") from None
    except (OSError, ValueError) as exc:  # exists() on a name the OS refuses (too long, a NUL byte)
        raise ValueError(f"cannot load cell {shown(value)}: {clipped(exc)}") from None


def _cell_ref(value: str, info: ValidationInfo) -> str:
    return _resolve_cell_ref(value, info)[0]


def _unique(values: list, what: str) -> list:
    if not values:
        raise ValueError(f"must list at least one {what}")
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{shown(v)} is listed twice")
        seen.add(v)
    return values


def _between(value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise ValueError(f"must be between {lo} and {hi}, got {value}")
    return value


Combination = Annotated[str, AfterValidator(_choice("combination", TREE_COMBINATIONS))]
Activation = Annotated[str, AfterValidator(_choice("activation", ACTIVATIONS))]
MutationActivation = Annotated[str, AfterValidator(_mutation_activation)]
ElementwiseOp = Annotated[str, AfterValidator(_choice("elementwise op", ELEMENTWISE_OPS))]
Transformation = Annotated[str, AfterValidator(_choice("transformation", TRANSFORMATIONS))]
GraphOp = Annotated[str, AfterValidator(_graph_op)]
CellRef = Annotated[str, AfterValidator(_cell_ref)]


# ---------------------------------------------------------------------- models
class _SpaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str = ""

    def space_options(self) -> dict[str, Any]:
        """The kind's own fields, as keyword arguments of its Space class."""
        return self.model_dump(exclude={"kind", "name", "description"})


class TreeConfig(_SpaceConfig):
    """Zoph & Le 2017: a binary tree over ``leaves`` leaves, each combining x and h_prev."""

    kind: Literal["tree"]
    leaves: StrictInt = 8
    combinations: list[Combination] = Field(default_factory=lambda: list(TREE_COMBINATIONS))
    activations: list[Activation] = Field(default_factory=lambda: ["identity", "tanh", "sigmoid", "relu"])
    memory: StrictBool = True
    bias: StrictBool = False

    @field_validator("leaves")
    @classmethod
    def _leaves(cls, v: int) -> int:
        if v < 2 or v > 64 or v & (v - 1):
            raise ValueError(f"must be a power of two between 2 and 64, got {v}")
        return v

    @field_validator("combinations")
    @classmethod
    def _combinations(cls, v: list) -> list:
        return _unique(v, "combination")

    @field_validator("activations")
    @classmethod
    def _activations(cls, v: list) -> list:
        return _unique(v, "activation")


class MutationConfig(_SpaceConfig):
    """Jozefowicz et al. 2015: cells grown from seeds by the paper's six transformations."""

    kind: Literal["mutation"]
    seeds: list[CellRef] = Field(default_factory=lambda: ["lstm", "gru"])
    activations: list[MutationActivation] = Field(
        default_factory=lambda: ["tanh", "sigmoid", "relu", "linear0", "linear1", "linear0.9", "linear1.1"])
    elementwise_ops: list[ElementwiseOp] = Field(default_factory=lambda: list(ELEMENTWISE_OPS))
    transformations: list[Transformation] = Field(default_factory=lambda: list(TRANSFORMATIONS))
    rate: str = "uniform"
    max_nodes: StrictInt = 40
    decision_steps: StrictInt = 4
    choices: StrictInt = 64

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list) -> list:
        return _unique(v, "seed cell")

    @field_validator("activations")
    @classmethod
    def _activations(cls, v: list) -> list:
        return _unique(v, "activation")

    @field_validator("elementwise_ops")
    @classmethod
    def _ops(cls, v: list) -> list:
        _unique(v, "elementwise op")
        if len(v) < 2:
            raise ValueError("must list at least two ops (a swap needs another op to swap to)")
        return v

    @field_validator("transformations")
    @classmethod
    def _transformations(cls, v: list) -> list:
        return _unique(v, "transformation")

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        return _choice("rate", MUTATION_RATES)(v)

    @field_validator("max_nodes")
    @classmethod
    def _max_nodes(cls, v: int) -> int:
        return _between(v, 2, 1000)

    @field_validator("decision_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        return _between(v, 0, 64)

    @field_validator("choices")
    @classmethod
    def _choices(cls, v: int) -> int:
        return _between(v, 2, 4096)

    @model_validator(mode="after")
    def _seeds_fit(self, info: ValidationInfo) -> "MutationConfig":
        from cellsearch.spaces.common import check_useful, prune
        from cellsearch.spaces.base import InvalidCandidate

        for i, ref in enumerate(self.seeds):
            graph = prune(_resolve_cell_ref(ref, info)[1])
            if len(graph.nodes) > self.max_nodes:
                raise FieldProblem(f"seeds[{i}]", f"cell '{ref}' has {len(graph.nodes)} nodes, more than "
                                   f"max_nodes ({self.max_nodes})")
            try:
                check_useful(graph)
            except InvalidCandidate as exc:
                raise FieldProblem(f"seeds[{i}]", f"cell '{ref}' cannot seed a mutation search: {exc}") from None
        return self


class DagConfig(_SpaceConfig):
    """ENAS/DARTS recurrent space: node i reads one earlier node through a highway connection."""

    kind: Literal["dag"]
    nodes: StrictInt = 8
    activations: list[Activation] = Field(default_factory=lambda: ["tanh", "relu", "sigmoid", "identity"])
    bias: StrictBool = True

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: int) -> int:
        return _between(v, 2, 64)

    @field_validator("activations")
    @classmethod
    def _activations(cls, v: list) -> list:
        return _unique(v, "activation")


class GraphConfig(_SpaceConfig):
    """NAS-Bench-NLP-like: a free DAG of ops over x, the previous states and earlier nodes."""

    kind: Literal["graph"]
    min_nodes: StrictInt = 3
    max_nodes: StrictInt = 12
    ops: list[GraphOp] = Field(default_factory=lambda: ["linear", "blend", "add", "mul", "tanh", "sigmoid",
                                                        "leaky_relu"])
    max_linear_inputs: StrictInt = 3
    min_states: StrictInt = 1
    max_states: StrictInt = 3

    @field_validator("min_nodes", "max_nodes")
    @classmethod
    def _nodes(cls, v: int) -> int:
        return _between(v, 1, 64)

    @field_validator("max_linear_inputs")
    @classmethod
    def _linear_inputs(cls, v: int) -> int:
        return _between(v, 1, 8)

    @field_validator("min_states", "max_states")
    @classmethod
    def _states(cls, v: int) -> int:
        return _between(v, 1, 8)

    @field_validator("ops")
    @classmethod
    def _ops(cls, v: list) -> list:
        _unique(v, "op")
        if "linear" not in v:
            raise ValueError("must include 'linear' (the only op that may read the input x)")
        return v

    @model_validator(mode="after")
    def _limits(self) -> "GraphConfig":
        if self.min_nodes > self.max_nodes:
            raise FieldProblem("min_nodes", f"must not be greater than max_nodes ({self.min_nodes} > {self.max_nodes})")
        if self.min_states > self.max_states:
            raise FieldProblem("min_states",
                               f"must not be greater than max_states ({self.min_states} > {self.max_states})")
        if self.max_states > self.max_nodes:
            raise FieldProblem("max_states", f"must not be greater than max_nodes ({self.max_states} > "
                               f"{self.max_nodes}): every state is a node of its own")
        return self


class FiniteConfig(_SpaceConfig):
    """A fixed list of cells (built-in names or YAML paths): one decision picks one."""

    kind: Literal["finite"]
    cells: list[CellRef]

    @field_validator("cells")
    @classmethod
    def _cells(cls, v: list) -> list:
        return _unique(v, "cell")

    @model_validator(mode="after")
    def _distinct(self, info: ValidationInfo) -> "FiniteConfig":
        from cellsearch.dsl.hashing import canonical_hash

        seen: dict[str, int] = {}
        for i, ref in enumerate(self.cells):
            h = canonical_hash(_resolve_cell_ref(ref, info)[1])
            if h in seen:
                raise FieldProblem(f"cells[{i}]", f"cell '{ref}' has the same structure as cells[{seen[h]}] "
                                   f"('{self.cells[seen[h]]}')")
            seen[h] = i
        return self


SpaceConfig = Annotated[Union[TreeConfig, MutationConfig, DagConfig, GraphConfig, FiniteConfig],
                        Field(discriminator="kind")]
CONFIG_MODELS: dict[str, type[_SpaceConfig]] = {
    "tree": TreeConfig, "mutation": MutationConfig, "dag": DagConfig, "graph": GraphConfig, "finite": FiniteConfig,
}
_ADAPTER: TypeAdapter = TypeAdapter(SpaceConfig)


def space_classes() -> dict[str, type]:
    """kind → Space subclass (imported lazily: the space modules import this module)."""
    from cellsearch.spaces.dag import DagSpace
    from cellsearch.spaces.finite import FiniteSpace
    from cellsearch.spaces.graph_space import GraphSpace
    from cellsearch.spaces.mutation import MutationSpace
    from cellsearch.spaces.tree import TreeSpace

    return {"tree": TreeSpace, "mutation": MutationSpace, "dag": DagSpace, "graph": GraphSpace,
            "finite": FiniteSpace}


# ---------------------------------------------------------------------- errors
def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:  # a key of the user's mapping: any text
            out += ("." if out else "") + clipped(part, limits.MAX_NAME_CHARS)
    return out


def _format_error(err: dict, kind: str | None) -> tuple[str, str]:
    """(field path, message) for one pydantic error."""
    loc = tuple(err.get("loc", ()))
    if kind is not None and loc and loc[0] == kind:
        loc = loc[1:]  # the discriminator's tag
    typ = err.get("type", "")
    ctx = err.get("ctx") or {}
    if typ == "union_tag_not_found":
        return "kind", f"missing: say which kind of space this is ({', '.join(KINDS)})"
    if typ == "union_tag_invalid":
        tag = clipped(ctx.get("tag"), limits.MAX_NAME_CHARS)
        close = difflib.get_close_matches(tag, KINDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return "kind", f"unknown kind {shown(tag)} ({hint}allowed: {', '.join(KINDS)})"
    if typ == "extra_forbidden":
        model = CONFIG_MODELS.get(kind or "")
        fields = ["kind", *(f for f in model.model_fields if f != "kind")] if model else []
        allowed = ", ".join(fields)
        name = clipped(loc[-1], limits.MAX_NAME_CHARS) if loc else "?"
        close = difflib.get_close_matches(name, list(model.model_fields), n=1) if model else []
        hint = f"did you mean '{close[0]}'? " if close else ""
        return _field_path(loc), f"unknown field ({hint}allowed for kind '{kind}': {allowed})"
    if typ == "missing":
        return _field_path(loc), "missing (this field is required)"
    if typ == "value_error":
        exc = ctx.get("error")
        if isinstance(exc, FieldProblem):
            return exc.path, exc.message
        return _field_path(loc), str(exc) if exc is not None else err.get("msg", "")
    msg = err.get("msg", "invalid value")
    msg = msg[:1].lower() + msg[1:]
    if "input" in err and typ.endswith("_type") or typ.endswith("_parsing"):
        msg += f", got {shown(err['input'])}"
    return _field_path(loc), msg


def _config_error(exc: ValidationError, source: str, kind: str | None) -> ConfigError:
    errors = exc.errors()
    path, msg = _format_error(errors[0], kind)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    where = f"field '{path}': " if path else ""
    # One line whatever the messages quote (a validator's text may hold the user's value).
    return ConfigError(" ".join(f"{source}: {where}{msg}{more}".split()))


# ---------------------------------------------------------------------- loading
def parse_config(data: Any, source: str = "<config>", base_dir: str | os.PathLike | None = None) -> _SpaceConfig:
    """Validate a space mapping against the schema; ConfigError (one line) if it does not fit."""
    if data is None:
        raise ConfigError(f"{source}: the search space is empty (expected a mapping with 'kind' and its fields)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a search space must be a mapping with a 'kind' field "
                          f"({', '.join(KINDS)}), got {type(data).__name__}")
    kind = data.get("kind") if isinstance(data.get("kind"), str) else None
    try:
        return _ADAPTER.validate_python(data, context={"base_dir": str(base_dir) if base_dir else None})
    except ValidationError as exc:
        raise _config_error(exc, source, kind) from None


def build_space(config: _SpaceConfig, name: str):
    """The Space object for a validated config."""
    cls = space_classes()[config.kind]
    return cls(name=config.name or name, description=config.description, **config.space_options())


def _builtin_text(name: str) -> str:
    folder = resources.files("cellsearch.spaces").joinpath("builtin")
    return folder.joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def _load_text(text: str, source: str, base_dir: Path | None, default_name: str):
    from cellsearch.dsl.io import load_yaml

    try:
        data, _ = load_yaml(text, source)
    except CellError as exc:
        line = f":{exc.line}" if exc.line is not None else ""
        raise ConfigError(f"{source}{line}: {exc.reason}") from None
    config = parse_config(data, source, base_dir)
    return build_space(config, default_name)


def _exists(path: Path) -> bool:
    """``path.exists()``, False for a name the OS refuses (too long, ...) rather than an OSError."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def load_space(spec: Any):
    """A Space from a shipped name (``SPACE_NAMES``), a YAML path, a dict or a Space (returned as is)."""
    from cellsearch.spaces.base import Space

    if isinstance(spec, Space):
        return spec
    if isinstance(spec, dict):
        config = parse_config(spec, "<config>")
        return build_space(config, "custom")
    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"a search space is a shipped name ({', '.join(SPACE_NAMES)}), a YAML path or a "
                          f"mapping, not {type(spec).__name__}")
    text = os.fspath(spec)
    path = Path(text)
    if text in SPACE_NAMES and not _exists(path):
        return _load_text(_builtin_text(text), f"{text}.yaml", None, text)
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
    return _load_text(body, text, path.parent, path.stem)


def list_spaces() -> dict[str, str]:
    """Shipped space name → its description (one line)."""
    from cellsearch.dsl.io import load_yaml

    out = {}
    for name in SPACE_NAMES:
        data, _ = load_yaml(_builtin_text(name), f"{name}.yaml")
        out[name] = " ".join(str(data.get("description", "")).split())
    return out


__all__ = ["SPACE_NAMES", "KINDS", "TreeConfig", "MutationConfig", "DagConfig", "GraphConfig", "FiniteConfig",
           "SpaceConfig", "CONFIG_MODELS", "FieldProblem", "parse_config", "build_space", "load_space",
           "list_spaces", "space_classes", "linear_activation_value", "activation_label"]
