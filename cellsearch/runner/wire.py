"""The process boundary of a search trial: a ``TrialSpec`` and a ``TrialOutcome`` as plain data, and back.

The one place where a trial is serialised. The driver sends ``spec_to_wire(spec)`` as a Ray
Tune trial's config (plain JSON-able data: Tune shows it in the trial's ``params.json``); the
worker rebuilds the spec with ``spec_from_wire``, sends its outcomes as ``outcome_to_wire``
text, and the driver reads them with ``outcome_from_wire``. In-process trials never come here:
they hand the objects over as they are.

What arrives from another process is checked as if anyone could have written it: every field's
type (``records.record_from_dict``), the cell YAML under the loader's limits and validation
(``dsl.io.loads_cell``), the spec's hash against the hash of the cell it names (a spec whose
hash does not match its YAML is refused: the driver records and deduplicates trials by that
hash), an outcome's status against the statuses ``results.db`` knows. A refusal is a
``ConfigError`` (a cell that fails to load: its ``CellError``); the worker turns one into a
``failed`` trial (``runner.tune.run_received``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import loads_cell
from cellsearch.errors import ConfigError
from cellsearch.limits import shown
from cellsearch.outcome import TrialOutcome
from cellsearch.records import record_from_dict
from cellsearch.runner.trial import TrialSpec
from cellsearch.store import FINAL_STATUSES
from cellsearch.strategies.base import Stage


@dataclass(frozen=True)
class _SpecData:
    """A ``TrialSpec`` on the wire: its fields but the graph, which the worker rebuilds from ``cell_yaml``."""

    cell_yaml: str
    hash: str
    plan: tuple[Stage, ...]
    steps: int | None = None
    seconds: float | None = None
    train: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: dict[str, float] | None = None
    is_reference: bool = False
    seed: int = 0
    seeds: int = 1
    threads: int | None = None
    data_dir: str | None = None


def spec_to_wire(spec: TrialSpec) -> dict[str, Any]:
    """``spec`` as plain data (the graph travels as its YAML text)."""
    data = asdict(spec)  # (asdict turns the stages into dicts too)
    del data["graph"]
    data["plan"] = list(data["plan"])
    return data


def spec_from_wire(data: Any) -> TrialSpec:
    """The ``TrialSpec`` that ``spec_to_wire`` sent, checked (see the module docstring): the cell YAML
    is parsed and validated once, here, and the hash is kept only when it is the cell's."""
    wire = record_from_dict(_SpecData, data, "trial spec")
    graph = loads_cell(wire.cell_yaml, source="<trial spec>", warn=False)
    actual = canonical_hash(graph)
    if actual != wire.hash:
        raise ConfigError(f"trial spec: hash {shown(wire.hash, 40)} is not the hash of its cell "
                          f"'{graph.name}' ({actual}): refused")
    values = {k: getattr(wire, k) for k in _SpecData.__dataclass_fields__}
    return TrialSpec(graph=graph, **values)


def outcome_to_wire(outcome: TrialOutcome) -> str:
    """``outcome`` as JSON text (what Tune's result dict carries)."""
    return json.dumps(asdict(outcome))


def outcome_from_wire(text: Any) -> TrialOutcome:
    """The ``TrialOutcome`` that ``outcome_to_wire`` sent, checked (field types, a known status)."""
    if not isinstance(text, str):
        raise ConfigError(f"trial outcome: expected JSON text, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"trial outcome: not JSON ({exc})") from None
    outcome = record_from_dict(TrialOutcome, data, "trial outcome")
    if outcome.status not in FINAL_STATUSES:
        raise ConfigError(f"trial outcome: unknown status {shown(outcome.status)} "
                          f"(known: {', '.join(FINAL_STATUSES)})")
    return outcome


__all__ = ["outcome_from_wire", "outcome_to_wire", "spec_from_wire", "spec_to_wire"]
