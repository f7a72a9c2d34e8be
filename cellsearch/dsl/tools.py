"""Graph tools: networkx view, sizes, drawing (PNG/SVG via matplotlib, DOT as text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from cellsearch.dsl.equations import format_equation, format_number
from cellsearch.dsl.graph import CellGraph, prev_name
from cellsearch.errors import CellsearchError
from cellsearch.fileio import atomic_write, save_figure

_OP_SYMBOL = {"add": "+", "sub": "−", "mul": "×", "neg": "−x", "one_minus": "1−x", "const": "",
              "sigmoid": "σ", "tanh": "tanh", "relu": "relu", "leaky_relu": "lrelu", "identity": "id",
              "linear": "W·", "blend": "blend", "diag": "p⊙"}


def to_networkx(graph: CellGraph) -> nx.DiGraph:
    """A DiGraph with one vertex per leaf and node, an edge per argument (``index`` = position).

    Vertex attributes: ``kind`` (input / static / memory / prev / op), ``op``, ``attrs``, ``state`` (for
    state nodes and their ``*_prev`` leaves) and ``live`` (whether some state depends on it).
    """
    g = nx.DiGraph(name=graph.name, output=graph.output)
    for leaf, kind in graph.leaf_kinds.items():
        attrs: dict[str, Any] = {"kind": kind, "op": None, "attrs": {}, "live": True}
        if kind == "prev":
            attrs["state"] = graph.state_of_prev(leaf)
        g.add_node(leaf, **attrs)
    for n in graph.nodes:
        g.add_node(n.name, kind="op", op=n.op, attrs=dict(n.attrs), live=n.name in graph.live,
                   state=n.name if n.name in graph.states else None)
    for n in graph.nodes:
        for i, a in enumerate(n.args):
            if g.has_edge(a, n.name):  # e.g. x * x: keep every position
                g.edges[a, n.name]["index"] = (*_as_tuple(g.edges[a, n.name]["index"]), i)
            else:
                g.add_edge(a, n.name, index=i)
    return g


def _as_tuple(v):
    return v if isinstance(v, tuple) else (v,)


def summary(graph: CellGraph, input_size: int = 128, hidden_size: int = 128,
            static_size: int | None = None) -> dict:
    """Counts a user (or the search) wants to see about a cell at given sizes."""
    from cellsearch.dsl.hashing import canonical_hash

    ops: dict[str, int] = {}
    for n in graph.nodes:
        if n.name in graph.live and n.op != "const":
            ops[n.op] = ops.get(n.op, 0) + 1
    return {
        "name": graph.name,
        "hash": canonical_hash(graph),
        "description": graph.description,
        "source": graph.source,
        "inputs": list(graph.inputs),
        "static": list(graph.static),
        "memory": list(graph.memory),
        "states": list(graph.states),
        "output": graph.output,
        "nodes": sum(ops.values()),
        "ops": ops,
        "linear_layers": ops.get("linear", 0),
        "input_size": input_size,
        "hidden_size": hidden_size,
        "params": graph.param_count(input_size, hidden_size, static_size),
        "multiply_adds_per_step": graph.multiply_adds(input_size, hidden_size, static_size),
    }


def _label(graph: CellGraph, name: str) -> str:
    node = graph.node_map[name]
    if node.op == "const":
        return format_number(node.attr("value"))
    sym = _OP_SYMBOL.get(node.op, node.op)
    extra = "".join(f"\n{k}={format_number(v) if isinstance(v, float) else v}" for k, v in node.attrs)
    if node.auto:
        return sym + extra
    return f"{name}\n{sym}{extra}"


def to_dot(graph: CellGraph) -> str:
    """Graphviz DOT text (no graphviz needed to produce it)."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [f"digraph {q(graph.name)} {{", "  rankdir=BT;", '  node [fontname="Helvetica"];']
    for leaf, kind in graph.leaf_kinds.items():
        color = {"input": "lightblue", "static": "lightyellow", "memory": "lightpink", "prev": "lightgrey"}[kind]
        lines.append(f"  {q(leaf)} [shape=box, style=filled, fillcolor={color}];")
    for n in graph.nodes:
        style = ""
        if n.name in graph.states:
            style = ", style=filled, fillcolor=palegreen, penwidth=2"
        elif n.name not in graph.live:
            style = ", style=dashed"
        shape = "box" if n.op == "linear" else "ellipse"
        lines.append(f"  {q(n.name)} [label={q(_label(graph, n.name))}, shape={shape}{style}];")
    for n in graph.nodes:
        for a in n.args:
            lines.append(f"  {q(a)} -> {q(n.name)};")
    for s in graph.states:
        lines.append(f"  {q(s)} -> {q(prev_name(s))} [style=dotted, constraint=false, label=\"t+1\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def layered_positions(graph: CellGraph) -> dict[str, tuple[float, float]]:
    """Leaves at the bottom, each node one layer above its deepest argument."""
    depth = {leaf: 0 for leaf in graph.leaf_kinds}
    for name in graph.order:
        depth[name] = 1 + max((depth[a] for a in graph.node_map[name].args), default=0)
    layers: dict[int, list[str]] = {}
    for name, d in depth.items():
        layers.setdefault(d, []).append(name)
    pos = {}
    for d, names in layers.items():
        for i, name in enumerate(names):
            pos[name] = (i - (len(names) - 1) / 2, float(d))
    return pos


def draw(graph: CellGraph, path: str | Path) -> Path:
    """Write the cell as a picture; the format follows the suffix: .png, .svg, .pdf or .dot."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg", ".pdf", ".dot", ".gv"):
        raise CellsearchError(f"cannot draw to '{path}': use a .png, .svg, .pdf or .dot file name")
    from cellsearch.limits import check_new_path

    check_new_path("the drawing", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".dot", ".gv"):
        atomic_write(path, to_dot(graph))
        return path
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    g = to_networkx(graph)
    pos = layered_positions(graph)
    width = max(6.0, 1.3 * max(sum(1 for p in pos.values() if p[1] == y) for y in {p[1] for p in pos.values()}))
    height = max(4.0, 1.1 * (1 + max(p[1] for p in pos.values())))
    fig, ax = plt.subplots(figsize=(width, height))
    colors, labels = [], {}
    for v, data in g.nodes(data=True):
        kind = data["kind"]
        if kind != "op":
            colors.append({"input": "#a6cee3", "static": "#ffff99", "memory": "#fb9a99", "prev": "#d9d9d9"}[kind])
            labels[v] = v
        else:
            colors.append("#b2df8a" if data.get("state") else ("#fdbf6f" if data["op"] == "linear" else "#ffffff"))
            labels[v] = _label(graph, v)
    nodelist = list(g.nodes)
    nx.draw_networkx_nodes(g, pos, nodelist=nodelist, node_color=colors, edgecolors="#333333",
                           node_size=1400, ax=ax)
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=12, node_size=1400,
                           connectionstyle="arc3,rad=0.05")
    nx.draw_networkx_labels(g, pos, labels=labels, font_size=7, ax=ax)
    eqs = "\n".join(f"{s} = {format_equation(graph, s)}" for s in graph.states)
    ax.set_title(f"{graph.name}\n{eqs}", fontsize=8, loc="left")
    ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, format=suffix[1:])
    plt.close(fig)
    return path
