"""What every search space offers the strategies.

A space turns a fixed-length sequence of categorical **decisions** into a cell (``decode``),
so a sampler (random search, the RL controller, TPE) only ever chooses integers. It can also
``sample`` a random cell and ``mutate`` a candidate (evolution). Every cell a space returns
has passed validation (``CellGraph.validate``) and compiles; a decision sequence that would
give an invalid cell is rejected with ``InvalidCandidate`` (samplers then draw again).
"""

from __future__ import annotations

import functools
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell
from cellsearch.errors import CellError, CellsearchError


class InvalidCandidate(CellsearchError):
    """A decision sequence or mutation produced a cell that is not valid (it is never trained)."""


@dataclass(frozen=True)
class Decision:
    """One categorical choice of a space: ``choices`` are labels, the decision is an index."""

    name: str
    choices: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.choices)


@dataclass(frozen=True)
class Candidate:
    """A cell proposed by a strategy, with how it was made.

    Frozen, so that what is derived from the graph is computed once: ``hash`` (the canonical
    hash, which the search looks up, deduplicates and stores by) and ``yaml`` (the text a
    trial trains and ``results.db`` keeps). How a candidate is evaluated is the strategy's
    ``plan`` (``strategies.base``), the same for all its candidates."""

    graph: CellGraph
    decisions: tuple[int, ...] | None = None  # the space's decisions that decode to ``graph``
    origin: str = "sample"  # sample | mutation | seed | reevaluate | reference
    parent: str | None = None  # hash of the parent for mutations
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @functools.cached_property
    def hash(self) -> str:
        """The graph's canonical hash (``dsl.hashing``), computed on first use."""
        return canonical_hash(self.graph)

    @functools.cached_property
    def yaml(self) -> str:
        """The graph as cell YAML (``dsl.io.dumps_cell``), computed on first use."""
        return dumps_cell(self.graph)


def check_cell(graph: CellGraph, input_size: int = 8, hidden_size: int = 8) -> CellGraph:
    """Validate and compile a generated cell; raise InvalidCandidate with the reason otherwise."""
    from cellsearch.compile.codegen import CellProgram

    try:
        graph.validate(warn=False)
        CellProgram(graph, input_size, hidden_size)
    except CellError as exc:
        raise InvalidCandidate(f"generated cell is invalid: {exc.reason}") from None
    return graph


class Space(ABC):
    """A search space (see module docstring). Subclasses are built from a validated YAML config."""

    kind: str = ""

    def __init__(self, name: str, description: str = "", config: dict[str, Any] | None = None):
        self.name = name
        self.description = description
        self.config = dict(config or {})

    # ------------------------------------------------------------------ decisions
    _decisions: list[Decision]  # built once by each subclass's __init__

    def decisions(self) -> list[Decision]:
        """The fixed sequence of categorical decisions a sampler makes (a copy: callers may change it)."""
        return list(self._decisions)

    @abstractmethod
    def decode(self, choices: Sequence[int]) -> CellGraph:
        """The (valid) cell for a decision sequence; InvalidCandidate if there is none."""

    def encode(self, graph: CellGraph) -> tuple[int, ...] | None:
        """Decisions that decode to ``graph`` (same hash), if the space can tell; else None.

        Spaces implement ``_parse`` (a guess from the graph's structure); the guess is only
        returned when decoding it gives back the same cell.
        """
        try:
            choices = self._parse(graph)
        except (KeyError, ValueError, IndexError):
            return None
        if choices is None:
            return None
        try:
            decoded = self.decode(choices)
        except InvalidCandidate:
            return None
        return choices if canonical_hash(decoded) == canonical_hash(graph) else None

    def _parse(self, graph: CellGraph) -> tuple[int, ...] | None:
        """The decisions a graph was (probably) decoded from; None where the space cannot tell."""
        return None

    def check_choices(self, choices: Sequence[int]) -> tuple[int, ...]:
        """``choices`` as a tuple, or InvalidCandidate when the count or a value is out of range."""
        dims = self.decisions()
        if len(choices) != len(dims):
            raise InvalidCandidate(f"space '{self.name}' takes {len(dims)} decisions, got {len(choices)}")
        for d, c in zip(dims, choices):
            if not 0 <= c < len(d):
                raise InvalidCandidate(f"decision '{d.name}' has {len(d)} choices, got {c}")
        return tuple(choices)

    # ------------------------------------------------------------------ sampling and mutation
    def seeds(self) -> list[CellGraph]:
        """Cells the search should start from (e.g. LSTM and GRU for the mutation space)."""
        return []

    def random_decisions(self, rng: random.Random) -> tuple[int, ...]:
        """One uniformly random choice per decision (``decisions()``)."""
        return tuple(rng.randrange(len(d)) for d in self.decisions())

    def sample(self, rng: random.Random, max_tries: int = 100) -> Candidate:
        """A random valid candidate (invalid draws are rejected and drawn again)."""
        last = None
        for _ in range(max_tries):
            choices = self.random_decisions(rng)
            try:
                return Candidate(self.decode(choices), decisions=choices, origin="sample")
            except InvalidCandidate as exc:
                last = exc
        raise InvalidCandidate(f"space '{self.name}': no valid cell in {max_tries} random draws ({last})")

    def mutate(self, parent: Candidate, rng: random.Random, max_tries: int = 100) -> Candidate:
        """A valid child that differs from ``parent`` (default: change one or two decisions)."""
        decisions = parent.decisions if parent.decisions is not None else self.encode(parent.graph)
        if decisions is None:
            raise InvalidCandidate(f"space '{self.name}' cannot mutate a cell it did not produce")
        dims = self.decisions()
        for _ in range(max_tries):
            child = list(decisions)
            for _ in range(rng.choice((1, 1, 2))):
                i = rng.randrange(len(dims))
                if len(dims[i]) > 1:
                    child[i] = rng.choice([c for c in range(len(dims[i])) if c != child[i]])
            try:
                graph = self.decode(child)
            except InvalidCandidate:
                continue
            if canonical_hash(graph) != parent.hash:
                return Candidate(graph, decisions=tuple(child), origin="mutation", parent=parent.hash)
        raise InvalidCandidate(f"space '{self.name}': no valid mutation in {max_tries} tries")

    def reads_memory(self) -> bool:
        """Whether cells of this space may read a memory (attend to an encoder): they are then
        decoders of an encoder-decoder model."""
        return False

    def distinct_cells(self) -> dict[str, tuple[tuple[int, ...], CellGraph]]:
        """Every distinct cell the decisions decode to: canonical hash -> (the first decision tuple
        giving it, the cell), in the order of the tuples. Enumerates the product of all decisions,
        so only for small spaces (benchmark tables; ``dag4``, ``mutation1``)."""
        import itertools

        cells: dict[str, tuple[tuple[int, ...], CellGraph]] = {}
        for choices in itertools.product(*[range(len(d)) for d in self.decisions()]):
            try:
                graph = self.decode(choices)
            except InvalidCandidate:
                continue
            cells.setdefault(canonical_hash(graph), (choices, graph))
        return cells

    def describe(self) -> dict[str, Any]:
        """The space's name, kind, description, number of decisions and settings (``cellsearch spaces show``)."""
        return {"name": self.name, "kind": self.kind, "description": self.description,
                "decisions": len(self.decisions()), **self.config}
