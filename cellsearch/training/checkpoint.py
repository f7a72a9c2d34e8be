"""Reading a training checkpoint as data: tensors and plain values only, checked field by field.

A checkpoint is a file a user may hand us, so it never executes: ``torch.load`` runs with
``weights_only=True`` (its unpickler admits tensors, numbers, strings, lists, tuples and dicts
and refuses any other global, so a crafted pickle cannot call ``os.system``), the file size is
bounded (and it must be a regular file: ``fileio.opened_regular``), and every field the
trainer reads is checked for presence and type before use. Any failure is one ``ConfigError``
line naming the file.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

from cellsearch.errors import ConfigError
from cellsearch.fileio import opened_regular
from cellsearch.limits import MAX_CHECKPOINT_BYTES, MAX_POPULATION

CHECKPOINT_VERSION = 1

# field → what it must be; the trainer's ``state_dict`` writes exactly these
_NUMBER = (int, float)
FIELDS: dict[str, tuple[type, ...] | type] = {
    "version": int, "config": dict, "cell_yaml": str, "vocab": dict, "task": dict, "model_config": dict,
    "model": dict, "optimizer": dict, "stream": dict, "step": int, "elapsed": _NUMBER, "history": list,
    "losses": list, "status": str,
}
OPTIONAL: dict[str, tuple[type, ...] | type] = {
    "first_loss": (*_NUMBER, type(None)), "carried_state": (tuple, list, type(None)),
    "torch_rng": object, "cuda_rng": object}
STATUSES = ("ok", "diverged", "stopped")
# training settings added since checkpoints of this version were first written, with the value
# training had before them: a checkpoint that lacks one resumes as it was trained
ADDED_SETTINGS = {"ar": 0.0, "tar": 0.0, "state_limit": None}


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file a user named: the file itself, or ``checkpoint.pt`` in a directory."""
    path = Path(path)
    return path / "checkpoint.pt" if path.is_dir() else path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a checked dict (see module docstring)."""
    path = checkpoint_file(path)
    if not path.exists():  # (something else than a file there is refused by _read, saying what it is)
        raise ConfigError(f"no checkpoint at {path}")
    ckpt = _read(path)
    if is_population(ckpt):
        n = len(ckpt["population"]) if isinstance(ckpt["population"], list) else "several"
        raise ConfigError(f"{path}: holds a population of {n} members (a training of several seeds or learning "
                          "rates), not one model; resume it as a population (PopulationTrainer.from_checkpoint, "
                          "`cellsearch train --resume`: it resumes whole)")
    check_checkpoint(ckpt, path)
    _add_settings(ckpt)
    return ckpt


def read_checkpoint_data(path: str | Path) -> Any:
    """A checkpoint file's contents as plain data (tensors, numbers, strings, lists, tuples, dicts),
    bounded and never executed (see module docstring); the caller checks its fields."""
    return _read(Path(path))


def _add_settings(ckpt: dict[str, Any]) -> None:
    """Give a checked checkpoint's settings the ``ADDED_SETTINGS`` it lacks (see there)."""
    ckpt["config"] = {**ADDED_SETTINGS, **ckpt["config"]}


def _read(path: Path) -> Any:
    import torch

    try:
        # (the file as opened: a regular file of at most the limit, not a FIFO or /dev/zero, and not
        # swapped for one between the check and the load)
        with opened_regular(path, "checkpoint size", MAX_CHECKPOINT_BYTES) as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if named:  # a pickle that asks for a Python object: the way a crafted file runs code
            raise ConfigError(f"{path}: refused: the file asks to load the Python object {named.group(1)} "
                              "(only tensors and plain data are read; it is not a cellsearch checkpoint)") from None
        raise ConfigError(f"{path}: not a readable checkpoint (damaged pickle data)") from None
    except Exception as exc:  # truncated, not a zip/pickle, garbage: torch raises many kinds
        raise ConfigError(f"{path}: not a readable checkpoint ({_summary(exc)[:160]})") from None


def is_population(ckpt: Any) -> bool:
    """Whether a loaded checkpoint holds a population (``train --seeds``/``--lrs``) rather than one model."""
    return isinstance(ckpt, dict) and "population" in ckpt


def is_population_file(path: str | Path) -> bool:
    """Whether the checkpoint file at ``path`` holds a population (it is read, and checked, to tell)."""
    path = checkpoint_file(path)
    return path.is_file() and is_population(_read(path))


def load_population_checkpoint(path: str | Path) -> dict[str, Any]:
    """A population checkpoint (``{"version", "population": [member checkpoint, ...], "members": [...]}``),
    every member checked as ``load_checkpoint`` checks one."""
    path = checkpoint_file(path)
    if not path.exists():  # (something else than a file there is refused by _read, saying what it is)
        raise ConfigError(f"no checkpoint at {path}")
    ckpt = _read(path)
    if not is_population(ckpt):
        raise ConfigError(f"{path}: not a population checkpoint (it holds one model; resume it as one training, "
                          "without members)", field="PopulationTrainer.members")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path}: checkpoint version {ckpt.get('version')} is not supported "
                          f"(this cellsearch writes {CHECKPOINT_VERSION})")
    members, settings = ckpt["population"], ckpt.get("members")
    if not isinstance(members, list) or not members or not isinstance(settings, list) \
            or len(settings) != len(members) or not all(isinstance(m, dict) for m in settings):
        raise ConfigError(f"{path}: damaged checkpoint: the population's member list is malformed")
    if len(members) > MAX_POPULATION:
        raise ConfigError(f"{path}: {len(members)} members exceed the limit of {MAX_POPULATION} (population size)")
    for i, member in enumerate(members):
        check_checkpoint(member, f"{path} (member {i})")
        _add_settings(member)
    return ckpt


def check_checkpoint(ckpt: Any, path: str | Path) -> None:
    """Raise ``ConfigError`` unless ``ckpt`` has every field of a cellsearch checkpoint, well typed."""
    import torch

    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path}: not a cellsearch checkpoint (it holds a {type(ckpt).__name__}, "
                          "not the dict `cellsearch train` writes)")
    missing = [k for k in FIELDS if k not in ckpt]
    if missing:
        raise ConfigError(f"{path}: not a cellsearch checkpoint (missing {', '.join(missing)})")
    if ckpt["version"] != CHECKPOINT_VERSION:
        raise ConfigError(f"{path}: checkpoint version {ckpt['version']} is not supported "
                          f"(this cellsearch writes {CHECKPOINT_VERSION})")
    for key, kind in [*FIELDS.items(), *OPTIONAL.items()]:
        if key not in ckpt:
            continue
        value = ckpt[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: damaged checkpoint: field '{key}' is a {type(value).__name__}")
    bad = [k for k, v in ckpt["model"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(f"{path}: damaged checkpoint: model weight '{bad[0]}' is not a tensor")
    state = ckpt.get("carried_state")
    if state is not None and not all(isinstance(s, torch.Tensor) for s in state):
        raise ConfigError(f"{path}: damaged checkpoint: the carried state is not a tuple of tensors")
    if "torch_rng" in ckpt and not isinstance(ckpt["torch_rng"], torch.Tensor):
        raise ConfigError(f"{path}: damaged checkpoint: field 'torch_rng' is not a tensor")
    itos = ckpt["vocab"].get("itos")
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ConfigError(f"{path}: damaged checkpoint: the vocabulary is not a list of tokens")
    if ckpt["status"] not in STATUSES:
        raise ConfigError(f"{path}: damaged checkpoint: unknown status {ckpt['status'][:40]!r}")
    if not all(isinstance(x, _NUMBER) for x in ckpt["losses"]):
        raise ConfigError(f"{path}: damaged checkpoint: the loss history holds non-numbers")
    if not all(isinstance(h, dict) for h in ckpt["history"]):
        raise ConfigError(f"{path}: damaged checkpoint: the evaluation history holds non-mappings")


def restore_error(path: str | Path, exc: Exception) -> ConfigError:
    """The one-line error for a checkpoint whose fields are well typed but do not fit the model
    or task they describe (shapes, optimizer groups, stream state)."""
    return ConfigError(f"{path}: the checkpoint does not fit the model it describes ({_summary(exc)[:200]})")


def _summary(exc: BaseException) -> str:
    """An exception's text on one line (torch's state-dict errors put the cause on line two)."""
    return " ".join(str(exc).split()) or type(exc).__name__
