"""The export formats built on the Python module: py, TorchScript, ONNX, and YAML.

* ``py``: the module of ``pysource.py``, with its weights beside it (``PATH`` with suffix
  ``.pt``, a plain state dict).
* ``torchscript``: that module compiled with ``torch.jit.script``, weights included; it loads
  with ``torch.jit.load`` in any process that has torch. The model card is an extra file of it.
* ``onnx``: the layer unrolled over a fixed sequence length ``seq_len`` (the time dimension is
  fixed, the batch dimension is dynamic); see ``onnx_names`` for inputs and outputs. The file is
  checked with ``onnx.checker`` and run once in onnxruntime.
* ``yaml``: the cell in the DSL, with the weights beside it (``yaml_weights_path``).

Each ``write_*`` writes ``path`` (and the weights beside it where the format has them), checks
what it wrote against the compiled cell (``verify.py``) where the artifact runs, and returns the
extra files it wrote.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import torch

from cellsearch.compile.params import CellParameters
from cellsearch.dsl import literals
from cellsearch.dsl.graph import CellGraph
from cellsearch.export.base import ExportError, version
from cellsearch.export.pysource import imported, instance, python_source
from cellsearch.export.verify import check_python, compare, example, example_memory, reference, run_module

ONNX_OPSET = 17


def yaml_weights_path(path: str | Path) -> Path:
    """Where a YAML export keeps its weights: ``cell.yaml`` → ``cell.weights.pt``.

    (Not ``cell.pt`` like the py export, so that a YAML and a TorchScript export of one name
    can sit side by side.)
    """
    return Path(path).with_suffix(".weights.pt")


def write_python(g: CellGraph, path: Path, params: CellParameters, state: dict, card_text: str,
                 seq_len: int) -> list[Path]:
    """The py format: the module (its docstring the model card) and its weights file."""
    sidecar = path.with_suffix(".pt")
    source = python_source(g, params.input_size, params.hidden_size, params.static_size if g.static else None,
                           card=card_text, weights_file=sidecar.name)
    path.write_text(source, encoding="utf-8")
    torch.save(state, sidecar)
    check_python(g, path, params, seq_len)
    return [sidecar]


def write_yaml(g: CellGraph, path: Path, params: CellParameters, state: dict, card_name: str) -> list[Path]:
    """The yaml format: the cell in the DSL under a comment naming its weights and card, and the weights."""
    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.dsl.io import dumps_cell

    sidecar = yaml_weights_path(path)
    header = (literals.comment(f"{g.name} (hash {canonical_hash(g)}), exported by cellsearch {version()}.") + "\n"
              + literals.comment(f"Weights (I={params.input_size}, H={params.hidden_size}): {sidecar.name}; "
                                 f"model card: {card_name}") + "\n")
    path.write_text(header + dumps_cell(g), encoding="utf-8")
    torch.save(state, sidecar)
    return [sidecar]


@contextlib.contextmanager
def _generated_instance(g: CellGraph, params: CellParameters, state: dict, card_text: str = ""):
    """The Python module's cell holding ``state``, imported from a temporary file (torch.jit.script
    and the ONNX exporter read the source through ``inspect``)."""
    with tempfile.TemporaryDirectory(prefix="cellsearch-export-") as tmp:
        src = Path(tmp) / "cell.py"
        src.write_text(python_source(g, params.input_size, params.hidden_size,
                                     params.static_size if g.static else None, card=card_text,
                                     weights_file=None), encoding="utf-8")
        with imported(src) as module:
            yield instance(g, module, params, state)


def _scripted(g: CellGraph, params: CellParameters, state: dict, card_text: str):
    with _generated_instance(g, params, state, card_text) as model:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return torch.jit.script(model), model
            except Exception as exc:  # pragma: no cover - a bug in the generator
                raise ExportError(f"torch.jit.script failed on the generated module of '{g.name}': "
                                  f"{type(exc).__name__}: {exc}") from None


def write_torchscript(g: CellGraph, path: Path, params: CellParameters, state: dict, card_text: str,
                      seq_len: int) -> list[Path]:
    """The torchscript format: the scripted module with its weights and the card, checked after loading it."""
    scripted, _ = _scripted(g, params, state, card_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted.save(str(path), _extra_files={"model_card.md": card_text})
        loaded = torch.jit.load(str(path))
    x, states, statics = example(g, params, min(seq_len, 8), 2)
    memory = example_memory(g, params, 2)
    compare(f"the TorchScript file {path}", run_module(g, loaded, x, states, statics, memory),
            reference(g, params, x, states, statics, memory))
    return []


class _OnnxLayer(torch.nn.Module):
    """Flat signature for ONNX: ``(x, *states, *statics) -> (out, *final_states)``."""

    def __init__(self, cell: torch.nn.Module, n_states: int, has_static: bool):
        super().__init__()
        self.cell = cell
        self.n_states = n_states
        self.has_static = has_static

    def forward(self, x, *rest):
        states = tuple(rest[:self.n_states])
        if self.has_static:
            out, final = self.cell(x, states, tuple(rest[self.n_states:]))
        else:
            out, final = self.cell(x, states)
        return (out, *final)


def onnx_names(g: CellGraph) -> tuple[list[str], list[str]]:
    """Input and output names of the ONNX graph."""
    inputs = ["x", *(f"{s}_0" for s in g.states), *(f"static_{s}" for s in g.static)]
    outputs = ["out", *(f"{s}_n" for s in g.states)]
    return inputs, outputs


def write_onnx(g: CellGraph, path: Path, params: CellParameters, state: dict, card_text: str,
               seq_len: int) -> list[Path]:
    """The onnx format: the layer unrolled over ``seq_len`` steps, the card in its metadata; run in onnxruntime."""
    if g.memory or g.memory_states:
        raise ExportError(f"the onnx format does not take a memory yet; export '{g.name}' as py or torchscript")
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({exc.name} is missing): "
                          "pip install 'cellsearch[export]'") from None
    from cellsearch.dsl.hashing import canonical_hash

    with _generated_instance(g, params, state) as cell:
        layer = _OnnxLayer(cell, len(g.states), bool(g.static)).eval()
        x, states, statics = example(g, params, seq_len, 2)
        in_names, out_names = onnx_names(g)
        axes = {"x": {1: "batch"}, "out": {1: "batch"}}
        axes.update({n: {0: "batch"} for n in in_names[1:] + out_names[1:]})
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(layer, (x, *states, *statics), str(path), dynamo=False,
                                  input_names=in_names, output_names=out_names, dynamic_axes=axes,
                                  opset_version=ONNX_OPSET, do_constant_folding=True)
            except Exception as exc:  # pragma: no cover - depends on the torch version
                raise ExportError(f"torch.onnx.export failed for '{g.name}': {type(exc).__name__}: {exc}") \
                    from None
    model = onnx.load(str(path))
    meta = {"cellsearch_cell": g.name, "cellsearch_hash": canonical_hash(g), "cellsearch_version": version(),
            "sequence_length": str(seq_len), "states": ",".join(g.states), "model_card": card_text}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = f"{g.name}: recurrent layer over a fixed sequence length T={seq_len}; batch is dynamic."
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:  # pragma: no cover - depends on the exporter
        raise ExportError(f"the ONNX file {path} does not pass onnx.checker: {exc}") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x, states, statics = example(g, params, seq_len, 3, seed=4321)  # another batch size than exported
    feeds = dict(zip(in_names, [t.numpy() for t in (x, *states, *statics)]))
    present = {i.name for i in session.get_inputs()}
    got = session.run(out_names, {k: v for k, v in feeds.items() if k in present})
    compare(f"the ONNX file {path} (in onnxruntime)", [torch.from_numpy(a) for a in got],
            reference(g, params, x, states, statics))
    return []


__all__ = ["ONNX_OPSET", "onnx_names", "write_onnx", "write_python", "write_torchscript", "write_yaml",
           "yaml_weights_path"]
