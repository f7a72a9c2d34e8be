"""The YAML schema of a search space: one pydantic model per kind, discriminated on ``kind``.

A search-space file is one mapping whose ``kind`` picks the model (and the ``Space`` class)::

    kind: dag            # tree | mutation | dag | graph | finite
    name: my_dag         # optional (default: the file name)
    description: ...     # optional
    nodes: 6             # the fields of that kind (see docs/search_spaces.md)

Unknown fields are errors, so a typo never silently falls back to a default. The item types come
from ``cellsearch.spaces.vocabulary``; ``cellsearch.spaces.parsing`` validates a mapping against
``SpaceConfig`` and turns pydantic's errors into one line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationInfo, field_validator,
                      model_validator)

from cellsearch import limits
from cellsearch.dsl.graph import check_cell_name
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.errors import CellError
from cellsearch.limits import exceeds
from cellsearch.spaces.base import InvalidCandidate
from cellsearch.spaces.common import check_useful, prune
from cellsearch.spaces.vocabulary import (ELEMENTWISE_OPS, MUTATION_RATES, TRANSFORMATIONS, TREE_COMBINATIONS,
                                          Activation, AttentionKind, CellRef, Combination, ElementwiseOp, FieldProblem, GraphOp, MemoryComponent,
                                          MutationActivation, Transformation, between, choice, resolve_cell_ref,
                                          unique)


class SpaceConfigBase(BaseModel):
    """The fields every kind has (``name``, ``description``); unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        # the space's name is the name of every cell it makes: the cell-name rule applies
        if v is not None:
            try:
                check_cell_name(v)
            except CellError as exc:
                raise ValueError(exc.reason) from None
        return v

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        if len(v) > limits.MAX_CELL_TEXT_CHARS:
            raise ValueError(exceeds("description length", len(v), "cell text length",
                                     f"{limits.MAX_CELL_TEXT_CHARS} characters"))
        return v

    def space_options(self) -> dict[str, Any]:
        """The kind's own fields, as keyword arguments of its Space class."""
        return self.model_dump(exclude={"kind", "name", "description"})


class TreeConfig(SpaceConfigBase):
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
        return unique(v, "combination")

    @field_validator("activations")
    @classmethod
    def _activations(cls, v: list) -> list:
        return unique(v, "activation")


class MutationConfig(SpaceConfigBase):
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
        return unique(v, "seed cell")

    @field_validator("activations")
    @classmethod
    def _activations(cls, v: list) -> list:
        return unique(v, "activation")

    @field_validator("elementwise_ops")
    @classmethod
    def _ops(cls, v: list) -> list:
        unique(v, "elementwise op")
        if len(v) < 2:
            raise ValueError("must list at least two ops (a swap needs another op to swap to)")
        return v

    @field_validator("transformations")
    @classmethod
    def _transformations(cls, v: list) -> list:
        return unique(v, "transformation")

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        return choice("rate", MUTATION_RATES)(v)

    @field_validator("max_nodes")
    @classmethod
    def _max_nodes(cls, v: int) -> int:
        return between(v, 2, 1000)

    @field_validator("decision_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        return between(v, 0, 64)

    @field_validator("choices")
    @classmethod
    def _choices(cls, v: int) -> int:
        return between(v, 2, 4096)

    @model_validator(mode="after")
    def _seeds_fit(self, info: ValidationInfo) -> "MutationConfig":
        for i, ref in enumerate(self.seeds):
            graph = prune(resolve_cell_ref(ref, info)[1])
            if len(graph.nodes) > self.max_nodes:
                raise FieldProblem(f"seeds[{i}]", f"cell '{ref}' has {len(graph.nodes)} nodes, more than "
                                   f"max_nodes ({self.max_nodes})")
            try:
                check_useful(graph)
            except InvalidCandidate as exc:
                raise FieldProblem(f"seeds[{i}]", f"cell '{ref}' cannot seed a mutation search: {exc}") from None
        return self


MAX_ATTENTION_HOPS = 8  # hops of attention a dag space may offer (memory networks use 1 to 3)


class DagConfig(SpaceConfigBase):
    """ENAS/DARTS recurrent space: node i reads one earlier node through a highway connection."""

    kind: Literal["dag"]
    nodes: StrictInt = 8
    activations: list[Activation] = Field(default_factory=lambda: ["tanh", "relu", "sigmoid", "identity"])
    bias: StrictBool = True
    attention: list[AttentionKind] = Field(default_factory=list)
    hops: StrictInt = 1  # with attention: at most this many hops of attention (a decision when > 1)
    memory: list[MemoryComponent] = Field(default_factory=list)

    @field_validator("attention")
    @classmethod
    def _attention(cls, v: list) -> list:
        return unique(v, "attention kind") if v else v  # empty: no attention decision

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: list) -> list:
        return unique(v, "memory component") if v else v  # empty: no memory decision

    @field_validator("hops")
    @classmethod
    def _hops(cls, v: int) -> int:
        return between(v, 1, MAX_ATTENTION_HOPS)

    @model_validator(mode="after")
    def _hops_need_attention(self) -> "DagConfig":
        if self.hops > 1 and not self.attention:
            raise FieldProblem("hops", "needs attention kinds (hops are readings of the encoder's outputs)")
        return self

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: int) -> int:
        return between(v, 2, 64)

    @field_validator("activations")
    @classmethod
    def _activations(cls, v: list) -> list:
        return unique(v, "activation")


class GraphConfig(SpaceConfigBase):
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
        return between(v, 1, 64)

    @field_validator("max_linear_inputs")
    @classmethod
    def _linear_inputs(cls, v: int) -> int:
        return between(v, 1, 8)

    @field_validator("min_states", "max_states")
    @classmethod
    def _states(cls, v: int) -> int:
        return between(v, 1, 8)

    @field_validator("ops")
    @classmethod
    def _ops(cls, v: list) -> list:
        unique(v, "op")
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


class FiniteConfig(SpaceConfigBase):
    """A fixed list of cells (built-in names or YAML paths): one decision picks one."""

    kind: Literal["finite"]
    cells: list[CellRef]

    @field_validator("cells")
    @classmethod
    def _cells(cls, v: list) -> list:
        return unique(v, "cell")

    @model_validator(mode="after")
    def _distinct(self, info: ValidationInfo) -> "FiniteConfig":
        seen: dict[str, int] = {}
        for i, ref in enumerate(self.cells):
            h = canonical_hash(resolve_cell_ref(ref, info)[1])
            if h in seen:
                raise FieldProblem(f"cells[{i}]", f"cell '{ref}' has the same structure as cells[{seen[h]}] "
                                   f"('{self.cells[seen[h]]}')")
            seen[h] = i
        return self


SpaceConfig = Annotated[Union[TreeConfig, MutationConfig, DagConfig, GraphConfig, FiniteConfig],
                        Field(discriminator="kind")]
CONFIG_MODELS: dict[str, type[SpaceConfigBase]] = {
    "tree": TreeConfig, "mutation": MutationConfig, "dag": DagConfig, "graph": GraphConfig, "finite": FiniteConfig,
}

__all__ = ["SpaceConfigBase", "TreeConfig", "MutationConfig", "DagConfig", "GraphConfig", "FiniteConfig",
           "SpaceConfig", "CONFIG_MODELS"]
