"""The dag space's memory components and attention hops: every decision tuple decodes to a valid cell
that compiles, runs and matches the interpreter, encodes back to itself, and bad fields get one line."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cellsearch.compile import CompiledCell
from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.errors import ConfigError
from cellsearch.spaces import load_space
from cellsearch.spaces.components import COMPONENT_NAMES, COMPONENTS, READ
from cellsearch.spaces.dag import DagSpace

I, H = 6, 4


def _space(**extra) -> DagSpace:
    return DagSpace("mem", nodes=3, activations=["tanh", "sigmoid"], **extra)


FULL = dict(attention=["dot", "additive"], hops=3, memory=list(COMPONENT_NAMES))


def test_decisions_follow_the_dag_ones_in_order():
    names = [d.name for d in _space(**FULL).decisions()]
    assert names[-2:] == ["attention", "memory"]
    assert _space(**FULL).decisions()[-2].choices == ("none", "dot", "dot*2", "dot*3", "additive", "additive*2",
                                                      "additive*3")
    assert _space(**FULL).decisions()[-1].choices == ("none", *COMPONENT_NAMES)
    assert [d.name for d in _space(memory=["ntm"]).decisions()][-1] == "memory"
    assert _space(attention=["dot"]).decisions()[-1].choices == ("none", "dot")  # hops 1: one reading


@pytest.mark.parametrize("component", COMPONENT_NAMES)
def test_a_component_adds_its_states_and_node0_reads_it(component):
    space = _space(memory=[component])
    graph = space.decode((0, 0, 0, 0, 0, 1))
    spec = COMPONENTS[component]
    assert graph.states == ("h", *spec.states)
    assert graph.memory_states == spec.memory_states
    # node0 = act(linear(x, mem_read, h_prev))
    assert any(n.op == "linear" and {"x", READ, "h_prev"} == set(n.args) for n in graph.nodes)
    plain = space.decode((0, 0, 0, 0, 0, 0))
    assert plain.states == ("h",) and not plain.memory_states


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_hops_read_the_memory_that_many_times(hops):
    space = _space(attention=["general"], hops=3)
    graph = space.decode((0, 0, 0, 0, 0, hops))  # ("none", "general", "general*2", "general*3")
    attends = [n for n in graph.nodes if n.op == "attend"]
    assert len(attends) == hops
    # each later hop's query is the previous query plus the previous hop's context
    query = "h_prev"
    for node in attends[:-1]:
        assert node.args[0] == query
        adds = [n for n in graph.nodes if n.op == "add" and set(n.args) == {query, node.name}]
        assert len(adds) == 1
        query = adds[0].name
    assert graph["ctx"].args[0] == query


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_every_choice_decodes_encodes_back_and_matches_the_interpreter(data):
    space = _space(**FULL)
    choices = tuple(data.draw(st.integers(0, len(d) - 1)) for d in space.decisions())
    graph = space.decode(choices)
    back = space.encode(graph)
    assert back is not None and space.decode(back).name == graph.name
    torch.manual_seed(0)
    compiled = CompiledCell(graph, I, H).double()
    oracle = InterpretedCell(graph, I, H, params=compiled.params).double()
    x = torch.randn(3, 2, I, dtype=torch.float64)
    memory = tuple(torch.randn(2, 5, H, dtype=torch.float64) for _ in graph.memory)
    out, states = compiled(x, None, None, memory)
    ref, ref_states = oracle(x, None, None, memory)
    torch.testing.assert_close(out, ref)
    for s, r in zip(states, ref_states):
        torch.testing.assert_close(s, r)


def test_every_attention_choice_gives_another_cell():
    space = _space(attention=["dot", "general"], hops=3, memory=["ntm"])
    cells = {space.decode((0, 0, 0, 0, 0, a, 1)).name for a in range(len(space.decisions()[-2]))}
    assert len(cells) == 1 + 2 * 3  # no attention, or one of two kinds in 1, 2 or 3 hops


def test_encode_refuses_cells_of_other_spaces():
    with_memory = _space(memory=list(COMPONENT_NAMES)).decode((0, 0, 0, 0, 0, 1))
    assert _space().encode(with_memory) is None  # a space without components cannot hold it
    deep = _space(attention=["dot"], hops=3).decode((0, 0, 0, 0, 0, 3))
    assert _space(attention=["dot"], hops=2).encode(deep) is None  # three hops, at most two offered
    assert _space(attention=["dot"], hops=3).encode(deep) is not None


@pytest.mark.parametrize("field, value, message", [
    ("memory", ["tape"], "memory component"),
    ("memory", ["ntm", "ntm"], "ntm"),
    ("hops", 0, "between 1 and 8"),
    ("hops", 9, "between 1 and 8"),
])
def test_bad_fields_get_one_line(tmp_path, field, value, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"kind": "dag", "nodes": 3, "attention": ["dot"], field: value}))
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    text = str(err.value)
    assert "\n" not in text and field in text and message in text


def test_hops_without_attention_are_refused_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: dag\nnodes: 3\nhops: 2\n")
    with pytest.raises(ConfigError, match="field 'hops': needs attention kinds") as err:
        load_space(str(path))
    assert "\n" not in str(err.value)


def test_component_spaces_enumerate_distinct_cells():
    space = DagSpace("tiny", nodes=2, activations=["tanh"], memory=list(COMPONENT_NAMES))
    cells = space.distinct_cells()
    # two dag cells (h = node1, or ...) times (none + each component), all distinct
    plain = DagSpace("tiny", nodes=2, activations=["tanh"]).distinct_cells()
    assert len(cells) == len(plain) * (1 + len(COMPONENT_NAMES))
    assert len({g.name for _, g in cells.values()}) == len(cells)
