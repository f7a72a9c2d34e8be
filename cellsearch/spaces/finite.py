"""The ``finite`` space: a fixed list of cells (e.g. the nine LSTM variants of Greff et al. 2017).

One decision, ``cell``, picks a member. ``mutate`` picks a different member, ``encode`` finds a
member by structural hash and ``seeds`` are all members. Members are given by built-in name or
by the path of a YAML cell file; each is validated and compiled once when the space is built
(at input size = hidden size where a member reads its input elementwise, else input 6 ≠ hidden 4).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.library import resolve_cell
from cellsearch.spaces.base import Candidate, Decision, InvalidCandidate, Space, check_cell
from cellsearch.spaces.common import CHECK_HIDDEN_SIZE, CHECK_INPUT_SIZE, elementwise_input_uses
from cellsearch.spaces.parsing import validated_options


class FiniteSpace(Space):
    kind = "finite"

    def __init__(self, name: str = "finite", description: str = "", **options: Any):
        opts = validated_options(self.kind, options)
        super().__init__(name, description, opts)
        self.cell_refs: tuple[str, ...] = tuple(opts["cells"])
        self.members: list[CellGraph] = []
        for ref in self.cell_refs:
            g = resolve_cell(ref)
            same = elementwise_input_uses(g) == 0
            self.members.append(check_cell(g, CHECK_INPUT_SIZE if same else CHECK_HIDDEN_SIZE, CHECK_HIDDEN_SIZE))
        self.hashes = [canonical_hash(g) for g in self.members]
        labels = tuple(g.name for g in self.members)
        if len(set(labels)) != len(labels):  # two files with the same cell name
            labels = self.cell_refs
        self._decisions = [Decision("cell", labels)]

    def decode(self, choices: Sequence[int]) -> CellGraph:
        if len(choices) != 1 or not 0 <= choices[0] < len(self.members):
            raise InvalidCandidate(f"space '{self.name}' takes one decision in 0..{len(self.members) - 1}, "
                                   f"got {tuple(choices)}")
        return self.members[choices[0]]

    def encode(self, graph: CellGraph) -> tuple[int, ...] | None:
        h = canonical_hash(graph)
        return (self.hashes.index(h),) if h in self.hashes else None

    def seeds(self) -> list[CellGraph]:
        return list(self.members)

    def mutate(self, parent: Candidate, rng: random.Random, max_tries: int = 100) -> Candidate:
        current = self.encode(parent.graph)
        others = [i for i in range(len(self.members)) if current is None or i != current[0]]
        if not others:
            raise InvalidCandidate(f"space '{self.name}' has a single cell: nothing to mutate to")
        i = rng.choice(others)
        return Candidate(self.members[i], decisions=(i,), origin="mutation", parent=parent.hash)


__all__ = ["FiniteSpace"]
