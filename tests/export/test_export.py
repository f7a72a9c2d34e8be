"""Export: every built-in cell in every format, loaded back in a fresh process without cellsearch.

The round trip exports all built-in cells of one format, then runs ONE subprocess per format
(``sys.executable -c``) that loads each artifact the way a user would (import the .py file,
``torch.jit.load``, onnxruntime; YAML through cellsearch itself) and writes its outputs to
files; the parent compares them with ``CompiledCell`` on the same weights and inputs.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from cellsearch.cli.export import register
from cellsearch.compile import CellParameters, CompiledCell
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import dumps_cell, loads_cell
from cellsearch.dsl.tools import summary
from cellsearch.errors import CellsearchError
from cellsearch.export import (FORMATS, class_name, export_cell, export_from_run, onnx_names, version,
                               yaml_weights_path)
from cellsearch.export.base import ExportError
from cellsearch.library import builtin_names, get_cell
from cellsearch.storage.store import Store
from tests.support.paths import REPO

I = H = 6  # equal sizes: MUT1 and MUT2 use the input elementwise
T, B = 5, 3
SUFFIX = {"py": ".py", "torchscript": ".pt", "onnx": ".onnx", "yaml": ".yaml"}
TOLERANCE = {"py": 1e-5, "torchscript": 1e-5, "onnx": 1e-4, "yaml": 1e-5}

_PRELUDE = """
import json, sys
import numpy as np
cases = json.load(open(sys.argv[1]))
"""
_NO_CELLSEARCH = """
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "cellsearch")
assert not leaked, leaked
"""
SCRIPTS = {
    "py": _PRELUDE + """
import importlib.util
import torch
torch.set_num_threads(1)
for case in cases:
    spec = importlib.util.spec_from_file_location(case["module"], case["path"])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[case["module"]] = mod
    spec.loader.exec_module(mod)
    data = np.load(case["inputs"])
    x = torch.from_numpy(data["x"])
    states = tuple(torch.from_numpy(data["s%d" % i]) for i in range(case["n_states"]))
    model = mod.load()
    assert type(model).__name__ == case["class"], type(model).__name__
    res = {}
    with torch.no_grad():
        out, final = model(x, states)
        out0, final0 = model(x)
        outb, finalb = mod.load(batch_first=True)(x.transpose(0, 1).contiguous(), states)
        outj, finalj = torch.jit.script(model)(x, states)
    res["out"], res["out0"], res["outbf"], res["outjit"] = out, out0, outb.transpose(0, 1), outj
    for i in range(case["n_states"]):
        res["s%d" % i], res["z%d" % i], res["b%d" % i], res["j%d" % i] = final[i], final0[i], finalb[i], finalj[i]
    np.savez(case["result"], **{k: v.numpy() for k, v in res.items()})
""" + _NO_CELLSEARCH,
    "torchscript": _PRELUDE + """
import torch
torch.set_num_threads(1)
for case in cases:
    data = np.load(case["inputs"])
    x = torch.from_numpy(data["x"])
    states = tuple(torch.from_numpy(data["s%d" % i]) for i in range(case["n_states"]))
    model = torch.jit.load(case["path"])
    with torch.no_grad():
        out, final = model(x, states)
        out0, final0 = model(x)
    res = {"out": out, "out0": out0}
    for i in range(case["n_states"]):
        res["s%d" % i], res["z%d" % i] = final[i], final0[i]
    np.savez(case["result"], **{k: v.numpy() for k, v in res.items()})
""" + _NO_CELLSEARCH,
    "onnx": _PRELUDE + """
import onnxruntime as ort
for case in cases:
    data = np.load(case["inputs"])
    session = ort.InferenceSession(case["path"], providers=["CPUExecutionProvider"])
    feeds = {"x": data["x"]}
    feeds.update({name: data["s%d" % i] for i, name in enumerate(case["onnx_inputs"][1:])})
    present = {i.name for i in session.get_inputs()}
    got = session.run(case["onnx_outputs"], {k: v for k, v in feeds.items() if k in present})
    res = {"out": got[0]}
    res.update({"s%d" % i: v for i, v in enumerate(got[1:])})
    np.savez(case["result"], **res)
assert "torch" not in sys.modules
""" + _NO_CELLSEARCH,
    "yaml": _PRELUDE + """
import torch
from cellsearch.compile import CompiledCell
from cellsearch.dsl.io import load_cell
torch.set_num_threads(1)
for case in cases:
    data = np.load(case["inputs"])
    x = torch.from_numpy(data["x"])
    states = tuple(torch.from_numpy(data["s%d" % i]) for i in range(case["n_states"]))
    cell = CompiledCell(load_cell(case["path"]), case["I"], case["H"])
    cell.params.load_state_dict(torch.load(case["weights"], weights_only=True))
    with torch.no_grad():
        out, final = cell(x, states)
    res = {"out": out}
    res.update({"s%d" % i: v for i, v in enumerate(final)})
    np.savez(case["result"], **{k: v.numpy() for k, v in res.items()})
""",
}


def _reference(name: str, seed: int):
    """A cell, weights and a fixed input, with CompiledCell's outputs (given states and zero states)."""
    g = get_cell(name)
    torch.manual_seed(seed)
    params = CellParameters(g, I, H)
    gen = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(T, B, I, generator=gen)
    states = tuple(0.5 * torch.randn(B, H, generator=gen) for _ in g.states)
    cell = CompiledCell(g, I, H, params=params)
    with torch.no_grad():
        out, final = cell(x, states)
        out0, final0 = cell(x)
    expected = {"out": out, "out0": out0, **{f"s{i}": v for i, v in enumerate(final)},
                **{f"z{i}": v for i, v in enumerate(final0)}}
    inputs = {"x": x, **{f"s{i}": v for i, v in enumerate(states)}}
    return g, params.state_dict(), inputs, expected


def _expected_key(key: str) -> str:
    """Batch-first (b) and scripted (j) runs must give the same as the plain run (out, s<i>)."""
    if key in ("outbf", "outjit"):
        return "out"
    return "s" + key[1:] if key[0] in "bj" else key


@pytest.fixture
def no_drawing(monkeypatch):
    """The round trips do not look at the pictures (test_card_* does): skip matplotlib there."""
    monkeypatch.setattr("cellsearch.export._draw", lambda g, path: path.write_bytes(b""))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_builtin_cell_round_trips_in_a_fresh_process(fmt, tmp_path, no_drawing):
    cases, expected = [], {}
    for k, name in enumerate(builtin_names(memory=False)):  # (memory cells: test_export_of_memory_cells)
        g, weights, inputs, exp = _reference(name, seed=k)
        path = tmp_path / (name.replace("-", "_") + SUFFIX[fmt])
        files = export_cell(g, fmt, path, input_size=I, hidden_size=H, weights=weights, seq_len=T)
        assert files[0] == path and all(f.exists() for f in files), files
        assert Path(str(path) + ".card.md") in files and Path(str(path) + ".png") in files
        weights_file = path.with_suffix(".pt") if fmt == "py" else yaml_weights_path(path)
        if fmt in ("py", "yaml"):
            assert files[1] == weights_file
            sidecar = torch.load(weights_file, weights_only=True)
            assert list(sidecar) == list(weights)  # CellParameters' names, nothing else
        np.savez(tmp_path / f"{name}.in.npz", **{key: v.numpy() for key, v in inputs.items()})
        ins, outs = onnx_names(g)
        cases.append({"name": name, "path": str(path), "module": path.stem, "class": class_name(g),
                      "n_states": len(g.states), "inputs": str(tmp_path / f"{name}.in.npz"),
                      "result": str(tmp_path / f"{name}.out.npz"), "weights": str(weights_file),
                      "onnx_inputs": ins, "onnx_outputs": outs, "I": I, "H": H})
        expected[name] = exp
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", SCRIPTS[fmt], str(tmp_path / "cases.json")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    tol = TOLERANCE[fmt]
    for case in cases:
        got = np.load(case["result"])
        exp = expected[case["name"]]
        for key in got.files:
            np.testing.assert_allclose(got[key], exp[_expected_key(key)].numpy(), rtol=0, atol=tol,
                                       err_msg=f"{fmt} {case['name']} {key}")
        assert "out" in got.files and all(f"s{i}" in got.files for i in range(case["n_states"]))


def test_python_source_is_readable_standalone_and_carries_the_card(tmp_path):
    g = get_cell("lstm")
    files = export_cell(g, "py", tmp_path / "lstm.py", input_size=I, hidden_size=H)
    source = (tmp_path / "lstm.py").read_text()
    card = (tmp_path / "lstm.py.card.md").read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree, clean=False) == card  # the module docstring is the model card
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {a.name for n in imports if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in imports if isinstance(n, ast.ImportFrom)}
    assert all(m.split(".")[0] in ("torch", "math", "pathlib", "typing") for m in modules), modules
    assert "cellsearch" not in "\n".join(ast.unparse(n) for n in imports)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assert cls.name == "LstmCell"
    class_doc = ast.get_docstring(cls)
    step = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "step")
    assert [a.arg for a in step.args.args] == ["self", "x", "h_prev", "c_prev"]
    assert "def step(self" in source and "x.unbind(0)" in source
    for eq in ("i = sigmoid(linear(x, h_prev))", "c = f * c_prev + i * g", "h = o * tanh(c)"):
        assert f"# {eq}" in source and eq in class_doc and eq in card
    step_src = ast.get_source_segment(source, step)
    assert step_src.count("F.linear(") == 8  # one per argument of the four linear nodes
    assert "c = f * c_prev + i * g" in step_src.replace("# c = f * c_prev + i * g", "")
    # the weights sit beside the module; the names are CellParameters' names
    assert files[:2] == [tmp_path / "lstm.py", tmp_path / "lstm.pt"]
    assert list(torch.load(tmp_path / "lstm.pt", weights_only=True)) == list(CellParameters(g, I, H).state_dict())


def test_card_lists_sizes_params_version_and_drawing(tmp_path):
    g = get_cell("gru")
    export_cell(g, "onnx", tmp_path / "gru.onnx", input_size=5, hidden_size=7, seq_len=4, seed=3)
    card = (tmp_path / "gru.onnx.card.md").read_text()
    info = summary(g, 5, 7)
    assert "# gru" in card and canonical_hash(g) in card
    assert f"parameters: {info['params']:,}" in card
    assert f"multiply-adds per step and batch element: {info['multiply_adds_per_step']:,}" in card
    assert "input 5, hidden 7" in card
    for name in CellParameters(g, 5, 7).state_dict():
        assert f"`{name}`" in card
    assert f"cellsearch {version()}" in card and version() == importlib.metadata.version("cellsearch")
    assert "h = blend(z, h_prev, n)" in card
    assert "T = 4" in card and "`h_0`" in card and "`h_n`" in card
    assert "torch.manual_seed(3)" in card
    assert "![gru](gru.onnx.png)" in card
    assert (tmp_path / "gru.onnx.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torchscript_file_embeds_the_card(tmp_path):
    export_cell("tanh", "torchscript", tmp_path / "tanh.pt", input_size=4, hidden_size=3)
    extra = {"model_card.md": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in favour of torch.export
        torch.jit.load(str(tmp_path / "tanh.pt"), _extra_files=extra)
    assert extra["model_card.md"].decode() == (tmp_path / "tanh.pt.card.md").read_text()


def test_exported_module_has_the_lstm_api(tmp_path, no_drawing):
    """Hidden size ≠ input size, default zero states, batch_first, and weights from a CompiledCell."""
    g = get_cell("vanilla")
    cell = CompiledCell(g, 3, 4)
    export_cell(g, "py", tmp_path / "vanilla_cell.py", input_size=3, hidden_size=4, weights=cell.state_dict())
    sys.path.insert(0, str(tmp_path))
    try:
        import vanilla_cell  # noqa: PLC0415 - the exported module

        model = vanilla_cell.load(batch_first=True)
        x = torch.randn(2, 6, 3)  # (B, T, I)
        with torch.no_grad():
            out, (h, c) = model(x)
            ref, (rh, rc) = cell(x.transpose(0, 1))
        assert out.shape == (2, 6, 4)
        torch.testing.assert_close(out.transpose(0, 1), ref, rtol=0, atol=1e-5)
        torch.testing.assert_close((h, c), (rh, rc), rtol=0, atol=1e-5)
        fresh = vanilla_cell.VanillaCell(3, 4)  # a new, untrained layer of the same cell
        fresh.load_state_dict(cell.params.state_dict())
        assert sum(p.numel() for p in fresh.parameters()) == g.param_count(3, 4)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("vanilla_cell", None)


def test_cells_with_static_inputs_export(tmp_path, no_drawing):
    g = loads_cell("""
name: cond-gru
inputs: [x]
static: [s]
states: [h]
nodes:
  z: sigmoid(linear(x, h_prev, s))
  h: blend(z, h_prev, tanh(linear(x, h_prev) + s))
""", warn=False)
    for fmt in ("py", "torchscript", "onnx"):  # each checks itself against CompiledCell before returning
        export_cell(g, fmt, tmp_path / f"cond{SUFFIX[fmt]}", input_size=3, hidden_size=4, seq_len=3)
    assert "static: Optional[Tuple[Tensor]] = None" in (tmp_path / "cond.py").read_text()
    assert "static_s" in onnx_names(g)[0]


def test_bad_exports_raise_one_line_errors(tmp_path):
    two = loads_cell("name: two\ninputs: [a, b]\nstates: [h]\nnodes:\n  h: tanh(linear(a, b, h_prev))\n")
    with pytest.raises(CellsearchError, match="export supports one per-step input"):
        export_cell(two, "py", tmp_path / "two.py", input_size=3, hidden_size=3)
    export_cell(two, "yaml", tmp_path / "two.yaml", input_size=3, hidden_size=3)  # YAML takes any cell
    with pytest.raises(CellsearchError, match="unknown export format 'tflite'"):
        export_cell("lstm", "tflite", tmp_path / "x")
    with pytest.raises(CellsearchError, match=r"ending in \.py"):
        export_cell("lstm", "py", tmp_path / "lstm.txt")
    with pytest.raises(CellsearchError, match="do not fit cell 'gru'.*missing"):
        export_cell("gru", "py", tmp_path / "gru.py", weights=CellParameters(get_cell("lstm"), 128, 128).state_dict())
    with pytest.raises(CellsearchError, match="has size 5"):
        export_cell("mut1", "py", tmp_path / "mut1.py", input_size=5, hidden_size=6)


# ---------------------------------------------------------------------- runs and the CLI
def _fake_run(root: Path) -> Path:
    """A run directory as a search leaves it (results.db and config.json), without searching."""
    from cellsearch.runner.search import SearchConfig

    run = root / "runs" / "fake"
    rows = [("gru", "reference", 0.8, "ok"), ("tanh", "sample", 0.5, "ok"), ("lstm", "mutation", 0.9, "ok"),
            ("mut3", "mutation", None, "diverged"), ("lstm", "reevaluate", 0.7, "ok")]
    with Store(run / "results.db") as store:
        for name, origin, score, status in rows:
            g = get_cell(name)
            metrics = {"arith": {"char_accuracy": score, "hyperparameters": "defaults"}} if score else {}
            store.add_trial(hash=canonical_hash(g), cell_yaml=dumps_cell(g), cell_name=name, strategy="evolution",
                            origin=origin, status=status, score=score, metrics=metrics, params=1234)
    cfg = SearchConfig(name="fake", strategy="regularized-evolution", space="mutation", tasks=["arith"], steps=123,
                       seed=7)
    (run / "config.json").write_text(json.dumps(asdict(cfg)))
    return run


def test_export_from_run_takes_the_ranked_cell_and_its_metrics(tmp_path, no_drawing):
    run = _fake_run(tmp_path)
    files = export_from_run(run, 2, "py", tmp_path / "second.py", input_size=I, hidden_size=H)
    assert "class GruCell(nn.Module)" in files[0].read_text()
    card = (tmp_path / "second.py.card.md").read_text()
    assert "- rank: 2" in card and "score (higher is better): 0.8" in card
    assert "| arith | char_accuracy | 0.8 |" in card
    assert "search seed: 7" in card and "123 training steps" in card
    assert "regularized-evolution" in card and "mutation" in card and "- tasks: arith" in card
    assert card in files[0].read_text()
    export_from_run(run, 1, "yaml", tmp_path / "best.yaml", input_size=I, hidden_size=H)
    best = (tmp_path / "best.yaml.card.md").read_text()
    assert "# lstm" in best and "| arith | char_accuracy | 0.9 |" in best  # its best evaluation, not 0.7
    assert "evaluations: 2" in best
    with pytest.raises(CellsearchError, match="rank 5 is out of range.*4 ranked"):
        export_from_run(run, 5, "py", tmp_path / "x.py")


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # keeps `export` a subcommand
        pass

    register(app)
    return app


def _one_line_error(res, fragment: str) -> None:
    assert res.exit_code == 2, res.output
    assert fragment in res.stderr, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.strip().count("\n") == 0, res.stderr


def test_cli_exports_a_cell_and_a_run(tmp_path, no_drawing):
    runner = CliRunner()
    app = _app()
    res = runner.invoke(app, ["export", "tanh", "--format", "yaml", "-o", str(tmp_path / "t.yaml"), "-I", "4",
                              "-H", "5"])
    assert res.exit_code == 0, res.output
    assert f"wrote {tmp_path / 't.yaml'}" in res.stdout and (tmp_path / "t.yaml.card.md").exists()
    assert "input 4, hidden 5" in (tmp_path / "t.yaml.card.md").read_text()
    run = _fake_run(tmp_path)
    res = runner.invoke(app, ["export", str(run), "--rank", "3", "--format", "py", "-o", str(tmp_path / "r.py"),
                              "--input-size", "6", "--hidden-size", "6", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "class TanhCell" in (tmp_path / "r.py").read_text()
    assert "torch.manual_seed(2)" in (tmp_path / "r.py.card.md").read_text()


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path):
    runner = CliRunner()
    app = _app()
    out = str(tmp_path / "o.py")
    _one_line_error(runner.invoke(app, ["export", "lstm", "--format", "tflite", "-o", out]),
                    "unknown export format 'tflite'")
    _one_line_error(runner.invoke(app, ["export", str(tmp_path / "runs" / "nope"), "--format", "py", "-o", out]),
                    "neither a built-in cell, a YAML file nor a search run directory")
    _one_line_error(runner.invoke(app, ["export", str(tmp_path / "nope"), "--rank", "1", "--format", "py",
                                        "-o", out]), "no such run directory")
    (tmp_path / "empty").mkdir()
    _one_line_error(runner.invoke(app, ["export", str(tmp_path / "empty"), "--format", "py", "-o", out]),
                    "is not a search run")
    run = _fake_run(tmp_path)
    _one_line_error(runner.invoke(app, ["export", str(run), "--rank", "9", "--format", "py", "-o", out]),
                    "rank 9 is out of range")
    _one_line_error(runner.invoke(app, ["export", str(run), "--rank", "0", "--format", "py", "-o", out]),
                    "--rank must be 1")
    _one_line_error(runner.invoke(app, ["export", "lstmm", "--format", "py", "-o", out]), "no built-in cell")


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_names(memory=True))
def test_export_of_memory_cells(name, tmp_path, no_drawing):
    """py and TorchScript take the memory (or keep the memory state) (checked against the compiled cell inside export_cell, and
    run here in a fresh process); ONNX refuses in one line."""
    py = tmp_path / "attn.py"
    export_cell(name, "py", py, input_size=I, hidden_size=H, seed=1)
    ts = tmp_path / "attn.torchscript"
    export_cell(name, "torchscript", ts, input_size=I, hidden_size=H, seed=1)
    if get_cell(name).memory:
        script = ("import torch, attn\n"
                  f"m = attn.load(); s = torch.jit.load({str(ts)!r})\n"
                  f"x, mems = torch.randn(5, 2, {I}), [torch.randn(2, 3, {H}) for _ in range({len(get_cell(name).memory)})]\n"
                  "mask = torch.tensor([[True, False, False], [True, True, True]])\n"
                  "masks = tuple(mask for _ in mems)\n"
                  "a, _ = m(x, memory=tuple(mems), memory_mask=masks)\n"
                  "b, _ = s(x, None, tuple(mems), masks)\n"
                  "assert torch.allclose(a, b, atol=1e-5)\n"
                  "mems2 = [mem.clone() for mem in mems]\n"
                  "for mem in mems2: mem[0, 1:] = 99.0  # padding rows: no influence\n"
                  "c, _ = m(x, memory=tuple(mems2), memory_mask=masks)\n"
                  "assert torch.allclose(a, c)\n"
                  "print('ok')\n")
    else:  # a memory state (the NTM, a stack): it starts from the module's own initial memory
        graph = get_cell(name)
        memory = graph.states.index(graph.memory_states[0])
        script = ("import torch, attn\n"
                  f"m = attn.load(); s = torch.jit.load({str(ts)!r})\n"
                  f"x = torch.randn(5, 2, {I})\n"
                  "a, state = m(x)\n"
                  "b, _ = s(x)\n"
                  f"assert torch.allclose(a, b, atol=1e-5) and state[{memory}].shape == (2, 16, a.shape[-1])\n"
                  "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]
    with pytest.raises(ExportError, match="onnx format does not take a memory"):
        export_cell(name, "onnx", tmp_path / "attn.onnx", input_size=I, hidden_size=H)
