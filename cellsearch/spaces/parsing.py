"""Checking a space mapping against the schema, with every problem as one line naming the field.

``parse_config(data, source)`` validates a mapping (what a space file holds) and
``validated_options(kind, options)`` the keyword arguments of a Space class. Either raises a
``ConfigError`` with one line naming the source and the field, e.g.
``my.yaml: field 'activations[2]': unknown activation 'tanhh' (allowed: ...)``.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from cellsearch import limits
from cellsearch.errors import ConfigError
from cellsearch.limits import clipped, shown
from cellsearch.spaces.schema import CONFIG_MODELS, SpaceConfig, SpaceConfigBase
from cellsearch.spaces.vocabulary import KINDS, FieldProblem

_ADAPTER: TypeAdapter = TypeAdapter(SpaceConfig)


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:  # a key of the user's mapping: any text
            out += ("." if out else "") + clipped(part, limits.MAX_NAME_CHARS)
    return out


def _format_error(err: ErrorDetails, kind: str | None) -> tuple[str, str]:
    """(field path, message) for one pydantic error."""
    loc = tuple(err.get("loc", ()))
    if kind is not None and loc and loc[0] == kind:
        loc = loc[1:]  # the discriminator's tag
    typ = err.get("type", "")
    ctx = err.get("ctx") or {}
    if typ == "union_tag_not_found":
        return "kind", f"missing: say which kind of space this is ({', '.join(KINDS)})"
    if typ == "union_tag_invalid":
        tag = clipped(str(ctx.get("tag")), limits.MAX_NAME_CHARS)
        close = difflib.get_close_matches(tag, KINDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return "kind", f"unknown kind {shown(tag)} ({hint}allowed: {', '.join(KINDS)})"
    if typ == "extra_forbidden":
        model = CONFIG_MODELS.get(kind or "")
        fields = ["kind", *(f for f in model.model_fields if f != "kind")] if model else []
        allowed = ", ".join(fields)
        name = clipped(str(loc[-1]), limits.MAX_NAME_CHARS) if loc else "?"
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


def config_error(exc: ValidationError, source: str, kind: str | None) -> ConfigError:
    """One ``ConfigError`` line for a pydantic ``ValidationError`` (its first problem, and how many more)."""
    errors = exc.errors()
    path, msg = _format_error(errors[0], kind)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    where = f"field '{path}': " if path else ""
    # One line whatever the messages quote (a validator's text may hold the user's value).
    return ConfigError(" ".join(f"{source}: {where}{msg}{more}".split()))


def parse_config(data: Any, source: str = "<config>", base_dir: str | os.PathLike | None = None) -> SpaceConfigBase:
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
        raise config_error(exc, source, kind) from None


def validated_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a space, checked against its schema (ConfigError if they do not fit)."""
    try:
        # (kind as a mapping: the base model, as typed, has no such field; each kind's model has)
        return CONFIG_MODELS[kind](**{"kind": kind}, **options).space_options()
    except ValidationError as exc:
        raise config_error(exc, f"{kind} space options", kind) from None


__all__ = ["parse_config", "validated_options", "config_error"]
