"""Exporting a cell for use outside cellsearch: Python source, TorchScript, ONNX or YAML.

``export_cell(graph, fmt, path)`` writes one of the formats (see ``formats.py``):

* ``py``: one readable Python module that needs only torch (``pysource.py``): a
  ``torch.nn.Module`` named after the cell (``mut1`` → ``Mut1Cell``) with the ``torch.nn.LSTM``
  calling convention (``out, state = cell(x, state)``), a ``step`` method written equation by
  equation, and a ``load()`` function that returns the cell with the exported weights, which are
  saved beside the module (``PATH`` with suffix ``.pt``, a plain state dict). The source is
  TorchScript-clean.
* ``torchscript``: that module compiled with ``torch.jit.script``, weights included; it loads
  with ``torch.jit.load`` in any process that has torch.
* ``onnx``: the layer unrolled over a fixed sequence length ``seq_len`` (the time dimension is
  fixed, the batch dimension is dynamic). Inputs ``x`` (T, B, I), ``<state>_0`` (B, H) per state
  (and ``static_<name>`` (B, S) per static input); outputs ``out`` (T, B, H) and ``<state>_n``
  per final state. The file is checked with ``onnx.checker`` and run once in onnxruntime.
* ``yaml``: the cell in the DSL, with the weights beside it (``PATH`` with suffix ``.weights.pt``).

Every export also writes a model card ``PATH.card.md`` (name, hash, equations, sizes,
parameter and multiply-add counts, where the cell came from and what it scored) and a drawing
``PATH.png`` that the card shows (``card.py``). The files are written and checked together in a
private folder beside ``PATH`` and moved into place only when all succeeded
(``fileio.staged``): a failed export leaves nothing behind. Every artifact that runs (py, torchscript, onnx)
is compared with ``CompiledCell`` on a random input before the export returns (``verify.py``).
``export_from_run`` exports the cell of a given rank in a search run.

Parameters keep cellsearch's names (``<node>__w<k>``, ``<node>__b``, ``<node>__p``, see
``cellsearch.compile.params``), so ``CompiledCell(...).params.state_dict()`` loads into the
exported module as it is.

This module is the API (the arguments, the weights, the run lookup); the package's other
modules hold one concept each: ``base`` (format names, ``ExportError``, version), ``pysource``
(the Python module), ``verify``, ``formats`` and ``card``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from cellsearch.compile.params import CellParameters
from cellsearch.dsl.graph import CellGraph
from cellsearch.errors import ConfigError
from cellsearch.export.base import FORMATS, ExportError, version
from cellsearch.export.card import CardInfo, render_card
from cellsearch.export.card import draw_cell as _draw  # a module global, so tests can stub the drawing out
from cellsearch.export.formats import (ONNX_OPSET, onnx_names, write_onnx, write_python, write_torchscript,
                                       write_yaml, yaml_weights_path)
from cellsearch.export.pysource import check_exportable, class_name, python_source
from cellsearch.export.verify import CHECK_TOLERANCE
from cellsearch.fileio import check_target, staged
from cellsearch.limits import MAX_HIDDEN_SIZE, MAX_SEED, MAX_SEQUENCE_LENGTH, check_new_path, check_number


def export_cell(graph: CellGraph | str, fmt: str, path: str | Path, *, input_size: int = 128,
                hidden_size: int = 128, weights: Mapping[str, torch.Tensor] | None = None, seed: int = 0,
                seq_len: int = 16, card: dict[str, Any] | None = None, static_size: int | None = None) -> list[Path]:
    """Write ``graph`` (a CellGraph, a built-in name or a YAML path) as ``fmt`` to ``path``.

    ``weights`` is a state dict with ``CellParameters`` names (``CompiledCell(...).params.state_dict()``;
    a ``CompiledCell.state_dict()`` with its ``params.`` prefix works too); without it the
    parameters are initialised as ``CellParameters`` does after ``torch.manual_seed(seed)``.
    ``seq_len`` is the fixed sequence length of the ONNX graph (and of the self-check).
    ``card`` adds facts to the model card (``export_from_run`` fills it from a search run).
    Returns the files written: the artifact first, then the weights (py, yaml), the card and
    the drawing.
    """
    from cellsearch.library import resolve_cell

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    for what, value, limit, maximum in (("the input size", input_size, "hidden size", MAX_HIDDEN_SIZE),
                                        ("the hidden size", hidden_size, "hidden size", MAX_HIDDEN_SIZE),
                                        ("the sequence length", seq_len, "sequence length", MAX_SEQUENCE_LENGTH)):
        check_number(what, value, 1, limit, maximum)
    check_number("the seed", seed, 0, "seed", MAX_SEED)
    check_new_path("the output file", path)  # (before anything is built or written)
    g = resolve_cell(graph)
    g.validate(warn=False)
    if not g.static:
        static_size = None
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ConfigError(f"cannot export to '{path}': it is a directory (give a file name)")
    if fmt != "yaml":
        check_exportable(g)
    if fmt == "py" and path.suffix != ".py":
        raise ConfigError(f"a Python export needs a file name ending in .py, not '{path.name}'")
    picture = Path(str(path) + ".png")
    card_path = Path(str(path) + ".card.md")
    sidecar = {"py": path.with_suffix(".pt"), "yaml": yaml_weights_path(path)}.get(fmt)
    targets = [path, *([sidecar] if sidecar else []), card_path, picture]
    for target in targets:  # before the work: a file that cannot be written there fails now, not after it
        check_target(target, "export output")
    params = _parameters(g, input_size, hidden_size, static_size, weights, seed)
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in params.state_dict().items()}
    info = CardInfo(g, fmt, path, input_size, hidden_size, static_size, state, seed,
                    weights is not None, seq_len, card or {}, picture.name)
    card_text = render_card(info)

    # Every file is written and checked under its own name in a private folder beside PATH, then all
    # are moved into place together: a failed export (a full disk, a failed check) leaves nothing
    # behind, and never a module without its weights.
    with staged(*targets) as files:
        out, staged_card, staged_picture = files[0], files[-2], files[-1]
        if fmt == "py":
            write_python(g, out, params, state, card_text, seq_len)
        elif fmt == "torchscript":
            write_torchscript(g, out, params, state, card_text, seq_len)
        elif fmt == "onnx":
            write_onnx(g, out, params, state, card_text, seq_len)
        else:
            write_yaml(g, out, params, state, card_path.name)
        staged_card.write_text(card_text, encoding="utf-8")
        _draw(g, staged_picture)
    return targets


def export_from_run(run_dir: str | Path, rank: int, fmt: str, path: str | Path, **kw: Any) -> list[Path]:
    """Export the cell ranked ``rank`` (1 = best) on the leaderboard of a search run.

    The model card records the run, the cell's rank, score and per-task metrics, and the
    search settings from the run's ``config.json`` (strategy, space, tasks, budget, seed).
    A search keeps no trained weights: unless ``weights`` is given, they are freshly initialised.
    Other keywords go to ``export_cell``.
    """
    from cellsearch.dsl.io import loads_cell
    from cellsearch.storage.rundir import CONFIG, read_json_file, require_run
    from cellsearch.storage.results import leaderboard

    run = require_run(run_dir)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"rank must be 1 (the best cell) or more, not {rank!r}", field="export_from_run.rank")
    if fmt not in FORMATS:  # before reading the run: the cheap mistake first
        raise ConfigError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    rows = leaderboard(run, rank)
    if len(rows) < rank:
        raise ConfigError(f"rank {rank} is out of range: '{run}' has {len(rows)} ranked cell(s)")
    row = rows[rank - 1]
    graph = loads_cell(row["cell_yaml"], source=f"{run}/results.db (rank {rank})", warn=False)
    config = read_json_file(run / CONFIG, "search settings", "restore it, or export the cell with "
                            "`cellsearch export CELL.yaml`")
    search = {k: config[k] for k in ("name", "strategy", "space", "tasks", "trials", "steps", "minutes", "seed",
                                     "reference", "train") if k in config}
    card = {"run": str(run), "rank": rank, "score": row["score"], "status": row["status"],
            "origin": row.get("origin"), "stage": row.get("stage"), "evaluations": row.get("evaluations"),
            "trained_params": row.get("params"), "metrics": row["metrics"], "search": search}
    extra = kw.pop("card", None) or {}
    return export_cell(graph, fmt, path, card={**card, **extra}, **kw)


def _parameters(g: CellGraph, input_size: int, hidden_size: int, static_size: int | None,
                weights: Mapping[str, torch.Tensor] | None, seed: int) -> CellParameters:
    """The cell's parameters: ``weights`` checked against the cell, else initialised after ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        params = CellParameters(g, input_size, hidden_size, static_size)
    if weights is None:
        return params
    if not isinstance(weights, Mapping):
        raise ConfigError(f"weights must be a state dict (name → tensor), not {type(weights).__name__}")
    weights = dict(weights)
    if weights and all(k.startswith("params.") for k in weights):  # CompiledCell.state_dict()
        weights = {k[len("params."):]: v for k, v in weights.items()}
    expected = params.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
        raise ConfigError(f"the weights do not fit cell '{g.name}': {'; '.join(parts)}")
    for k, v in expected.items():
        w = weights[k]
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(v.shape):
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ConfigError(f"weight '{k}' of cell '{g.name}' has shape {got}, expected {tuple(v.shape)} "
                              f"(I={input_size}, H={hidden_size})")
    with torch.no_grad():
        for k, v in params.named_parameters():
            v.copy_(weights[k].detach().to(v.dtype))
    return params


__all__ = ["CHECK_TOLERANCE", "FORMATS", "ONNX_OPSET", "ExportError", "class_name", "export_cell", "export_from_run",
           "onnx_names", "python_source", "render_card", "version", "yaml_weights_path"]
