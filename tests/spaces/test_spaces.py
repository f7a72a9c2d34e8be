"""Search spaces: thousands of samples per shipped space are valid, compile and (a subset) run;
mutation chains, determinism, decision layouts, encode/decode round trips, the NAS cell in the
tree space, the Greff space, and one-line ConfigErrors for bad YAML.

Sizes are tiny (input 6, hidden 4) so the compile checks, the expensive part, stay cheap.
"""

from __future__ import annotations

import random
import re

import pytest
import torch

from cellsearch.compile import CompiledCell
from cellsearch.dsl.graph import CellGraph
from cellsearch.dsl.hashing import canonical_hash
from cellsearch.errors import ConfigError
from cellsearch.library import get_cell
from cellsearch.spaces import (SPACE_NAMES, Candidate, Decision, InvalidCandidate, Space, list_spaces,
                               load_space)
from cellsearch.spaces.base import check_cell
from cellsearch.spaces.common import check_useful, elementwise_input_uses
from tests.support.paths import REPO

I, H = 6, 4  # input size != hidden size

# Samples per shipped space (the greff space has nine cells; its samples repeat them).
SAMPLES = {"nas_rl": 1000, "mutation": 1500, "mutation1": 300, "dag": 1000, "dag4": 300, "attention": 300,
           "memory": 300, "memory_attention": 300, "nasbench_nlp": 1500, "greff": 300}
# Fraction of distinct cells expected among the samples (graph cells are small after pruning).
# (dag4 has only 246 cells, so its samples repeat them)
DISTINCT = {"nas_rl": 0.99, "mutation": 0.8, "mutation1": 0.2, "dag": 0.99, "dag4": 0.4, "attention": 0.5,
            "memory": 0.5, "memory_attention": 0.6, "nasbench_nlp": 0.7, "greff": 0.0}
RUN_SUBSET = 50

# Decision layouts of the shipped spaces: (count, first names, last names).
LAYOUTS = {
    "nas_rl": (34, ["leaf0.combine", "leaf0.activation", "leaf1.combine"],
               ["node3_0.activation", "memory.inject_node", "memory.inject_combine",
                "memory.inject_activation", "memory.cell_node"]),
    "mutation": (17, ["seed", "step0.mutation", "step0.target", "step0.arg_a", "step0.arg_b"],
                 ["step3.mutation", "step3.target", "step3.arg_a", "step3.arg_b"]),
    "mutation1": (5, ["seed", "step0.mutation", "step0.target"], ["step0.arg_a", "step0.arg_b"]),
    "dag": (15, ["node0.activation", "node1.input", "node1.activation", "node2.input"],
            ["node7.input", "node7.activation"]),
    "dag4": (7, ["node0.activation", "node1.input", "node1.activation", "node2.input"],
             ["node3.input", "node3.activation"]),
    "attention": (8, ["node0.activation", "node1.input", "node1.activation", "node2.input"],
                  ["node3.input", "node3.activation", "attention"]),
    "memory": (8, ["node0.activation", "node1.input", "node1.activation", "node2.input"],
               ["node3.input", "node3.activation", "memory"]),
    "memory_attention": (9, ["node0.activation", "node1.input", "node1.activation", "node2.input"],
                         ["node3.activation", "attention", "memory"]),
    "nasbench_nlp": (64, ["states", "nodes", "node0.op", "node0.linear_inputs", "node0.input0",
                          "node0.input1", "node0.input2", "node1.op"],
                     ["node11.input2", "state1.node", "state2.node"]),
    "greff": (1, ["cell"], ["cell"]),
}
GREFF = ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")


@pytest.fixture(scope="module")
def spaces() -> dict[str, Space]:
    return {name: load_space(name) for name in SPACE_NAMES}


def _run(graph: CellGraph, input_size: int) -> None:
    torch.manual_seed(0)
    cell = CompiledCell(graph, input_size, H)
    x = torch.randn(3, 2, input_size)
    memory = tuple(torch.randn(2, 4, H) for _ in graph.memory)  # (an attention space's encoder outputs)
    out, states = cell(x, None, None, memory)
    assert out.shape == (3, 2, H)
    assert len(states) == len(graph.states)
    assert torch.isfinite(out).all()
    out.sum().backward()


# ---------------------------------------------------------------------- sampling
@pytest.mark.slow
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_samples_are_valid_compile_and_run(spaces, name, monkeypatch):
    import cellsearch.spaces.common as common

    # Every generated cell goes through check_cell (validation + code generation) inside the
    # space; record what was compiled, and at which sizes, instead of compiling it twice.
    compiled: dict[str, tuple[int, int]] = {}
    real_check = common.check_cell

    def recording_check(graph, input_size=8, hidden_size=8):
        out = real_check(graph, input_size, hidden_size)
        compiled[canonical_hash(graph)] = (input_size, hidden_size)
        return out

    monkeypatch.setattr(common, "check_cell", recording_check)
    space = spaces[name]
    rng = random.Random(1234)
    n_dims = [len(d) for d in space.decisions()]
    checked: set[str] = set()
    runs = 0
    for _ in range(SAMPLES[name]):
        cand = space.sample(rng)
        g = cand.graph
        assert isinstance(cand, Candidate) and cand.origin == "sample"
        assert cand.decisions is not None and len(cand.decisions) == len(n_dims)
        assert all(0 <= c < n for c, n in zip(cand.decisions, n_dims))
        h = cand.hash
        if h in checked:
            continue
        checked.add(h)
        g.validate(warn=False)
        check_useful(g)
        assert not set(g.node_map) - g.live, "dead nodes left in a generated cell"
        # Every shipped space promises input size != hidden size (the mutation seeds are LSTM/GRU).
        g.check_sizes(I, H)
        if name != "greff":  # the greff members are compiled once, when the space is built
            assert compiled.get(h) == (I, H), "the space returned a cell it did not compile"
        if runs < RUN_SUBSET:
            check_cell(g, I, H)
            _run(g, I)
            runs += 1
    if name == "greff":
        assert len(checked) == 9
    else:
        assert len(checked) > SAMPLES[name] * DISTINCT[name]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sampling_is_reproducible_from_the_rng(spaces, name):
    space = spaces[name]
    a = [space.sample(random.Random(7)).hash for _ in range(3)]
    b = [space.sample(random.Random(7)).hash for _ in range(3)]
    assert a == b
    rng1, rng2 = random.Random(3), random.Random(3)
    assert [space.sample(rng1).hash for _ in range(5)] == [space.sample(rng2).hash for _ in range(5)]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_decode_is_deterministic(spaces, name):
    space = spaces[name]
    rng = random.Random(5)
    done = 0
    while done < 30:
        choices = space.random_decisions(rng)
        try:
            first = space.decode(choices)
        except InvalidCandidate:
            with pytest.raises(InvalidCandidate):
                space.decode(choices)
            continue
        second = load_space(name).decode(choices)  # a fresh space object, too
        assert first == second
        assert canonical_hash(first) == canonical_hash(second)
        done += 1


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_decision_names_and_counts_are_stable(spaces, name):
    count, first, last = LAYOUTS[name]
    dims = spaces[name].decisions()
    names = [d.name for d in dims]
    assert len(dims) == count
    assert names[:len(first)] == first
    assert names[-len(last):] == last
    assert len(set(names)) == len(names)
    assert all(isinstance(d, Decision) and len(d) >= 1 for d in dims)
    assert [d.name for d in load_space(name).decisions()] == names


def test_decision_choices_of_shipped_spaces(spaces):
    tree = {d.name: d for d in spaces["nas_rl"].decisions()}
    assert tree["leaf3.combine"].choices == ("add", "mul")
    assert tree["node1_0.activation"].choices == ("identity", "tanh", "sigmoid", "relu")
    assert len(tree["memory.inject_node"]) == 15 and len(tree["memory.cell_node"]) == 15
    dag = {d.name: d for d in spaces["dag"].decisions()}
    assert dag["node3.input"].choices == ("node0", "node1", "node2")
    mut = {d.name: d for d in spaces["mutation"].decisions()}
    assert mut["seed"].choices == ("lstm", "gru")
    assert len(mut["step0.target"]) == 64
    assert "replace_by_add" in mut["step0.mutation"].choices
    graph = {d.name: d for d in spaces["nasbench_nlp"].decisions()}
    assert graph["states"].choices == ("1", "2", "3")
    assert graph["node2.input0"].choices == ("x", "h0_prev", "h1_prev", "h2_prev", "node0", "node1")


def test_wrong_decisions_are_rejected(spaces):
    for name in SPACE_NAMES:
        space = spaces[name]
        with pytest.raises(InvalidCandidate):
            space.decode([0] * (len(space.decisions()) + 1))
        bad = [0] * len(space.decisions())
        bad[0] = len(space.decisions()[0])  # one past the last choice
        with pytest.raises(InvalidCandidate):
            space.decode(bad)


# ---------------------------------------------------------------------- encode
@pytest.mark.parametrize("name", ["nas_rl", "dag", "greff"])
def test_encode_decode_round_trip(spaces, name):
    space = spaces[name]
    rng = random.Random(11)
    for _ in range(100):
        cand = space.sample(rng)
        choices = space.encode(cand.graph)
        assert choices is not None
        assert canonical_hash(space.decode(choices)) == cand.hash


def test_encode_is_none_outside_the_space(spaces):
    assert spaces["nas_rl"].encode(get_cell("lstm")) is None
    assert spaces["dag"].encode(get_cell("gru")) is None
    assert spaces["greff"].encode(get_cell("gru")) is None
    assert spaces["mutation"].encode(get_cell("lstm")) is None  # no encode for grown cells


def test_tree_space_reproduces_the_nas_cell(spaces):
    space = spaces["nas_rl"]
    choices = space.nas_cell_decisions()
    graph = space.decode(choices)
    assert canonical_hash(graph) == canonical_hash(get_cell("nas"))
    assert space.encode(get_cell("nas")) == choices
    pick = {d.name: d.choices[c] for d, c in zip(space.decisions(), choices)}
    assert pick["leaf3.combine"] == "mul" and pick["memory.inject_node"] == "node1_0"
    assert pick["memory.cell_node"] == "node2_0"


def test_tree_space_without_memory_and_small():
    space = load_space({"kind": "tree", "leaves": 2, "memory": False, "bias": True})
    assert [d.name for d in space.decisions()] == ["leaf0.combine", "leaf0.activation", "leaf1.combine",
                                                   "leaf1.activation", "node1_0.combine", "node1_0.activation"]
    rng = random.Random(0)
    for _ in range(30):
        g = space.sample(rng).graph
        assert g.states == ("h",)
        assert space.encode(g) is not None
    # every leaf add + identity: h = linear(x, h_prev) + linear(x, h_prev)
    g = space.decode([0, 0, 0, 0, 0, 0])
    assert [n.op for n in g.nodes if n.name in g.live].count("linear") == 2


# ---------------------------------------------------------------------- mutation
@pytest.mark.parametrize("seed_name", ["lstm", "gru"])
def test_mutation_chains_stay_valid_and_change_the_hash(spaces, seed_name):
    space = spaces["mutation"]
    seed = next(g for g in space.seeds() if g.name == seed_name)
    rng = random.Random(99)
    cand = Candidate(seed, origin="seed")
    seen_kinds: set[str] = set()
    for _ in range(200):
        child = space.mutate(cand, rng)
        assert child.origin == "mutation" and child.parent == cand.hash
        assert child.hash != cand.hash
        g = child.graph
        g.validate(warn=False)
        check_useful(g)
        g.check_sizes(I, H)
        assert len(g.nodes) <= space.max_nodes
        seen_kinds.update(t if not t.startswith("replace_by_") or t == "replace_by_ancestor"
                          else "replace_by_combination" for t in child.info["transformations"])
        cand = child
    _run(cand.graph, I)
    assert seen_kinds == {"replace_activation", "swap_op", "insert_activation", "remove_node",
                          "replace_by_ancestor", "replace_by_combination"}


def test_mutation_space_seeds_and_paper_activations(spaces):
    space = spaces["mutation"]
    assert [g.name for g in space.seeds()] == ["lstm", "gru"]
    assert [canonical_hash(g) for g in space.seeds()] == [canonical_hash(get_cell("lstm")),
                                                          canonical_hash(get_cell("gru"))]
    # Linear(a, x) appears as linear(arg, diag_init=a) on hidden-sized arguments only
    rng = random.Random(4)
    diag = set()
    for _ in range(300):
        g = space.sample(rng).graph
        for n in g.nodes:
            if n.op == "linear" and n.attr("diag_init") is not None:
                diag.add(n.attr("diag_init"))
                assert not set(n.args) & set(g.inputs)
    assert diag == {0.0, 1.0, 0.9, 1.1}


def test_mutation_space_keeps_but_never_adds_elementwise_input():
    space = load_space({"kind": "mutation", "seeds": ["mut1", "gru"], "rate": "one_to_three",
                        "decision_steps": 6})
    mut1 = space.seeds()[0]
    base = elementwise_input_uses(mut1)
    assert base > 0  # MUT1 reads tanh(x): input size must equal hidden size
    rng = random.Random(8)
    cand = Candidate(mut1, origin="seed")
    for _ in range(40):
        cand = space.mutate(cand, rng)
        assert elementwise_input_uses(cand.graph) <= base
        check_cell(cand.graph, H, H)
    for _ in range(100):
        c = space.sample(rng)
        if c.decisions[0] == 1:  # grown from GRU: any input size
            c.graph.check_sizes(I, H)
        else:
            assert elementwise_input_uses(c.graph) <= base


def test_mutation_step_decisions_apply_in_order(spaces):
    space = spaces["mutation"]
    labels = space.step_labels
    steps = [(labels.index("swap_op"), 0, 0, 0), (labels.index("insert_activation"), 3, 1, 0),
             (labels.index("remove_node"), 5, 0, 0), (labels.index("replace_by_mul"), 7, 2, 9)]
    graph = get_cell("lstm")
    for label, target, a, b in steps:  # what decode does, step by step
        try:
            graph = space.apply(graph, labels[label], target, a, b)
        except InvalidCandidate:
            pass
    decoded = space.decode([0, *(c for step in steps for c in step)])
    assert canonical_hash(decoded) == canonical_hash(graph) != canonical_hash(get_cell("lstm"))
    one = space.apply(get_cell("lstm"), "insert_activation", 3, 1)
    assert len(one.nodes) == len(get_cell("lstm").nodes) + 1  # the inserted activation
    # without steps, decoding gives the seed itself
    g0 = load_space({"kind": "mutation", "decision_steps": 0}).decode([1])
    assert canonical_hash(g0) == canonical_hash(get_cell("gru"))


# ---------------------------------------------------------------------- finite / greff
def test_greff_space_is_exactly_the_nine_variants(spaces):
    space = spaces["greff"]
    assert [d.name for d in space.decisions()] == ["cell"]
    assert space.decisions()[0].choices == GREFF
    assert {canonical_hash(g) for g in space.seeds()} == {canonical_hash(get_cell(n)) for n in GREFF}
    assert len(space.seeds()) == 9
    for i, name in enumerate(GREFF):
        assert space.encode(get_cell(name)) == (i,)
        assert canonical_hash(space.decode([i])) == canonical_hash(get_cell(name))
    rng = random.Random(0)
    cand = Candidate(get_cell("cifg"), decisions=(7,))
    for _ in range(20):
        child = space.mutate(cand, rng)
        assert child.hash != cand.hash and child.decisions is not None
        cand = child


def test_other_spaces_have_no_seeds(spaces):
    assert spaces["nas_rl"].seeds() == [] and spaces["dag"].seeds() == [] and spaces["nasbench_nlp"].seeds() == []


def test_default_mutation_changes_decisions(spaces):
    for name in ("nas_rl", "dag", "nasbench_nlp"):
        space = spaces[name]
        rng = random.Random(2)
        cand = space.sample(rng)
        for _ in range(20):
            child = space.mutate(cand, rng)
            assert child.hash != cand.hash
            cand = child


# ---------------------------------------------------------------------- loading and config errors
def test_list_spaces_and_load_by_name_path_and_dict(tmp_path):
    listed = list_spaces()
    assert list(listed) == list(SPACE_NAMES)
    assert all(isinstance(v, str) and v for v in listed.values())
    for name in SPACE_NAMES:
        assert load_space(name).name == name
        assert load_space(REPO / "search_spaces" / f"{name}.yaml").kind == load_space(name).kind
    space = load_space({"kind": "dag", "nodes": 3, "activations": ["tanh"]})
    assert len(space.decisions()) == 5 and space.name == "custom"
    cell = tmp_path / "cells" / "mycell.yaml"
    cell.parent.mkdir()
    cell.write_text("name: mycell\nstates: [h]\nnodes:\n  h: tanh(linear(x, h_prev))\n")
    f = tmp_path / "mine.yaml"
    f.write_text("kind: finite\ncells: [lstm, cells/mycell.yaml]\n")
    space = load_space(f)
    assert space.name == "mine" and space.decisions()[0].choices == ("lstm", "mycell")
    with pytest.raises(ConfigError, match="unknown search space 'dagg'.*did you mean 'dag'"):
        load_space("dagg")
    with pytest.raises(ConfigError, match="no such file"):
        load_space(tmp_path / "missing.yaml")


def test_every_shipped_space_loads_from_the_installed_package_data():
    """search_spaces/ is the one copy of the shipped spaces; the package installs it as the package
    data of cellsearch.spaces.builtin (editable or not), which is where load_space reads them."""
    from importlib import resources

    from cellsearch.spaces.registry import SHIPPED_PACKAGE, shipped_text

    try:
        installed = resources.files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        pytest.fail(f"{SHIPPED_PACKAGE} is not installed: reinstall the package (pip install -e .)")
    names = sorted(p.name for p in installed.iterdir() if p.name.endswith(".yaml"))
    assert names == sorted(f"{n}.yaml" for n in SPACE_NAMES)
    assert sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml")) == names
    assert not (REPO / "cellsearch" / "spaces" / "builtin").exists(), "a second copy of the shipped spaces"
    for name in SPACE_NAMES:
        text = installed.joinpath(f"{name}.yaml").read_text(encoding="utf-8")
        assert shipped_text(name) == text
        space = load_space(name)
        assert space.name == name and space.decisions()


def test_pyproject_lists_every_package():
    """pyproject.toml lists the packages (cellsearch.spaces.builtin maps to search_spaces/, which
    packages.find cannot discover): a package missing from the list would be missing from a wheel."""
    tomllib = pytest.importorskip("tomllib")
    setuptools_cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = {"cellsearch"}
    for d in (REPO / "cellsearch").rglob("*"):
        parts = d.relative_to(REPO).parts
        if d.is_dir() and not any(p == "__pycache__" or p.startswith(".") for p in parts) \
                and any(f.is_file() for f in d.iterdir()):
            found.add(".".join(parts))
    assert set(setuptools_cfg["packages"]) == found | {"cellsearch.spaces.builtin"}
    assert setuptools_cfg["package-dir"] == {"cellsearch.spaces.builtin": "search_spaces"}


def test_shipped_files_comment_every_field():
    for name in SPACE_NAMES:
        lines = (REPO / "search_spaces" / f"{name}.yaml").read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith((" ", "#")):
                field = line.split(":")[0]
                assert any(c.startswith("#") and re.search(rf"\b{field}\b", c) for c in lines[:i]), \
                    f"{name}.yaml: field '{field}' is not explained in a comment above it"


BAD_CONFIGS = [
    ("kind: graph\nops: [linear, lineer, add]\n", "field 'ops[1]': unknown op 'lineer'"),
    ("kind: tree\nactivations: [identity, tanh, tanhh]\n", "field 'activations[2]': unknown activation 'tanhh'"),
    ("kind: mutation\nactivations: [tanh, linearx]\n", "field 'activations[1]': unknown activation 'linearx'"),
    ("kind: graph\nmin_nodes: 8\nmax_nodes: 4\n", "field 'min_nodes': must not be greater than max_nodes"),
    ("kind: graph\nmin_states: 3\nmax_states: 2\n", "field 'min_states': must not be greater than max_states"),
    ("kind: dag\nnodes: 0\n", "field 'nodes': must be between 2 and 64"),
    ("kind: tree\nleaves: 6\n", "field 'leaves': must be a power of two"),
    ("kind: dag\nnodes: 4\ncolour: red\n", "field 'colour': unknown field"),
    ("kind: trees\n", "field 'kind': unknown kind 'trees'"),
    ("nodes: 3\n", "field 'kind': missing"),
    ("kind: mutation\nseeds: [lstm, grue]\n", "field 'seeds[1]': unknown cell 'grue'"),
    ("kind: finite\ncells: [vanilla, nope]\n", "field 'cells[1]': unknown cell 'nope'"),
    ("kind: finite\ncells: []\n", "field 'cells': must list at least one cell"),
    ("kind: graph\nops: [add, mul]\n", "field 'ops': must include 'linear'"),
    ("kind: dag\nnodes: '8'\n", "field 'nodes': input should be a valid integer"),
    ("kind: mutation\nmax_nodes: 5\n", "field 'seeds[0]': cell 'lstm' has 13 nodes, more than max_nodes"),
    ("kind: dag\nnodes: 4\nactivations: [tanh\n  relu: 3\n", "my.yaml:4: YAML syntax error: "),
    ("kind: dag\nnodes: 4\nnodes: 5\n", "my.yaml:3: YAML syntax error: duplicate key 'nodes'"),
    ("- 1\n", "must be a mapping"),
]


@pytest.mark.parametrize("text,expected", BAD_CONFIGS, ids=[e[:30] for _, e in BAD_CONFIGS])
def test_config_errors_are_one_line_naming_the_file_and_field(tmp_path, text, expected):
    f = tmp_path / "my.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_space(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(f))
    assert expected in msg, msg


def test_dict_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^<config>: field 'nodes': must be between 2 and 64"):
        load_space({"kind": "dag", "nodes": 65})


def test_space_classes_validate_their_options():
    from cellsearch.spaces.dag import DagSpace

    assert len(DagSpace(nodes=3).decisions()) == 5
    with pytest.raises(ConfigError, match="field 'nodes'"):
        DagSpace(nodes=1)


def test_graph_space_cells_are_nasbench_recipes(spaces):
    from cellsearch.dsl.nasbench import cell_to_recipe, recipe_to_cell

    rng = random.Random(21)
    for _ in range(50):
        g = spaces["nasbench_nlp"].sample(rng).graph
        assert g.output == "h0" and g.states == tuple(f"h{i}" for i in range(len(g.states)))
        assert canonical_hash(recipe_to_cell(cell_to_recipe(g), "r")) == canonical_hash(g)


def test_mutation_rate_decisions_keeps_evolution_among_the_decoded_cells():
    space = load_space("mutation1")
    decoded = set(space.distinct_cells())
    rng = random.Random(5)
    parents = [Candidate(g, origin="seed") for g in space.seeds()]
    for _ in range(60):
        child = space.mutate(rng.choice(parents), rng)
        assert child.hash in decoded and child.decisions is not None and child.hash != child.parent
        assert canonical_hash(space.decode(child.decisions)) == child.hash
        parents.append(child)
    assert sum(c.decisions[0] == 1 for c in parents[2:]) > 0 < sum(c.decisions[0] == 0 for c in parents[2:])
    stranger = Candidate(get_cell("mut2"), origin="seed")  # neither decoded nor a seed
    with pytest.raises(InvalidCandidate, match="not decoded from decisions and is not a seed"):
        space.mutate(stranger, rng)


def test_mutation_rate_decisions_is_listed_and_others_are_refused():
    assert load_space({"kind": "mutation", "rate": "decisions", "decision_steps": 1}).rate == "decisions"
    with pytest.raises(ConfigError, match="rate"):
        load_space({"kind": "mutation", "rate": "sometimes"})
