"""NAS-Bench-NLP recipes ↔ cells: import, compile, an independent reference, round trips, errors."""

from __future__ import annotations

import functools
import json
import operator
import re

import pytest
import torch

from cellsearch.compile.params import CellParameters
from cellsearch.compile.cell import CompiledCell
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import load_cell
from cellsearch.dsl.nasbench import cell_to_recipe, import_recipes, load_recipes, recipe_to_cell
from cellsearch.errors import CellError
from cellsearch.library import get_cell
from tests.support.paths import SHARED

SAMPLE_PATH = SHARED / "data/nasbench_nlp/recipes_example.json"
SAMPLE = json.loads(SAMPLE_PATH.read_text()) if SAMPLE_PATH.is_file() else None
MISSING = f"NAS-Bench-NLP sample recipes not found at {SAMPLE_PATH} (../shared relative to the repo root)"

# A recipe written for these tests: three states, n-ary elementwise ops, every op NAS-Bench-NLP has.
THREE_STATES = {
    "a": {"op": "linear", "input": ["x", "h_prev_0", "h_prev_2"]},
    "a_act": {"op": "activation_sigm", "input": ["a"]},
    "b": {"op": "linear", "input": ["h_prev_1", "x"]},
    "b_act": {"op": "activation_leaky_relu", "input": ["b"]},
    "h_new_1": {"op": "blend", "input": ["a_act", "h_prev_1", "b_act"]},
    "s": {"op": "elementwise_sum", "input": ["b", "h_new_1", "h_prev_2"]},
    "h_new_2": {"op": "activation_tanh", "input": ["s"]},
    "p": {"op": "elementwise_prod", "input": ["a_act", "h_new_2", "h_prev_0", "b_act"]},
    "c": {"op": "linear", "input": ["p", "h_new_1"]},
    "h_new_0": {"op": "activation_tanh", "input": ["c"]},
}

TANH_CELL = {"n": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["n"]}}


def _cases():
    cases = [pytest.param(THREE_STATES, id="three_states")]
    if SAMPLE is None:
        return cases + [pytest.param(None, id="sample", marks=pytest.mark.skip(reason=MISSING))]
    return cases + [pytest.param(r, id=f"sample{i}") for i, r in enumerate(SAMPLE)]


CASES = _cases()


def graph_name(recipe_name: str) -> str:
    """The name recipe_to_cell gives a node (the sample and THREE_STATES need no renames)."""
    m = re.fullmatch(r"h_new_(\d+)", recipe_name)
    return f"h{m[1]}" if m else recipe_name


def n_states(recipe: dict) -> int:
    return 1 + max(int(k[len("h_new_"):]) for k in recipe if re.fullmatch(r"h_new_\d+", k))


def recipe_param_count(recipe: dict, input_size: int, hidden_size: int) -> int:
    """Weights of the linear nodes some h_new_N reads (dead nodes get no parameters)."""
    live, stack = set(), [k for k in recipe if re.fullmatch(r"h_new_\d+", k)]
    while stack:
        k = stack.pop()
        if k in recipe and k not in live:
            live.add(k)
            stack.extend(recipe[k]["input"])
    total = 0
    for k, spec in recipe.items():
        if spec["op"] == "linear" and k in live:
            total += sum(hidden_size * (input_size if a == "x" else hidden_size) for a in spec["input"])
            total += hidden_size
    return total


def reference(recipe: dict, params: dict[str, torch.Tensor], x: torch.Tensor, state: tuple):
    """Evaluate the recipe dict directly, step by step (NAS-Bench-NLP semantics)."""
    prev = list(state)
    outs = []
    for t in range(x.shape[0]):
        values = {"x": x[t], **{f"h_prev_{n}": v for n, v in enumerate(prev)}}

        def ev(name: str) -> torch.Tensor:
            if name in values:
                return values[name]
            spec = recipe[name]
            args = [ev(a) for a in spec["input"]]
            op = spec["op"]
            if op == "linear":
                node = graph_name(name)
                out = params[f"{node}__b"]
                for k, a in enumerate(args):
                    out = out + a @ params[f"{node}__w{k}"].t()
            elif op == "blend":
                z, a, b = args
                out = z * a + (1 - z) * b
            elif op == "elementwise_sum":
                out = functools.reduce(operator.add, args)
            elif op == "elementwise_prod":
                out = functools.reduce(operator.mul, args)
            elif op == "activation_tanh":
                out = torch.tanh(args[0])
            elif op == "activation_sigm":
                out = 1 / (1 + torch.exp(-args[0]))
            elif op == "activation_leaky_relu":
                out = torch.where(args[0] > 0, args[0], 0.01 * args[0])
            else:  # pragma: no cover
                raise AssertionError(op)
            values[name] = out
            return out

        prev = [ev(f"h_new_{n}") for n in range(len(prev))]
        outs.append(prev[0])
    return torch.stack(outs), tuple(prev)


# ---------------------------------------------------------------------- import and compile
@pytest.mark.parametrize("recipe", CASES)
def test_recipe_imports_compiles_and_trains(recipe):
    g = recipe_to_cell(recipe, "r")
    assert g.validate(warn=False) == []
    assert g.inputs == ("x",) and g.output == "h0"
    assert g.states == tuple(f"h{n}" for n in range(n_states(recipe)))
    assert g.source == "NAS-Bench-NLP (Klyuchnikov et al. 2020)" and g.description
    assert all(graph_name(k) in g for k in recipe)  # no renames needed for these recipes
    torch.manual_seed(0)
    cell = CompiledCell(g, 8, 8)
    x = torch.randn(4, 3, 8, requires_grad=True)
    out, final = cell(x)
    assert out.shape == (4, 3, 8) and len(final) == len(g.states)
    (out.square().sum() + sum(s.sum() for s in final)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in cell.params.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("recipe", CASES)
@pytest.mark.parametrize("sizes", [(8, 8), (5, 8)])
def test_param_count_matches_recipe(recipe, sizes):
    I, H = sizes
    g = recipe_to_cell(recipe, "r")
    expected = recipe_param_count(recipe, I, H)
    assert g.param_count(I, H) == expected
    assert sum(p.numel() for p in CompiledCell(g, I, H).parameters()) == expected
    assert sum(p.numel() for p in CellParameters(g, I, H).parameters()) == expected


def test_param_count_ignores_dead_nodes():
    recipe = dict(TANH_CELL, dead={"op": "linear", "input": ["x", "h_prev_0"]})
    g = recipe_to_cell(recipe, "dead")
    assert g.validate(warn=False) == ["node 'dead' is never used by any state"]
    expected = recipe_param_count(recipe, 5, 8)
    assert sum(p.numel() for p in CompiledCell(g, 5, 8).parameters()) == expected
    assert g.param_count(5, 8) == expected


@pytest.mark.parametrize("recipe", CASES)
def test_compiled_matches_independent_reference(recipe):
    g = recipe_to_cell(recipe, "r")
    torch.manual_seed(1)
    cell = CompiledCell(g, 8, 8)
    params = dict(cell.params.named_parameters())
    x = torch.randn(5, 3, 8)
    state = tuple(torch.randn(3, 8) * 0.5 for _ in g.states)
    out, final = cell(x, state)
    ref_out, ref_final = reference(recipe, params, x, state)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for a, b in zip(final, ref_final, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # gradients too: the same loss through both, w.r.t. the shared weights
    names = sorted(params)
    weights = torch.randn(5, 3, 8)

    def loss(o, f):
        return (o * weights).sum() + sum((s * (k + 1)).sum() for k, s in enumerate(f))

    got = torch.autograd.grad(loss(*cell(x, state)), [params[n] for n in names])
    want = torch.autograd.grad(loss(*reference(recipe, params, x, state)), [params[n] for n in names])
    for n, a, b in zip(names, got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}")


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("recipe", CASES)
def test_round_trip_keeps_hash(recipe):
    g = recipe_to_cell(recipe, "r")
    back = cell_to_recipe(g)
    if all(len(v["input"]) <= 2 or v["op"] in ("linear", "blend") for v in recipe.values()):
        assert back == recipe  # names, op spellings and input order survive
    else:  # n-ary sums/products come back as binary chains
        assert set(recipe) < set(back)
    assert json.loads(json.dumps(back)) == back
    g2 = recipe_to_cell(back, "r2")
    assert canonical_hash(g2) == canonical_hash(g)
    assert canonical_hash(recipe_to_cell(cell_to_recipe(g2), "r3")) == canonical_hash(g)


@pytest.mark.parametrize("builtin", ["tanh", "lstm", "gru", "np", "lstm-f"])
def test_builtin_cells_round_trip(builtin):
    g = get_cell(builtin)
    recipe = cell_to_recipe(g)
    assert "h_new_0" in recipe and "x" not in recipe
    assert canonical_hash(recipe_to_cell(recipe, builtin)) == canonical_hash(g)


@pytest.mark.parametrize("builtin, pattern", [
    ("mut1", r"op 'one_minus' has no NAS-Bench-NLP counterpart"),
    ("vanilla", r"op 'diag' has no NAS-Bench-NLP counterpart"),
    ("nas", r"op 'linear' with bias=False cannot be expressed"),
    ("lstm-b", r"f_linear': op 'linear' with bias_init=1.0 cannot be expressed"),
])
def test_cell_to_recipe_rejects_what_nasbench_cannot_express(builtin, pattern):
    with pytest.raises(CellError, match=rf"cell '{builtin}': node '.*{pattern}"):
        cell_to_recipe(get_cell(builtin))


def test_cell_to_recipe_renames_names_that_mean_something_in_a_recipe():
    from cellsearch.dsl.io import loads_cell

    g = loads_cell("name: c\ninputs: [u]\nstates: [s, h]\noutput: h\nnodes:\n"
                   "  h_new_0: linear(u, s_prev)\n  x: tanh(h_new_0)\n  s: sigmoid(x)\n  h: s * h_prev\n")
    recipe = cell_to_recipe(g)
    assert set(recipe) == {"h_new_0_node", "x_node", "h_new_1", "h_new_0"}
    assert recipe["h_new_0_node"]["input"] == ["x", "h_prev_1"]
    assert recipe["h_new_0"] == {"op": "elementwise_prod", "input": ["h_new_1", "h_prev_0"]}
    assert canonical_hash(recipe_to_cell(recipe, "c")) == canonical_hash(g)


def test_reserved_and_odd_names_are_renamed_readably():
    recipe = {
        "h1": {"op": "linear", "input": ["x", "h_prev_0"]},
        "h0_prev": {"op": "activation_tanh", "input": ["h1"]},
        "node-3": {"op": "activation_sigm", "input": ["h0_prev"]},
        "h1_node": {"op": "elementwise_sum", "input": ["node-3", "h1"]},
        "h_new_0": {"op": "activation_tanh", "input": ["h1_node"]},
    }
    g = recipe_to_cell(recipe, "odd")
    assert [n.name for n in g.nodes] == ["h1_node2", "h0_prev_node", "node_3", "h1_node", "h0"]
    assert g["h0_prev_node"].args == ("h1_node2",)
    assert recipe_to_cell(recipe, "odd") == g  # deterministic


def test_nary_elementwise_ops_fold_from_the_left():
    g = recipe_to_cell(THREE_STATES, "three")
    assert g["s"].op == "add" and g["s"].args[1] == "h2_prev"
    inner = g[g["s"].args[0]]
    assert inner.op == "add" and inner.args == ("b", "h1") and inner.auto


# ---------------------------------------------------------------------- files
def test_load_and_import_sample(tmp_path):
    if SAMPLE is None:
        pytest.skip(MISSING)
    cells = load_recipes(SAMPLE_PATH)
    assert [c.name for c in cells] == [f"recipes_example_{i}" for i in range(len(SAMPLE))]
    paths = import_recipes(SAMPLE_PATH, tmp_path / "out")
    assert [p.name for p in paths] == [f"recipes_example_{i}.yaml" for i in range(len(SAMPLE))]
    for g, p in zip(cells, paths, strict=True):
        text = p.read_text()
        assert "NAS-Bench-NLP" in text and "linear(" in text  # equation form
        loaded = load_cell(p)
        assert loaded == g
        assert canonical_hash(loaded) == canonical_hash(g)


def test_load_single_recipe_object_and_recipe_strings(tmp_path):
    single = tmp_path / "one.json"
    single.write_text(json.dumps(THREE_STATES))
    [g] = load_recipes(single)
    assert g.name == "one_0" and len(g.states) == 3
    strings = tmp_path / "logs.json"
    strings.write_text(json.dumps([json.dumps(THREE_STATES), THREE_STATES]))
    assert [c.name for c in load_recipes(strings)] == ["logs_0", "logs_1"]


# ---------------------------------------------------------------------- errors


def _with(**nodes):
    out = dict(TANH_CELL)
    out.update(nodes)
    return out


@pytest.mark.parametrize("recipe, pattern", [
    (_with(n={"op": "conv", "input": ["x"]}), r"recipe 'bad': node 'n': unknown op 'conv'"),
    (_with(n={"op": "linear", "input": ["x", "h_prev_O"]}),
     r"recipe 'bad': node 'n': undefined input 'h_prev_O' \(did you mean 'h_prev_0'\?\)"),
    (_with(h_new_0={"op": "activation_tanh", "input": ["m"]}), r"node 'h_new_0': undefined input 'm'"),
    ({"n": TANH_CELL["n"], "h_new_1": {"op": "activation_tanh", "input": ["n"]}},
     r"recipe 'bad': missing 'h_new_0'"),
    (_with(n={"op": "linear", "input": ["x", "h_prev_1"]}),
     r"node 'n': reads 'h_prev_1' but the recipe never defines 'h_new_1'"),
    (_with(h_new_2={"op": "activation_tanh", "input": ["n"]}), r"'h_new_1' is missing"),
    (_with(n={"op": "blend", "input": ["x", "h_prev_0"]}), r"node 'n': blend takes 3 input\(s\), got 2"),
    (_with(n={"op": "activation_tanh", "input": []}), r"node 'n': activation_tanh takes 1 input"),
    (_with(n={"op": "linear", "input": "x"}), r"node 'n': 'input' must be a list"),
    (_with(n={"op": "linear"}), r"node 'n': 'input' must be a list"),
    (_with(n={"input": ["x"]}), r"node 'n': missing or invalid 'op'"),
    (_with(n={"op": "linear", "input": ["x"], "attrs": {}}), r"node 'n': unknown field\(s\) 'attrs'"),
    (_with(n=["linear", "x"]), r"node 'n': a node must be an object"),
    (_with(x={"op": "activation_tanh", "input": ["n"]}), r"node 'x': 'x' is the input"),
    (_with(h_prev_0={"op": "activation_tanh", "input": ["n"]}), r"node 'h_prev_0': 'h_prev_0' is the previous"),
    (_with(n={"op": "linear", "input": ["x", "h_prev_00"]}), r"ambiguous state name 'h_prev_00'"),
    (_with(n={"op": "linear", "input": ["x", "m"]}, m={"op": "activation_tanh", "input": ["n"]}),
     r"cycle inside one step: .*n -> m -> n|cycle inside one step: .*m -> n -> m"),
    ([TANH_CELL], r"recipe 'bad': a recipe must be a JSON object"),
    ({}, r"recipe 'bad': the recipe is empty"),
])
def test_recipe_errors(recipe, pattern):
    with pytest.raises(CellError, match=pattern):
        recipe_to_cell(recipe, "bad")


def test_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(CellError, match=re.escape(str(missing)) + ": no such file"):
        load_recipes(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"h_new_0": {"op": "activation_tanh", "input": ["x"]}},\n {"oops"}]')
    with pytest.raises(CellError, match=re.escape(str(bad)) + r":2: invalid JSON"):
        load_recipes(bad)
    dup = tmp_path / "dup.json"
    dup.write_text('{"h_new_0": {"op": "activation_tanh", "input": ["x"]},\n'
                   ' "h_new_0": {"op": "linear", "input": ["x"]}}')
    with pytest.raises(CellError, match=re.escape(str(dup)) + r".*duplicate key 'h_new_0'"):
        load_recipes(dup)
    scalar = tmp_path / "scalar.json"
    scalar.write_text("42")
    with pytest.raises(CellError, match="expected a JSON list of recipes"):
        load_recipes(scalar)
    second_bad = tmp_path / "second.json"
    second_bad.write_text(json.dumps([TANH_CELL, _with(n={"op": "relu", "input": ["x"]})]))
    with pytest.raises(CellError, match=re.escape(str(second_bad))
                       + r": recipe 1 \('second_1'\): node 'n': unknown op 'relu'"):
        load_recipes(second_bad)
    out = tmp_path / "out"
    with pytest.raises(CellError):
        import_recipes(second_bad, out)
    assert not out.exists()  # nothing written when a recipe is bad
