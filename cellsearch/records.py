"""Typed records from untrusted plain data: a dataclass built from a JSON/checkpoint mapping.

(And a ``random.Random``'s state as plain data and back: ``random_state_to_data``/``random_state``.)

Run files (``config.json``), checkpoints and strategy states come back from disk as plain
dicts that anyone may have edited or damaged. ``record_from_dict`` checks every field's type
against the dataclass's annotations (pydantic's lax mode: ``5`` is a fine float, ``"abc"`` no int)
and rejects unknown fields, so a wrong value stops at the boundary with one line naming the
file and the field, instead of a ``TypeError`` deep inside training.
"""

from __future__ import annotations

import functools
import random
from typing import Any, TypeVar

from cellsearch.errors import ConfigError
from cellsearch.limits import shown

T = TypeVar("T")


@functools.lru_cache(maxsize=None)
def _adapter(cls: type):
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def record_from_dict(cls: type[T], data: Any, what: str) -> T:
    """``cls(**data)`` after checking ``data`` against ``cls``'s field types; ``what`` names the
    source in the error (e.g. ``runs/x/config.json``)."""
    from pydantic import ValidationError

    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a mapping of settings, got {type(data).__name__}")
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"{what}: unknown setting(s) {', '.join(unknown)}")
    try:
        adapter_key: type = cls  # (a class is hashable; mypy does not see it for type[T])
        return _adapter(adapter_key).validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "?"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{what}: setting '{field}' = {shown(err.get('input'), 60)}: {err['msg']}{more}") from None


def random_state_to_data(rng: random.Random) -> list[Any]:
    """``rng``'s state as plain data (a list: version, the internal state's ints, the gauss value)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def random_state(data: Any) -> tuple[Any, ...]:
    """The state for ``random.Random.setstate`` from ``random_state_to_data``'s data, or from a pickled
    ``getstate()`` (a checkpoint's), its numbers checked as numbers (TypeError/ValueError if not)."""
    version, internal, gauss = data
    return (int(version), tuple(int(v) for v in internal), None if gauss is None else float(gauss))
