"""Bad cells: every mistake gives a CellError that names the file, the node and the reason."""

from __future__ import annotations

import textwrap
import warnings

import pytest

from cellsearch.dsl.graph import Node
from cellsearch.dsl.io import load_cell, loads_cell
from cellsearch.errors import CellError, CellsearchError, CellWarning, SizeError

SOURCE = "bad.yaml"


def load(text: str):
    return loads_cell(textwrap.dedent(text).lstrip("\n"), source=SOURCE)


def fails(text: str, *reason: str, node: str | None = None, line: int | None = None,
          error: type[CellError] = CellError) -> CellError:
    """Load ``text``; check the error type, file, node, line and every fragment of the reason."""
    with pytest.raises(error) as info:
        load(text)
    err = info.value
    msg = str(err)
    assert isinstance(err, CellError) and isinstance(err, CellsearchError)
    assert SOURCE in msg and err.source == SOURCE, msg
    if node is not None:
        assert err.node == node and f"node '{node}'" in msg, msg
    if line is not None:
        assert err.line == line and f"{SOURCE}:{line}" in msg, msg
    for fragment in reason:
        assert fragment in msg, msg
    return err


# ---------------------------------------------------------------------- YAML
def test_yaml_syntax_error_has_line_number():
    err = fails("""
        inputs: [x
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev))
        """, "YAML syntax error", line=2)
    assert err.column is not None and f"{SOURCE}:2:{err.column}" in str(err)


def test_yaml_syntax_error_deeper_in_the_file():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev))
           bad: : :
        """, "YAML syntax error", "mapping values are not allowed", line=5)


def test_duplicate_node_names():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          a: linear(x)
          a: linear(h_prev)
          h: tanh(a)
        """, "duplicate key 'a'", "first defined on line 4", line=5)


def test_not_a_mapping():
    fails("- a\n- b\n", "must be a mapping", "got list")


def test_unknown_top_level_field():
    fails("""
        inputs: [x]
        states: [h]
        outputs: h
        nodes:
          h: tanh(linear(x, h_prev))
        """, "unknown field 'outputs'", "allowed:", line=3)


def test_nodes_must_be_a_mapping():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          - h: tanh(x)
        """, "'nodes' must be a mapping", line=3)


def test_missing_states():
    fails("""
        inputs: [x]
        nodes:
          h: tanh(linear(x))
        """, "missing field 'states'")


# ---------------------------------------------------------------------- names and ops
def test_unknown_function_with_did_you_mean():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tahn(linear(x, h_prev))
        """, "unknown function 'tahn'", "did you mean 'tanh'?", node="h", line=4)


def test_unknown_function_that_is_an_operator():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(add(linear(x), h_prev))
        """, "unknown function 'add'", "a + b", node="h", line=4)


def test_unknown_function_without_close_match_lists_known():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: softmax_v2(linear(x, h_prev))
        """, "unknown function 'softmax_v2'", "known: linear", node="h")


def test_unknown_op_in_graph_form():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          a: {op: linear, inputs: [x, h_prev]}
          h: {op: tahn, inputs: [a]}
        """, "unknown op 'tahn'", "known:", node="h", line=5)


def test_graph_form_node_without_op():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: {inputs: [x]}
        """, "needs 'op'", node="h", line=4)


def test_wrong_number_of_arguments():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(x, h_prev)
        """, "tanh() takes 1 argument(s), got 2", node="h", line=4)


def test_wrong_number_of_arguments_in_graph_form():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          z: sigmoid(linear(x, h_prev))
          h: {op: blend, inputs: [z, h_prev]}
        """, "blend() takes 3 argument(s), got 2", node="h", line=5)


def test_linear_needs_an_argument():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(linear())
        """, "linear() takes at least 1 argument(s), got 0", node="h")


def test_undefined_name_with_did_you_mean():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          g: sigmoid(linear(x))
          h: tanh(linear(x, h_prv)) * g
        """, "undefined name 'h_prv'", "did you mean 'h_prev'?", node="h", line=5)


def test_undefined_prev_of_an_undeclared_state():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev, c_prev))
        """, "undefined name 'c_prev'", "state 'c', which is not declared", node="h")


def test_cycle_inside_one_step():
    err = fails("""
        inputs: [x]
        states: [h]
        nodes:
          a: tanh(linear(x) + b)
          b: sigmoid(a)
          h: a * b * h_prev
        """, "cycle inside one step", "a -> b -> a", "_prev", node="a", line=4)
    assert "a_add" not in str(err), "the message names equations, not invented sub-expression names"


def test_state_reading_its_own_new_value():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(linear(x, h))
        """, "cycle inside one step", "h -> h", "use 'h_prev'", node="h", line=4)


def test_state_never_updated():
    fails("""
        inputs: [x]
        states: [h, c]
        output: h
        nodes:
          h: tanh(linear(x, h_prev, c_prev))
        """, "state 'c' is never updated", "add a node named 'c'", "'c_prev'", node="c", line=2)


def test_missing_output():
    fails("""
        inputs: [x]
        states: [h, c]
        nodes:
          c: linear(x, c_prev)
          h: tanh(c)
        """, "missing output", "one of h, c")


def test_single_state_is_the_output_by_default():
    g = load("""
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev))
        """)
    assert g.output == "h" and g.inputs == ("x",) and g.name == "bad"


def test_output_is_not_a_state():
    fails("""
        inputs: [x]
        states: [h]
        output: a
        nodes:
          a: linear(x, h_prev)
          h: tanh(a)
        """, "the output 'a' is not a state", "states: h")


def test_node_named_like_an_input():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          x: linear(h_prev)
          h: tanh(x)
        """, "'x' is already the name of an input", node="x", line=4)


def test_node_named_like_a_static_input():
    fails("""
        inputs: [x]
        static: [cond]
        states: [h]
        nodes:
          cond: linear(h_prev)
          h: tanh(cond + linear(x))
        """, "'cond' is already the name of a static input", node="cond", line=5)


def test_node_with_a_reserved_prev_name():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h_prev: linear(x)
          h: tanh(h_prev)
        """, "'h_prev' is reserved for the previous value of state 'h'", node="h_prev", line=4)


def test_input_with_a_reserved_prev_name():
    fails("""
        inputs: [h_prev]
        states: [h]
        nodes:
          h: tanh(linear(h_prev))
        """, "'h_prev' is reserved for the previous value of state 'h'", node="h_prev")


def test_invalid_node_name():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          2a: linear(x)
          h: tanh(linear(h_prev))
        """, "'2a' is not a valid identifier", node="2a")


# ---------------------------------------------------------------------- sizes
SIZE_CELL = """
    inputs: [x]
    states: [h]
    nodes:
      r: sigmoid(linear(x, h_prev))
      h: tanh(x + linear(r * h_prev))
    """


def _check_size_error(err: SizeError, what: str = "input 'x' has size 16"):
    msg = str(err)
    assert isinstance(err, CellError)
    assert SOURCE in msg, msg
    assert err.node == "h" and "node 'h'" in msg, msg  # the equation, not the parser's 'h_add'
    assert what in msg and "hidden size 32" in msg and "linear(x)" in msg, msg


def test_size_mismatch_check_sizes():
    g = load(SIZE_CELL)
    g.check_sizes(32, 32)  # fine when input size = hidden size
    with pytest.raises(SizeError) as info:
        g.check_sizes(16, 32)
    _check_size_error(info.value)


def test_size_mismatch_building_parameters():
    pytest.importorskip("torch")
    from cellsearch.compile import CellParameters

    g = load(SIZE_CELL)
    with pytest.raises(SizeError) as info:
        CellParameters(g, 16, 32)
    _check_size_error(info.value)
    assert sum(p.numel() for p in CellParameters(g, 32, 32).parameters()) == g.param_count(32, 32)


def test_size_mismatch_static_input():
    g = load("""
        inputs: [x]
        static: [cond]
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev) * cond)
        """)
    g.check_sizes(16, 32)  # static size defaults to hidden size
    with pytest.raises(SizeError) as info:
        g.check_sizes(16, 32, 8)
    assert SOURCE in str(info.value) and info.value.node == "h"
    assert "static 'cond' has size 8" in str(info.value)


# ---------------------------------------------------------------------- empty cells
def test_cell_without_nodes():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
        """, "the cell is empty", line=3)


def test_cell_with_empty_nodes_mapping():
    fails("""
        inputs: [x]
        states: [h]
        nodes: {}
        """, "the cell is empty")


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n"])
def test_empty_file(text):
    fails(text, "the cell is empty")


def test_empty_equation():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: ''
        """, "empty equation", node="h", line=4)


# ---------------------------------------------------------------------- syntax
@pytest.mark.parametrize("equation, reason", [
    ("x / 2", "operator '/' is not allowed"),
    ("x ** 2", "operator '**' is not allowed"),
    ("x @ h_prev", "operator '@' is not allowed"),
    ("x.y", "attribute access (a.b) is not allowed"),
    ("tanh(x).real", "attribute access (a.b) is not allowed"),
    ("x[0]", "indexing (a[i]) is not allowed"),
    ("lambda: x", "lambda is not allowed"),
    ("x if h_prev else x", "if/else is not allowed"),
    ("x < h_prev", "comparison is not allowed"),
    ("x and h_prev", "and/or is not allowed"),
    ("~x", "unary operator 'Invert' is not allowed"),
    ("tanh(*x)", "*args is not allowed"),
    ("tanh(**x)", "**kwargs is not allowed"),
    ("np.tanh(x)", "only plain function calls"),
    ("[x, h_prev]", "a list is not allowed"),
    ("'abc'", "the constant 'abc' is not allowed"),
    ("x + None", "the constant None is not allowed"),
    ("tanh(x) +", "cannot parse equation"),
    ("linear(x, true)", "'true' is only allowed as an attribute value"),
])
def test_disallowed_syntax(equation, reason):
    err = fails(f"""
        inputs: [x]
        states: [h]
        nodes:
          h: "{equation}"
        """, reason, node="h", line=4)
    assert equation in str(err), "the message quotes the equation"
    assert "internal" not in str(err)


# ---------------------------------------------------------------------- attributes
@pytest.mark.parametrize("equation, reason", [
    ("linear(x, h_prev, bias=3)", "'bias' must be true or false"),
    ("linear(x, h_prev, scale=2)", "linear() has no attribute 'scale'"),
    ("linear(x, h_prev, bias_init=true)", "'bias_init' must be a number"),
    ("linear(x, h_prev, bias_init=h_prev)", "must be a number or true/false"),
    ("linear(x, h_prev, bias_init=1e999)", "'bias_init' must be finite"),
    ("linear(x, h_prev, bias=true, bias=false)", "keyword 'bias' is given twice"),
    ("tanh(linear(x, h_prev), slope=2)", "tanh() has no attribute 'slope' (allowed: none)"),
])
def test_bad_attribute(equation, reason):
    fails(f"""
        inputs: [x]
        states: [h]
        nodes:
          h: "{equation}"
        """, reason, node="h", line=4)


def test_bad_attribute_in_graph_form():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          a: {op: linear, inputs: [x, h_prev], attrs: {bias_init: one}}
          h: {op: tanh, inputs: [a]}
        """, "'bias_init' must be a number", node="a", line=4)


def test_diag_init_needs_square_weights():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev, diag_init=1.0))
        """, "diag_init", "'x' is an input", node="h", line=4)


# ---------------------------------------------------------------------- constants
def test_linear_of_a_constant():
    err = fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(linear(1, h_prev))
        """, "linear() needs vectors as arguments", "1 is a constant", node="h", line=4)
    assert "h_const" not in str(err)


def test_linear_of_a_constant_node():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          k: 2
          h: tanh(linear(k, h_prev))
        """, "linear() needs vectors as arguments", "'k' is a constant", node="h", line=5)


def test_node_that_only_combines_constants():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          k: 1 + 2
          h: tanh(linear(x, h_prev)) * k
        """, "reads no input and no state", "only combines constants", node="k", line=4)


def test_sub_expression_that_only_combines_constants():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: tanh(linear(x, h_prev)) * sigmoid(1)
        """, "only combines constants", node="h", line=4)


def test_state_that_is_a_constant():
    fails("""
        inputs: [x]
        states: [h]
        nodes:
          h: 1
        """, "state 'h' is a constant", node="h", line=4)


# ---------------------------------------------------------------------- warnings, not errors
def test_unused_node_warns_and_loads():
    text = """
        inputs: [x]
        states: [h]
        nodes:
          unused: sigmoid(linear(x, h_prev))
          h: tanh(linear(x, h_prev))
        """
    with pytest.warns(CellWarning, match="node 'unused' is never used"):
        g = load(text)
    assert "unused" in g and "unused" not in g.live
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = loads_cell(textwrap.dedent(text), source=SOURCE, warn=False)
    assert quiet == g
    assert g.validate(warn=False) == ["node 'unused' is never used by any state"]


def test_unused_input_warns():
    with pytest.warns(CellWarning, match="input 'cond' is never used"):
        load("""
            inputs: [x]
            static: [cond]
            states: [h]
            nodes:
              h: tanh(linear(x, h_prev))
            """)


def test_cell_warning_is_a_warning_not_an_error():
    assert issubclass(CellWarning, UserWarning) and not issubclass(CellWarning, CellsearchError)
    assert issubclass(SizeError, CellError) and issubclass(CellError, ValueError)


# ---------------------------------------------------------------------- files and direct API
def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(CellError, match="no such file") as info:
        load_cell(path)
    assert str(path) in str(info.value)


def test_error_in_a_file_names_the_path(tmp_path):
    path = tmp_path / "cell.yaml"
    path.write_text("inputs: [x]\nstates: [h]\nnodes:\n  h: tanh(lineer(x, h_prev))\n")
    with pytest.raises(CellError) as info:
        load_cell(path)
    assert f"{path}:4" in str(info.value) and "did you mean 'linear'?" in str(info.value)


def test_node_make_rejects_unknown_op_and_attrs():
    with pytest.raises(CellError, match="unknown op 'tahn'"):
        Node.make("a", "tahn", ["x"])
    with pytest.raises(CellError, match="no attribute 'bogus'"):
        Node.make("a", "linear", ["x"], {"bogus": 1})
