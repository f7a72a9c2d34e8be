"""The process boundary: a search trial's ``TrialSpec`` and ``TrialOutcome``, a training job's ``TrainingOutcome`` and a one-shot search seed's job and outcome, as plain data and back.

The one place where a trial is serialised. The driver sends ``spec_to_wire(spec)`` as a Ray
Tune trial's config (plain JSON-able data: Tune shows it in the trial's ``params.json``); the
worker rebuilds the spec with ``spec_from_wire``, sends its outcomes as ``outcome_to_wire``
text, and the driver reads them with ``outcome_from_wire``. In-process trials never come here:
they hand the objects over as they are. A training job of the final protocol (``runner.jobs``)
is plain data already; its outcome (one ``TrainingOutcome``, or a list of them for a
population) crosses back as ``training_to_wire``/``training_from_wire`` text. A one-shot search
seed (``runner.oneshot``) goes as ``seed_job_to_wire`` (its ``SeedJob``) and comes back as
``seed_outcome_to_wire`` text (its ``SeedOutcome``: progress, then its best cells).

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
from cellsearch.storage.outcome import TRAINING_STATUSES, SeedOutcome, TrainingOutcome, TrialOutcome
from cellsearch.records import record_from_dict
from cellsearch.runner.trial import TrialSpec
from cellsearch.storage.store import FINAL_STATUSES
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
    latency: bool = False


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
    return _record(TrialOutcome, _json(text, "trial outcome"), "trial outcome", FINAL_STATUSES)


def training_to_wire(outcome: TrainingOutcome | list[TrainingOutcome]) -> str:
    """A job's outcome (a population's: one per member, in order) as JSON text."""
    if isinstance(outcome, list):
        return json.dumps([asdict(o) for o in outcome])
    return json.dumps(asdict(outcome))


def training_from_wire(text: Any) -> TrainingOutcome | list[TrainingOutcome]:
    """What ``training_to_wire`` sent, checked (field types, a known status)."""
    data = _json(text, "training outcome")
    if isinstance(data, list):
        return [_record(TrainingOutcome, d, "training outcome", TRAINING_STATUSES) for d in data]
    return _record(TrainingOutcome, data, "training outcome", TRAINING_STATUSES)


@dataclass(frozen=True)
class SeedJob:
    """One search seed of a one-shot search, as its worker receives it: the run's resolved settings
    (``SearchConfig`` fields), the seed, the run directory (where its checkpoint is) and its threads."""

    config: dict[str, Any]
    seed: int
    run_dir: str
    threads: int | None = None


@dataclass(frozen=True)
class _ScoredCell:
    choices: list[int]
    hash: str
    score: float | None
    metrics: dict[str, float | None]
    params: int | None = None


@dataclass(frozen=True)
class _SeedResult:
    seed: int
    top: list[_ScoredCell]
    scored: int
    steps: int
    train_seconds: float


SEED_STATUSES = ("running", "ok", "failed")


def seed_job_to_wire(config: dict[str, Any], seed: int, run_dir: str) -> dict[str, Any]:
    """A one-shot search seed's job as plain data (Tune's trial config)."""
    return asdict(SeedJob(config=config, seed=seed, run_dir=run_dir))


def seed_job_from_wire(data: Any) -> SeedJob:
    """The ``SeedJob`` that ``seed_job_to_wire`` sent (with the thread count the job queue added), checked."""
    return record_from_dict(SeedJob, data, "one-shot seed job")


def seed_outcome_to_wire(outcome: SeedOutcome) -> str:
    """A seed's progress or outcome as JSON text."""
    return json.dumps(asdict(outcome))


def seed_outcome_from_wire(text: Any) -> SeedOutcome:
    """The ``SeedOutcome`` that ``seed_outcome_to_wire`` sent, checked: field types, a known status, and
    its result's every cell (decisions, hash, score, metrics, parameter count)."""
    outcome = _record(SeedOutcome, _json(text, "seed outcome"), "seed outcome", SEED_STATUSES)
    if outcome.result is not None:
        result = record_from_dict(_SeedResult, outcome.result, "seed outcome's result")
        outcome = SeedOutcome(**{**asdict(outcome), "result": asdict(result)})
    return outcome


def _json(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected JSON text, got {type(text).__name__}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: not JSON ({exc})") from None


def _record(cls, data: Any, what: str, statuses: tuple[str, ...]):
    record = record_from_dict(cls, data, what)
    if record.status not in statuses:
        raise ConfigError(f"{what}: unknown status {shown(record.status)} (known: {', '.join(statuses)})")
    return record


__all__ = ["SeedJob", "outcome_from_wire", "outcome_to_wire", "seed_job_from_wire", "seed_job_to_wire",
           "seed_outcome_from_wire", "seed_outcome_to_wire", "spec_from_wire", "spec_to_wire", "training_from_wire",
           "training_to_wire"]
