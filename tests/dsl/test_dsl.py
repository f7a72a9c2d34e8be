"""The cell language: YAML round trips, equation printing/parsing, hashing, graph tools."""

from __future__ import annotations

import random
import warnings
from dataclasses import replace

import networkx as nx
import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from cellsearch.dsl.equations import format_equation
from cellsearch.dsl.graph import CellGraph, Node, prev_name
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.dsl.io import cell_to_dict, dumps_cell, load_cell, loads_cell, save_cell
from cellsearch.dsl.ops import OPS
from cellsearch.dsl.tools import draw, summary, to_dot, to_networkx
from cellsearch.errors import CellError, CellWarning
from cellsearch.library import builtin_names, get_cell, list_cells
from tests.support.generators import (add_dead_node, cells, random_renaming, reads_inputs_elementwise,
                                      rename_nodes, shuffle_commutative)

PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BUILTINS = builtin_names()
FORMS = ("equations", "graph")


def reload(g: CellGraph, form: str = "equations") -> CellGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CellWarning)  # random cells may have dead nodes
        return loads_cell(dumps_cell(g, form), source="<test>")


def without_dead(g: CellGraph) -> CellGraph:
    return g.with_nodes(n for n in g.nodes if n.name in g.live)


# ---------------------------------------------------------------------- isomorphism oracle
def _iso_view(g: CellGraph) -> nx.DiGraph:
    """The live cell as a labelled DiGraph: equal hashes should mean isomorphic views."""
    d = nx.DiGraph()
    for i, name in enumerate(g.inputs):
        d.add_node(name, label=("input", i))
    for i, name in enumerate(g.static):
        d.add_node(name, label=("static", i))
    for s in g.states:
        d.add_node(prev_name(s), label=("prev",))
    for n in g.nodes:
        if n.name in g.live:
            d.add_node(n.name, label=(n.op, n.attrs, n.name in g.states, n.name == g.output))
    for n in g.nodes:
        if n.name not in g.live:
            continue
        positions: dict[str, list] = {}
        for i, a in enumerate(n.args):
            positions.setdefault(a, []).append("c" if OPS[n.op].commutative else i)
        for a, pos in positions.items():
            d.add_edge(a, n.name, label=tuple(sorted(pos, key=str)))
    for s in g.states:
        d.add_edge(s, prev_name(s), label="next-step")
    return d


def isomorphic(g1: CellGraph, g2: CellGraph) -> bool:
    eq = lambda a, b: a["label"] == b["label"]  # noqa: E731
    return nx.is_isomorphic(_iso_view(g1), _iso_view(g2), node_match=eq, edge_match=eq)


# ---------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("form", FORMS)
def test_builtin_round_trip(name, form):
    g = get_cell(name)
    back = loads_cell(dumps_cell(g, form), source=f"{name}.yaml")
    assert back == g
    assert back.nodes == g.nodes and back.name == g.name and back.description == g.description
    assert canonical_hash(back) == canonical_hash(g)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_graph_form_to_equation_form_keeps_hash(name):
    g = get_cell(name)
    via_graph = loads_cell(dumps_cell(g, "graph"))
    via_both = loads_cell(dumps_cell(via_graph, "equations"))
    assert canonical_hash(via_both) == canonical_hash(via_graph) == canonical_hash(g)
    # graph form loses the "auto" marks, so every node becomes its own equation; still equal
    assert via_both == g


def test_builtins_are_valid_and_printed_as_written():
    for g in list_cells():
        assert g.validate(warn=False) == [], g.name
        text = dumps_cell(g)
        assert "_linear" not in text, "auto nodes must be inlined again"
    assert format_equation(get_cell("lstm"), "c") == "f * c_prev + i * g"
    assert format_equation(get_cell("lstm"), "h") == "o * tanh(c)"
    assert format_equation(get_cell("gru"), "h") == "blend(z, h_prev, n)"
    assert format_equation(get_cell("nas"), "n3") == "relu(linear(x, bias=false) * linear(h_prev, bias=false))"


@pytest.mark.parametrize("form", FORMS)
def test_save_and_load_through_files(tmp_path, form):
    for g in list_cells():
        path = save_cell(g, tmp_path / "sub" / f"{g.name}.yaml", form=form)
        assert path.exists() and not path.with_name(path.name + ".tmp").exists()
        back = load_cell(path)
        assert back == g and canonical_hash(back) == canonical_hash(g)
        assert back.file == str(path)


def test_save_overwrites(tmp_path):
    path = tmp_path / "c.yaml"
    save_cell(get_cell("lstm"), path)
    save_cell(get_cell("gru"), path)
    assert load_cell(path) == get_cell("gru")


def test_cell_to_dict_rejects_unknown_form():
    with pytest.raises(ValueError, match="form"):
        cell_to_dict(get_cell("lstm"), form="json")


@PROPS
@given(cells(), st.sampled_from(FORMS))
def test_random_cell_round_trip(g, form):
    back = reload(g, form)
    assert back == g
    assert canonical_hash(back) == canonical_hash(g)
    assert back.validate(warn=False) == g.validate(warn=False)


@PROPS
@given(cells())
def test_random_cell_graph_form_then_equation_form_keeps_hash(g):
    via_graph = reload(g, "graph")
    via_both = reload(via_graph, "equations")
    assert via_both == g
    assert canonical_hash(via_both) == canonical_hash(g)


@PROPS
@given(cells(auto=True))
def test_inlined_sub_expressions_print_and_parse_back(g):
    """Auto nodes are printed inside their reader; parsing gives the same structure back."""
    once = reload(g)
    assert canonical_hash(once) == canonical_hash(g)
    assert len(once.nodes) == len(g.nodes)
    assert {n.name for n in once.nodes if not n.auto} == {n.name for n in g.nodes if not n.auto}
    twice = reload(once)
    assert twice == once  # printing a parsed cell is a fixpoint
    assert dumps_cell(twice) == dumps_cell(once)


@FEW
@given(cells(), st.builds(random.Random, st.integers(0, 2**32)))
def test_save_load_random_cell_through_file(tmp_path_factory, g, rng):
    path = tmp_path_factory.mktemp("cells") / f"c{rng.randrange(10**6)}.yaml"
    save_cell(g, path, form=rng.choice(FORMS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CellWarning)
        assert load_cell(path) == g


# ---------------------------------------------------------------------- equations
def parse_h(expr: str, extra: str = "") -> CellGraph:
    """A cell whose state h is ``expr`` over nodes a, b, c (and whatever ``extra`` defines)."""
    text = (f"inputs: [x]\nstates: [h]\noutput: h\nnodes:\n"
            f"  a: linear(x, h_prev)\n  b: linear(x)\n  c: tanh(h_prev)\n{extra}  h: \"{expr}\"\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CellWarning)
        return loads_cell(text, source="eq.yaml")


def tree(g: CellGraph, name: str):
    """Nested (op, attrs, args...) for auto nodes; explicit nodes and leaves stay names."""
    n = g[name]
    args = tuple(tree(g, a) if a in g and g[a].auto else a for a in n.args)
    if n.op == "const":
        return ("const", n.attr("value"))
    return (n.op, dict(n.attrs), *args) if n.attrs else (n.op, *args)


@pytest.mark.parametrize("text, expected", [
    ("a - (b + c)", ("sub", "a", ("add", "b", "c"))),
    ("a - b + c", ("add", ("sub", "a", "b"), "c")),
    ("a - (b - c)", ("sub", "a", ("sub", "b", "c"))),
    ("a - b - c", ("sub", ("sub", "a", "b"), "c")),
    ("a * (b * c)", ("mul", "a", ("mul", "b", "c"))),
    ("a * b * c", ("mul", ("mul", "a", "b"), "c")),
    ("a * (b + c)", ("mul", "a", ("add", "b", "c"))),
    ("a * b + c", ("add", ("mul", "a", "b"), "c")),
    ("(a + b) * c", ("mul", ("add", "a", "b"), "c")),
    ("-a", ("neg", "a")),
    ("-a * b", ("mul", ("neg", "a"), "b")),
    ("-(a * b)", ("neg", ("mul", "a", "b"))),
    ("-(a + b)", ("neg", ("add", "a", "b"))),
    ("a - -b", ("sub", "a", ("neg", "b"))),
    ("a * -1", ("mul", "a", ("const", -1.0))),
    ("-1 * a", ("mul", ("const", -1.0), "a")),
    ("1 - a", ("sub", ("const", 1.0), "a")),
    ("0.5 * a + 2", ("add", ("mul", ("const", 0.5), "a"), ("const", 2.0))),
    ("one_minus(a) * c", ("mul", ("one_minus", "a"), "c")),
    ("blend(a, b, c)", ("blend", "a", "b", "c")),
    ("tanh(a) * sigmoid(b - c)", ("mul", ("tanh", "a"), ("sigmoid", ("sub", "b", "c")))),
    ("linear(x, h_prev, bias=false, bias_init=1.0)",
     ("linear", {"bias": False, "bias_init": 1.0}, "x", "h_prev")),
    ("linear(x, h_prev, bias=true)", ("linear", "x", "h_prev")),  # the default is dropped
    ("linear(x, bias_init=-1)", ("linear", {"bias_init": -1.0}, "x")),
    ("linear(h_prev, diag_init=1)", ("linear", {"diag_init": 1.0}, "h_prev")),
    ("leaky_relu(a, slope=0.2)", ("leaky_relu", {"slope": 0.2}, "a")),
    ("diag(c, init=0.5) + a", ("add", ("diag", {"init": 0.5}, "c"), "a")),
    ("tanh(linear(x, h_prev, bias=False))", ("tanh", ("linear", {"bias": False}, "x", "h_prev"))),
])
def test_equation_parse_structure_and_print(text, expected):
    g = parse_h(text)
    assert tree(g, "h") == expected
    printed = format_equation(g, "h")
    back = parse_h(printed)
    assert tree(back, "h") == expected, printed
    assert canonical_hash(back) == canonical_hash(g)


@pytest.mark.parametrize("text, printed", [
    ("a - (b + c)", "a - (b + c)"),
    ("a - b + c", "a - b + c"),
    ("a * (b * c)", "a * (b * c)"),
    ("(a * b) * c", "a * b * c"),
    ("(a) + (b)", "a + b"),
    ("-a * b", "-a * b"),
    ("-(a * b)", "-(a * b)"),
    ("-(-a)", "-(-a)"),
    ("a - -b", "a - -b"),
    ("a * -1", "a * -1"),
    ("a * -2.5", "a * -2.5"),
    ("1e-3 * a", "0.001 * a"),
    ("1.0 - a", "1 - a"),
    ("linear(x, h_prev, bias=false, bias_init=1.0)", "linear(x, h_prev, bias=false, bias_init=1)"),
    ("linear(x, bias_init=0.25, bias=False)", "linear(x, bias=false, bias_init=0.25)"),  # sorted
    ("linear(x, bias=true)", "linear(x)"),
])
def test_equation_printing(text, printed):
    assert format_equation(parse_h(text), "h") == printed


@pytest.mark.parametrize("text, op, attrs", [
    ("h_prev", "identity", {}),
    ("+a", "identity", {}),
    ("-a", "neg", {}),
])
def test_whole_equation_is_one_node(text, op, attrs):
    g = parse_h(text)
    assert g["h"].op == op and dict(g["h"].attrs) == attrs


def test_constant_equation_and_unary_minus_on_constants():
    g = parse_h("a * k", extra="  k: -2\n  k2: '-(3)'\n  k3: 0.5\n")
    assert g["k"].op == "const" and g["k"].attr("value") == -2.0
    assert g["k2"].op == "const" and g["k2"].attr("value") == -3.0
    assert g["k3"].op == "const" and g["k3"].attr("value") == 0.5
    nodes = yaml.safe_load(dumps_cell(g))["nodes"]
    assert (nodes["k"], nodes["k2"], nodes["k3"]) == ("-2", "-3", "0.5")
    assert reload(g) == g


def test_auto_names_avoid_explicit_names():
    g = parse_h("tanh(a) * tanh(b)", extra="  h_tanh: sigmoid(a)\n")
    names = [n.name for n in g.nodes]
    assert len(names) == len(set(names))
    assert g["h_tanh"].op == "sigmoid"
    assert reload(g) == g


def test_shared_and_repeated_arguments_print_by_name():
    g = parse_h("a * a + linear(a, a)")
    assert format_equation(g, "h") == "a * a + linear(a, a)"
    assert reload(g) == g


# ---------------------------------------------------------------------- hashing
def test_builtin_hashes_are_distinct_except_np_and_lstm():
    hashes = {name: canonical_hash(get_cell(name)) for name in BUILTINS}
    assert hashes["np"] == hashes["lstm"]
    rest = {n: h for n, h in hashes.items() if n != "np"}
    assert len(set(rest.values())) == len(rest), rest
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes.values())


def test_hash_ignores_names_descriptions_and_node_order():
    g = get_cell("lstm")
    assert canonical_hash(replace(g, name="other", description="", source="")) == canonical_hash(g)
    assert canonical_hash(g.with_nodes(reversed(g.nodes))) == canonical_hash(g)


def test_hash_ignores_state_order_but_not_the_output():
    g = get_cell("lstm")
    assert canonical_hash(replace(g, states=("c", "h"))) == canonical_hash(g)
    assert canonical_hash(replace(g, output="c")) != canonical_hash(g)


def test_hash_sees_shared_weights():
    """`a + a` with one linear is not `linear(x) + linear(x)` (one weight matrix vs two)."""
    shared = loads_cell("states: [h]\nnodes:\n  a: linear(x, h_prev)\n  h: tanh(a + a)\n")
    separate = loads_cell("states: [h]\nnodes:\n  h: tanh(linear(x, h_prev) + linear(x, h_prev))\n")
    assert shared.param_count(8, 8) != separate.param_count(8, 8)
    assert canonical_hash(shared) != canonical_hash(separate)
    # the same for a parameter-free node between the weights and the reader
    t_shared = loads_cell("states: [h]\nnodes:\n  t: tanh(linear(x, h_prev))\n  h: t * t\n")
    t_separate = loads_cell("states: [h]\nnodes:\n  h: tanh(linear(x, h_prev)) * tanh(linear(x, h_prev))\n")
    assert canonical_hash(t_shared) != canonical_hash(t_separate)


def test_hash_of_specific_changes():
    lstm = get_cell("lstm")
    base = canonical_hash(lstm)
    assert canonical_hash(get_cell("lstm-b")) != base  # bias_init=1.0 on the forget gate
    f = lstm["f_linear"]
    for attrs in ({"bias": False}, {"bias_init": 0.0}, {"diag_init": 1.0}):
        changed = lstm.with_nodes(Node.make(n.name, n.op, n.args, attrs) if n is f else n for n in lstm.nodes)
        assert canonical_hash(changed) != base, attrs
    gru = get_cell("gru")
    h = gru["h"]
    for args in (("z", "n", "h_prev"), ("h_prev", "z", "n")):
        swapped = gru.with_nodes(replace(n, args=args) if n is h else n for n in gru.nodes)
        swapped.validate(warn=False)
        assert canonical_hash(swapped) != canonical_hash(gru), args
    sub = parse_h("a - b")
    swapped = sub.with_nodes(replace(n, args=("b", "a")) if n.name == "h" else n for n in sub.nodes)
    assert canonical_hash(swapped) != canonical_hash(sub)
    add = parse_h("a + b")
    swapped = add.with_nodes(replace(n, args=("b", "a")) if n.name == "h" else n for n in add.nodes)
    assert canonical_hash(swapped) == canonical_hash(add)


@PROPS
@given(cells(), st.builds(random.Random, st.integers(0, 2**32)))
def test_hash_invariant_under_renaming(g, rng):
    mapping = random_renaming(g, rng)
    renamed = rename_nodes(g, mapping)
    renamed.validate(warn=False)
    assert set(renamed.node_map).isdisjoint(g.node_map)
    assert canonical_hash(renamed) == canonical_hash(g)
    assert reload(renamed) == renamed


@PROPS
@given(cells(), st.builds(random.Random, st.integers(0, 2**32)))
def test_hash_invariant_under_commutative_argument_order(g, rng):
    shuffled = shuffle_commutative(g, rng, reorder_nodes=rng.random() < 0.5)
    shuffled.validate(warn=False)
    assert canonical_hash(shuffled) == canonical_hash(g)


@PROPS
@given(cells(), st.builds(random.Random, st.integers(0, 2**32)))
def test_dead_nodes_do_not_change_the_hash(g, rng):
    assert canonical_hash(without_dead(g)) == canonical_hash(g)
    more = add_dead_node(add_dead_node(g, rng), rng)
    soft = more.validate(warn=False)
    assert any("never used" in s for s in soft)
    assert canonical_hash(more) == canonical_hash(g)


_SAME_ARITY = [("tanh", "sigmoid", "relu", "leaky_relu", "identity", "neg", "one_minus", "diag"),
               ("add", "sub", "mul")]


@PROPS
@given(cells(), st.data())
def test_changing_a_live_op_changes_the_hash(g, data):
    choices = [n for n in g.nodes if n.name in g.live and any(n.op in grp for grp in _SAME_ARITY)]
    if not choices:
        return
    node = data.draw(st.sampled_from(choices))
    group = next(grp for grp in _SAME_ARITY if node.op in grp)
    op = data.draw(st.sampled_from([o for o in group if o != node.op]))
    changed = g.with_nodes(Node.make(n.name, op, n.args) if n is node else n for n in g.nodes)
    try:
        changed.validate(warn=False)
    except CellError:  # the new op breaks a reader's domain (sigmoid -> tanh under a log): not a cell
        reject()
    assert canonical_hash(changed) != canonical_hash(g)


@PROPS
@given(cells(), st.data())
def test_changing_an_attribute_changes_the_hash(g, data):
    choices = [n for n in g.nodes if n.name in g.live and n.op in ("linear", "diag", "leaky_relu")]
    if not choices:
        return
    node = data.draw(st.sampled_from(choices))
    key = {"linear": "bias_init", "diag": "init", "leaky_relu": "slope"}[node.op]
    old = node.attr(key)
    new = data.draw(st.sampled_from([v for v in (0.5, 1.0, -2.0) if v != old]))
    attrs = dict(node.attrs, **{key: new})
    changed = g.with_nodes(Node.make(n.name, n.op, n.args, attrs) if n is node else n for n in g.nodes)
    assert canonical_hash(changed) != canonical_hash(g)
    if node.op == "linear":
        flipped = dict(node.attrs, bias=not node.attr("bias"))
        changed = g.with_nodes(Node.make(n.name, n.op, n.args, flipped) if n is node else n for n in g.nodes)
        assert canonical_hash(changed) != canonical_hash(g)


@PROPS
@given(cells(min_states=2))
def test_changing_the_output_changes_the_hash_unless_symmetric(g):
    for s in g.states[1:]:
        other = replace(g, output=s)
        other.validate(warn=False)
        assert (canonical_hash(other) == canonical_hash(g)) == isomorphic(other, g)


@PROPS
@given(cells(ops=("linear", "sub", "blend", "tanh", "mul", "const", "sigmoid")), st.data())
def test_swapping_sub_or_blend_arguments_changes_the_hash_unless_symmetric(g, data):
    choices = [n for n in g.nodes if n.name in g.live and n.op in ("sub", "blend")]
    if not choices:
        return
    node = data.draw(st.sampled_from(choices))
    i, j = (0, 1) if node.op == "sub" else data.draw(st.sampled_from([(0, 1), (1, 2), (0, 2)]))
    args = list(node.args)
    args[i], args[j] = args[j], args[i]
    if args == list(node.args):
        return
    swapped = g.with_nodes(replace(n, args=tuple(args)) if n is node else n for n in g.nodes)
    swapped.validate(warn=False)
    assert (canonical_hash(swapped) == canonical_hash(g)) == isomorphic(swapped, g)


@PROPS
@given(cells(), st.builds(random.Random, st.integers(0, 2**32)), st.data())
def test_equal_hash_means_isomorphic(g, rng, data):
    """Pairs built to be isomorphic (renamed, commutative arguments and nodes reordered), half of them
    then changed in one live op: equal hashes exactly when the graphs are isomorphic, and both
    outcomes occur (two independent random cells would almost never be isomorphic)."""
    other = shuffle_commutative(rename_nodes(g, random_renaming(g, rng)), rng, reorder_nodes=True)
    other.validate(warn=False)
    choices = [n for n in other.nodes if n.name in other.live and any(n.op in grp for grp in _SAME_ARITY)]
    changed = bool(choices) and data.draw(st.booleans(), label="change one op")
    if changed:
        node = data.draw(st.sampled_from(choices))
        group = next(grp for grp in _SAME_ARITY if node.op in grp)
        op = data.draw(st.sampled_from([o for o in group if o != node.op]))
        other = other.with_nodes(Node.make(n.name, op, n.args) if n is node else n for n in other.nodes)
        try:
            other.validate(warn=False)
        except CellError:  # the new op breaks a reader's domain (sigmoid -> tanh under a log): not a cell
            reject()
    same_hash = canonical_hash(g) == canonical_hash(other)
    assert same_hash == isomorphic(g, other)
    assert same_hash != changed  # a renamed, reordered copy is the same cell; one op changed is another


# ---------------------------------------------------------------------- graph tools
def test_networkx_view_of_lstm():
    g = get_cell("lstm")
    d = to_networkx(g)
    # leaves x, h_prev, c_prev + 4 linear + 4 gate activations + 3 for c + 2 for h
    assert d.number_of_nodes() == 3 + 13 == 16
    # 4 linears read 2 leaves, 4 activations read 1, c: 2 mul (2 each) + add (2), h: tanh (1) + mul (2)
    assert d.number_of_edges() == 8 + 4 + 6 + 3 == 21
    assert nx.is_directed_acyclic_graph(d)
    assert d.nodes["c_prev"]["kind"] == "prev" and d.nodes["c_prev"]["state"] == "c"
    assert d.nodes["h"]["state"] == "h" and d.nodes["h"]["op"] == "mul"
    assert d.nodes["x"]["kind"] == "input"
    assert d.edges["f", "c_mul"]["index"] == 0 and d.edges["c_prev", "c_mul"]["index"] == 1


def test_networkx_view_of_gru_and_repeated_arguments():
    d = to_networkx(get_cell("gru"))
    assert (d.number_of_nodes(), d.number_of_edges()) == (2 + 10, 16)
    g = parse_h("a * a")
    d = to_networkx(g)
    assert d.edges["a", "h"]["index"] == (0, 1)


@FEW
@given(cells())
def test_networkx_counts_random(g):
    d = to_networkx(g)
    assert d.number_of_nodes() == len(g.leaf_kinds) + len(g.nodes)
    assert d.number_of_edges() == sum(len(set(n.args)) for n in g.nodes)
    assert {v for v, live in d.nodes(data="live") if not live} == set(g.node_map) - g.live


def test_summary_param_counts():
    s = summary(get_cell("lstm"), 128, 128)
    assert s["params"] == 4 * (128 * 128 * 2 + 128) == 131584
    assert s["linear_layers"] == 4 and s["hash"] == canonical_hash(get_cell("lstm"))
    # gru: r and z read [x, h_prev] with one bias each; n_x = linear(x), n_h = linear(h_prev)
    s = summary(get_cell("gru"), 128, 128)
    assert s["params"] == 2 * (128 * 256 + 128) + 2 * (128 * 128 + 128) == 98816
    assert s["ops"] == {"linear": 4, "sigmoid": 2, "mul": 1, "add": 1, "tanh": 1, "blend": 1}
    assert s["nodes"] == 10
    # different input size: only the x columns change
    assert summary(get_cell("lstm"), 64, 128)["params"] == 4 * (128 * 64 + 128 * 128 + 128)
    # peepholes are one diag (H scales) each
    assert summary(get_cell("vanilla"), 128, 128)["params"] == 131584 + 3 * 128
    # no biases
    assert summary(get_cell("nas"), 128, 128)["params"] == 128 * 128 * (7 * 2 + 2)


def test_summary_ignores_dead_nodes():
    g = parse_h("a * c")  # b is dead
    assert summary(g, 16, 16)["params"] == (16 * 16 * 2 + 16)
    assert summary(g, 16, 16)["nodes"] == 3  # a (linear), c (tanh), h (mul); not b
    assert g.multiply_adds(16, 16) == 16 * 32 + 16 + 16


@FEW
@given(cells(), st.sampled_from([(5, 6), (8, 8), (3, None)]))
def test_param_count_matches_cell_parameters(g, sizes):
    pytest.importorskip("torch")
    from cellsearch.compile import CellParameters

    hidden = 8
    input_size, static_size = (hidden, None) if reads_inputs_elementwise(g) else sizes
    params = CellParameters(g, input_size, hidden, static_size)
    assert g.param_count(input_size, hidden, static_size) == sum(p.numel() for p in params.parameters())


@pytest.mark.parametrize("suffix", [".png", ".svg", ".dot"])
def test_draw(tmp_path, suffix):
    out = draw(get_cell("lstm"), tmp_path / "pics" / f"lstm{suffix}")
    assert out.exists() and out.stat().st_size > 0
    if suffix == ".svg":
        assert "<svg" in out.read_text()
    if suffix == ".png":
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if suffix == ".dot":
        text = out.read_text()
        assert text.startswith('digraph "lstm"') and '"c" -> "c_prev"' in text


def test_draw_rejects_unknown_suffix(tmp_path):
    from cellsearch.errors import CellsearchError

    with pytest.raises(CellsearchError, match="png"):
        draw(get_cell("lstm"), tmp_path / "lstm.bmp")


def test_dot_marks_dead_nodes():
    g = parse_h("a * c")
    text = to_dot(g)
    assert '"b" [label=' in text and "dashed" in text


# ---------------------------------------------------------------------- the strategies themselves
def _found(strategy, predicate) -> CellGraph:
    from hypothesis import find

    return find(strategy, predicate, settings=settings(max_examples=2000, deadline=None, database=None))


@pytest.mark.slow
@pytest.mark.parametrize("feature", [
    "three_states", "static", "dead", "no_own_prev", "reads_other_prev", "reads_other_state",
    "hoistable", "elementwise_input", "const_arg", "unordered",
])
def test_strategy_covers(feature):
    def has(g: CellGraph) -> bool:
        if feature == "three_states":
            return len(g.states) == 3
        if feature == "static":
            return bool(g.static)
        if feature == "dead":
            return len(g.live) < len(g.nodes)
        if feature == "no_own_prev":
            return any(not g.depends_on(s, {prev_name(s)}) for s in g.states)
        if feature == "reads_other_prev":
            return any(g.depends_on(s, {prev_name(o)}) for s in g.states for o in g.states if o != s)
        if feature == "reads_other_state":
            return any(o in g[s].args for s in g.states for o in g.states)
        if feature == "hoistable":
            return any(n.op == "linear" and n.name in g.live and n.name not in g.recurrent_nodes() for n in g.nodes)
        if feature == "elementwise_input":
            return reads_inputs_elementwise(g)
        if feature == "const_arg":
            return any(g[a].op == "const" for n in g.nodes if n.name in g.live for a in n.args if a in g)
        if feature == "unordered":
            return list(g.order) != [n.name for n in g.nodes]
        raise AssertionError(feature)

    assert has(_found(cells(), has))


@FEW
@given(cells(elementwise_inputs=False, static=True, dead=False, shuffle=False, max_nodes=6))
def test_strategy_options(g):
    assert not reads_inputs_elementwise(g)
    g.check_sizes(5, 8, 3)  # any sizes work
    assert g.static == ("cond",) and g.output == g.states[0]
    assert g.validate(warn=False) == [] or all("input" in s for s in g.validate(warn=False))
    assert list(g.order) == [n.name for n in g.nodes]
    assert len(g.nodes) <= 6


@FEW
@given(cells(ops=("linear", "add", "tanh")))
def test_strategy_op_subset(g):
    assert {n.op for n in g.nodes} <= {"linear", "add", "tanh"}
