"""Reading and writing cells as YAML, in equation form or plain graph form.

Equation form (what people write)::

    name: gru
    inputs: [x]
    states: [h]
    output: h
    nodes:
      r: sigmoid(linear(x, h_prev))
      ...

Graph form (what the search produces; one mapping per node)::

    nodes:
      r: {op: sigmoid, inputs: [r_linear]}
      r_linear: {op: linear, inputs: [x, h_prev], attrs: {bias_init: 1.0}}

Both load to the same ``CellGraph``; ``cell_to_dict(g, form=...)`` writes either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from cellsearch.dsl.equations import format_equation, inlined_nodes, parse_equation
from cellsearch.dsl.graph import CellGraph, Node
from cellsearch.errors import CellError

CELL_FIELDS = ("name", "description", "source", "inputs", "static", "states", "output", "nodes")
NODE_FIELDS = ("op", "inputs", "attrs")


# ---------------------------------------------------------------------- YAML with line numbers
class _LineLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and remembers the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    lines: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(None, None, f"unsupported key {key!r}", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first defined on line {lines[key]})", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=deep)
        lines[key] = key_node.start_mark.line + 1
    loader._lines[id(out)] = lines
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str) -> tuple[Any, dict[int, dict]]:
    """Parse YAML; return (data, {id(mapping): {key: line}}). Errors become CellError with a line."""
    loader = _LineLoader(text)
    loader._lines = {}
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or str(exc)
        raise CellError(f"YAML syntax error: {problem}", source=source, line=line, column=col) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise CellError(f"YAML syntax error: {exc}", source=source) from None
    finally:
        loader.dispose()
    return data, loader._lines


class _Flow(list):
    pass


class _FlowMap(dict):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_Dumper.add_representer(_FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(),
                                                                   flow_style=True))


def dump_yaml(data: Any) -> str:
    def wrap(v: Any, depth: int = 0) -> Any:
        if isinstance(v, dict):
            inner = {k: wrap(x, depth + 1) for k, x in v.items()}
            return _FlowMap(inner) if depth >= 2 else inner
        if isinstance(v, (list, tuple)):
            return _Flow(wrap(x, depth + 1) for x in v)
        return v

    return yaml.dump(wrap(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


# ---------------------------------------------------------------------- dict ↔ graph
def _names(value: Any, field: str, source: str | None, line: int | None, required: bool) -> tuple[str, ...]:
    if value is None:
        if required:
            raise CellError(f"missing field '{field}' (a list of names, e.g. {field}: [x])", source=source)
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CellError(f"field '{field}' must be a list of names, got {value!r}", source=source, line=line)
    return tuple(value)


def cell_from_dict(data: Any, source: str | None = None, lines: dict[int, dict] | None = None,
                   *, warn: bool = True) -> CellGraph:
    """Build and validate a cell from its YAML mapping (either form, or a mix)."""
    lines = lines or {}
    if data is None:
        raise CellError("the cell is empty (expected a mapping with name, inputs, states, output, nodes)",
                        source=source)
    if not isinstance(data, dict):
        raise CellError(f"a cell must be a mapping with name, inputs, states, output and nodes, "
                        f"got {type(data).__name__}", source=source)
    top_lines = lines.get(id(data), {})
    for key in data:
        if key not in CELL_FIELDS:
            raise CellError(f"unknown field '{key}' (allowed: {', '.join(CELL_FIELDS)})",
                            source=source, line=top_lines.get(key))
    name = data.get("name")
    if name is None:
        name = Path(source).stem if source and source != "<string>" else "cell"
    if not isinstance(name, str):
        raise CellError(f"field 'name' must be a string, got {name!r}", source=source, line=top_lines.get("name"))
    inputs = _names(data.get("inputs", ["x"]), "inputs", source, top_lines.get("inputs"), False)
    static = _names(data.get("static"), "static", source, top_lines.get("static"), False)
    states = _names(data.get("states"), "states", source, top_lines.get("states"), True)
    output = data.get("output")
    if output is None:
        if len(states) == 1:
            output = states[0]
        else:
            raise CellError(f"missing output: say which state is the output (one of {', '.join(states)})",
                            source=source)
    if not isinstance(output, str):
        raise CellError(f"field 'output' must be a state name, got {output!r}", source=source,
                        line=top_lines.get("output"))
    raw_nodes = data.get("nodes")
    if raw_nodes is None or raw_nodes == {}:
        raise CellError("the cell is empty: 'nodes' is missing or has no entries", source=source,
                        line=top_lines.get("nodes"))
    if not isinstance(raw_nodes, dict):
        raise CellError("field 'nodes' must be a mapping of node name to equation", source=source,
                        line=top_lines.get("nodes"))
    node_lines = lines.get(id(raw_nodes), {})

    taken: set[str] = {str(k) for k in raw_nodes} | set(inputs) | set(static) | set(states)
    taken |= {s + "_prev" for s in states}
    nodes: list[Node] = []
    origin: dict[str, str] = {}  # node name → the equation it came from (for error messages)
    for key, spec in raw_nodes.items():
        key = str(key)
        try:
            if isinstance(spec, dict):
                new = [_node_from_mapping(key, spec)]
            else:
                new = parse_equation(key, spec, taken)
        except CellError as exc:
            raise exc.located(source, node_lines.get(key)) from None
        for n in new:
            origin[n.name] = key
        nodes.extend(new)
    graph = CellGraph(name=name, inputs=inputs, states=states, output=output, nodes=tuple(nodes),
                      static=static, description=str(data.get("description") or "").strip(),
                      source=str(data.get("source") or "").strip(), file=source or "")
    try:
        graph.validate(warn=warn)
    except CellError as exc:
        node = origin.get(exc.node, exc.node) if exc.node else None
        line = node_lines.get(node) if node else None
        if line is None and exc.node in states:
            line = top_lines.get("states")
        raise CellError(exc.reason, node=node, source=source, line=line) from None
    return graph


def _node_from_mapping(name: str, spec: dict) -> Node:
    for key in spec:
        if key not in NODE_FIELDS:
            raise CellError(f"unknown node field '{key}' (allowed: {', '.join(NODE_FIELDS)})", node=name)
    op = spec.get("op")
    if not isinstance(op, str):
        raise CellError("a node in graph form needs 'op' (e.g. {op: tanh, inputs: [a]})", node=name)
    args = spec.get("inputs", [])
    if isinstance(args, str):
        args = [args]
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise CellError(f"node 'inputs' must be a list of names, got {args!r}", node=name)
    attrs = spec.get("attrs") or {}
    if not isinstance(attrs, dict):
        raise CellError(f"node 'attrs' must be a mapping, got {attrs!r}", node=name)
    return Node.make(name, op, args, attrs)


def cell_to_dict(graph: CellGraph, form: str = "equations") -> dict[str, Any]:
    """The cell as plain data; ``form`` is "equations" (readable) or "graph" (one mapping per node)."""
    if form not in ("equations", "graph"):
        raise ValueError(f"form must be 'equations' or 'graph', not {form!r}")
    out: dict[str, Any] = {"name": graph.name}
    if graph.description:
        out["description"] = graph.description
    if graph.source:
        out["source"] = graph.source
    out["inputs"] = list(graph.inputs)
    if graph.static:
        out["static"] = list(graph.static)
    out["states"] = list(graph.states)
    out["output"] = graph.output
    nodes: dict[str, Any] = {}
    if form == "equations":
        inline = inlined_nodes(graph)
        for n in graph.nodes:
            if n.name not in inline:
                nodes[n.name] = format_equation(graph, n.name, inline)
    else:
        for n in graph.nodes:
            entry: dict[str, Any] = {"op": n.op, "inputs": list(n.args)}
            if n.attrs:
                entry["attrs"] = dict(n.attrs)
            nodes[n.name] = entry
    out["nodes"] = nodes
    return out


# ---------------------------------------------------------------------- files
def loads_cell(text: str, source: str = "<string>", *, warn: bool = True) -> CellGraph:
    data, lines = load_yaml(text, source)
    return cell_from_dict(data, source, lines, warn=warn)


def read_source(path: str | os.PathLike, expected: str = "") -> str:
    """A text file's contents; CellError naming the file when it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CellError("no such file" + (f" (expected {expected})" if expected else ""), source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CellError(f"cannot read file: {exc}", source=str(path)) from None


def load_cell(path: str | os.PathLike, *, warn: bool = True) -> CellGraph:
    return loads_cell(read_source(path), str(path), warn=warn)


def dumps_cell(graph: CellGraph, form: str = "equations") -> str:
    return dump_yaml(cell_to_dict(graph, form))


def save_cell(graph: CellGraph, path: str | os.PathLike, form: str = "equations") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_cell(graph, form), encoding="utf-8")
    os.replace(tmp, path)
    return path
