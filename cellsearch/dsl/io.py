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

from cellsearch import limits
from cellsearch.dsl.equations import format_equation, inlined_nodes, literal_problem, parse_equation
from cellsearch.dsl.graph import CellGraph, Node, cell_name_from, check_cell_name, check_name
from cellsearch.dsl.ops import OPS
from cellsearch.errors import CellError
from cellsearch.fileio import FileRefusedError, FileTooLargeError, atomic_write, read_regular
from cellsearch.limits import MAX_QUOTED_CHARS, clipped, exceeds, shown

CELL_FIELDS = ("name", "description", "source", "inputs", "static", "memory", "states", "memory_states",
               "weight_states", "output", "nodes")
NODE_FIELDS = ("op", "inputs", "attrs")


# ---------------------------------------------------------------------- YAML with line numbers and limits
class _LimitBroken(yaml.YAMLError):
    """A YAML limit broken at ``mark`` (raised while composing, turned into a CellError by ``load_yaml``)."""

    def __init__(self, reason: str, mark: Any):
        super().__init__(reason)
        self.reason = reason
        self.mark = mark


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class _YamlBudget:
    """The YAML limits, checked on every event as the composer takes it from the parser.

    The parser is a state machine and the composer builds a graph in which an alias is one
    more reference to its anchor's node, so both take time linear in the file; the composer
    recurses once per nesting level, so depth is checked when a collection starts, before it
    goes deeper. What is not linear is what comes after: code that walks the data meets every
    alias as a full copy (a 1 KB "billion laughs" file expands to gigabytes). So each anchor's
    size is counted with the aliases inside it expanded, and the document is refused as soon as
    its expanded size passes the limit, before anything is constructed. An alias inside its own
    anchor's collection would make the data contain itself: refused too.
    """

    def __init__(self, resolve: Any):
        self.resolve = resolve  # the loader's resolver: which plain scalars are numbers
        self.events = 0
        self.expanded = 0  # nodes so far, aliases counted as copies
        self.open: list[tuple[str | None, int]] = []  # per open collection: (anchor, self.expanded at its start)
        self.open_anchors: set[str] = set()
        self.sizes: dict[str, int] = {}  # anchor → expanded size of its node

    def take(self, event: yaml.Event) -> None:
        mark = event.start_mark
        self.events += 1
        if self.events > limits.MAX_YAML_EVENTS:
            raise _LimitBroken(f"more than {limits.MAX_YAML_EVENTS} YAML events (scalars, collections, aliases): "
                               f"exceeds limit 'YAML events' ({limits.MAX_YAML_EVENTS} events)", mark)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                raise _LimitBroken(f"recursive alias *{clipped(event.anchor, 40)}: it refers to a collection "
                                   "that contains it, so its expansion is infinite (limit 'YAML alias expansion')",
                                   mark)
            self.grow(self.sizes.get(event.anchor, 1), mark)  # an undefined alias: the composer reports it
        elif isinstance(event, yaml.ScalarEvent):
            self.check_number(event)
            self.grow(1, mark)
            if event.anchor is not None:
                self.sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            self.grow(1, mark)
            if len(self.open) >= limits.MAX_YAML_DEPTH:
                raise _LimitBroken(exceeds("nesting depth", len(self.open) + 1, "YAML depth",
                                           f"{limits.MAX_YAML_DEPTH} levels"), mark)
            self.open.append((event.anchor, self.expanded))
            if event.anchor is not None:
                self.open_anchors.add(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent) and self.open:
            anchor, start = self.open.pop()
            if anchor is not None:
                self.open_anchors.discard(anchor)
                self.sizes[anchor] = self.expanded - start + 1

    def grow(self, size: int, mark: Any) -> None:
        self.expanded += size
        if self.expanded > limits.MAX_YAML_EXPANDED_NODES:
            raise _LimitBroken(f"the document expands to more than {limits.MAX_YAML_EXPANDED_NODES} nodes with "
                               f"its aliases expanded: exceeds limit 'YAML alias expansion' "
                               f"({limits.MAX_YAML_EXPANDED_NODES} nodes)", mark)

    def check_number(self, event: yaml.ScalarEvent) -> None:
        # Only long scalars are resolved here (the composer resolves every one anyway).
        if len(event.value) <= limits.MAX_YAML_NUMBER_CHARS:
            return
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in _NUMBER_TAGS:
            raise _LimitBroken(f"number {clipped(event.value, 24)} has {len(event.value)} characters: exceeds "
                               f"limit 'YAML number length' ({limits.MAX_YAML_NUMBER_CHARS} characters)",
                               event.start_mark)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, remembers the line of every mapping key and
    holds the document to the YAML limits (``_YamlBudget``)."""

    def __init__(self, text: str):
        super().__init__(text)  # the reader checks every character here (ReaderError)
        self._lines: dict[int, dict[Any, int]] = {}
        self._budget = _YamlBudget(self.resolve)

    def get_event(self) -> yaml.Event:
        # The composer takes every event through here exactly once (check/peek only look).
        event = super().get_event()
        self._budget.take(event)
        return event

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's scalar constructors trust the tag: `!!int ''` is an IndexError, `!!bool foo`
        # a KeyError, `2001-13-45` (a timestamp) a ValueError. Each becomes an error at its node.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError, LookupError, AttributeError) as exc:
            tag = str(node.tag).rsplit(":", 1)[-1]
            value = f" {shown(node.value)}" if isinstance(node, yaml.ScalarNode) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid {tag} value{value}: {clipped(str(exc))}", node.start_mark) from None


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(None, None, f"unsupported key {shown(key)}", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {shown(key)} (first defined on line {lines[key]})", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=deep)
        lines[key] = key_node.start_mark.line + 1
    loader._lines[id(out)] = lines
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str) -> tuple[Any, dict[int, dict[Any, int]]]:
    """Parse YAML within the YAML limits; return (data, {id(mapping): {key: line}}).

    Every problem (bad syntax, a forbidden character, a broken limit, a value Python cannot
    hold) is a one-line CellError with the line where it is known."""
    loader = None
    try:
        loader = _LineLoader(text)
        return loader.get_single_data(), loader._lines
    except _LimitBroken as exc:
        line, col = _position(exc.mark)
        raise CellError(exc.reason, source=source, line=line, column=col) from None
    except yaml.MarkedYAMLError as exc:
        line, col = _position(exc.problem_mark or exc.context_mark)
        problem = clipped(exc.problem or str(exc), 2 * MAX_QUOTED_CHARS)
        raise CellError(f"YAML syntax error: {problem}", source=source, line=line, column=col) from None
    except yaml.reader.ReaderError as exc:
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        line = col = None
        if isinstance(text, str):  # the position counts characters of the text
            line = text.count("\n", 0, exc.position) + 1
            col = exc.position - text.rfind("\n", 0, exc.position)
        raise CellError(f"YAML syntax error: character {shown(char)} (U+{ord(char):04X}) is not allowed in YAML "
                        f"({exc.reason})", source=source, line=line, column=col) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        raise CellError(f"YAML syntax error: {clipped(str(exc), 2 * MAX_QUOTED_CHARS)}", source=source) from None
    except (ValueError, TypeError, OverflowError, LookupError, AttributeError) as exc:  # pragma: no cover
        # construct_object turns these into a ConstructorError at their node; this is a backstop
        raise CellError(f"invalid YAML value: {clipped(str(exc), 2 * MAX_QUOTED_CHARS)}", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _position(mark: Any) -> tuple[int | None, int | None]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


class _Flow(list[Any]):
    pass


class _FlowMap(dict[Any, Any]):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_Dumper.add_representer(_FlowMap, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(),
                                                                   flow_style=True))


def dump_yaml(data: Any) -> str:
    """``data`` as YAML in the layout of cell files: block style at the top, flow style for lists
    and for mappings two levels down."""
    def wrap(v: Any, depth: int = 0) -> Any:
        if isinstance(v, dict):
            inner = {k: wrap(x, depth + 1) for k, x in v.items()}
            return _FlowMap(inner) if depth >= 2 else inner
        if isinstance(v, (list, tuple)):
            return _Flow(wrap(x, depth + 1) for x in v)
        return v

    return str(yaml.dump(wrap(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100))


# ---------------------------------------------------------------------- dict ↔ graph
_NAME_KINDS = {"inputs": "input", "static": "static input", "memory": "memory", "states": "state",
               "memory_states": "memory state", "weight_states": "weights state"}


def _names(value: Any, field: str, source: str | None, line: int | None, required: bool) -> tuple[str, ...]:
    if value is None:
        if required:
            raise CellError(f"missing field '{field}' (a list of names, e.g. {field}: [x])", source=source)
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CellError(f"field '{field}' must be a list of names, got {shown(value)}", source=source, line=line)
    for v in value:
        try:
            check_name(v, _NAME_KINDS[field])
        except CellError as exc:
            raise exc.located(source, line) from None
    return tuple(value)


def _key_name(key: Any) -> str:
    """A mapping key as a node name (YAML also has number and boolean keys: ``1: x``)."""
    return key if isinstance(key, str) else shown(key)


def _too_many_nodes(count: int) -> str:
    return exceeds("node count", count, "nodes per cell", f"{limits.MAX_NODES_PER_CELL} nodes")


def cell_from_dict(data: Any, source: str | None = None, lines: dict[int, dict[Any, int]] | None = None,
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
            raise CellError(f"unknown field {shown(_key_name(key))} (allowed: {', '.join(CELL_FIELDS)})",
                            source=source, line=top_lines.get(key))
    name = data.get("name")
    if name is None:
        name = cell_name_from(Path(source).stem) if source and source != "<string>" else "cell"
    if not isinstance(name, str):
        raise CellError(f"field 'name' must be a string, got {shown(name)}", source=source,
                        line=top_lines.get("name"))
    try:
        check_cell_name(name)
    except CellError as exc:
        raise exc.located(source, top_lines.get("name")) from None
    inputs = _names(data.get("inputs", ["x"]), "inputs", source, top_lines.get("inputs"), False)
    static = _names(data.get("static"), "static", source, top_lines.get("static"), False)
    memory = _names(data.get("memory"), "memory", source, top_lines.get("memory"), False)
    states = _names(data.get("states"), "states", source, top_lines.get("states"), True)
    memory_states = _names(data.get("memory_states"), "memory_states", source, top_lines.get("memory_states"), False)
    weight_states = _names(data.get("weight_states"), "weight_states", source, top_lines.get("weight_states"), False)
    output = data.get("output")
    if output is None:
        if len(states) == 1:
            output = states[0]
        else:
            raise CellError(f"missing output: say which state is the output (one of {', '.join(states)})",
                            source=source)
    if not isinstance(output, str):
        raise CellError(f"field 'output' must be a state name, got {shown(output)}", source=source,
                        line=top_lines.get("output"))
    try:
        check_name(output, "output")
    except CellError as exc:
        raise exc.located(source, top_lines.get("output")) from None
    raw_nodes = data.get("nodes")
    if raw_nodes is None or raw_nodes == {}:
        raise CellError("the cell is empty: 'nodes' is missing or has no entries", source=source,
                        line=top_lines.get("nodes"))
    if not isinstance(raw_nodes, dict):
        raise CellError("field 'nodes' must be a mapping of node name to equation", source=source,
                        line=top_lines.get("nodes"))
    if len(raw_nodes) > limits.MAX_NODES_PER_CELL:  # before parsing any of them
        raise CellError(_too_many_nodes(len(raw_nodes)), source=source, line=top_lines.get("nodes"))
    node_lines = lines.get(id(raw_nodes), {})

    taken: set[str] = {_key_name(k) for k in raw_nodes} | set(inputs) | set(static) | set(memory) | set(states)
    taken |= {s + "_prev" for s in states}
    nodes: list[Node] = []
    origin: dict[str, str] = {}  # node name → the equation it came from (for error messages)
    for raw_key, spec in raw_nodes.items():
        key = _key_name(raw_key)
        try:
            check_name(key, "node")  # before the name shows up in any message
            if isinstance(spec, dict):
                new = [_node_from_mapping(key, spec)]
            else:
                new = parse_equation(key, spec, taken)
            if len(nodes) + len(new) > limits.MAX_NODES_PER_CELL:
                raise CellError(_too_many_nodes(len(nodes) + len(new)), node=key)
        except CellError as exc:
            raise exc.located(source, node_lines.get(raw_key)) from None
        for n in new:
            origin[n.name] = key
        nodes.extend(new)
    text = {}
    for field in ("description", "source"):  # prose, as text (a list or a mapping is a mistake)
        value = data.get(field)
        if value is not None and not isinstance(value, (str, int, float)):
            raise CellError(f"field '{field}' must be text, got {shown(value)}", source=source,
                            line=top_lines.get(field))
        text[field] = str(value if value is not None else "").strip()
    graph = CellGraph(name=name, inputs=inputs, states=states, output=output, nodes=tuple(nodes),
                      static=static, memory=memory, memory_states=memory_states,
                      weight_states=weight_states, file=source or "", **text)
    try:
        graph.validate(warn=warn)
    except CellError as exc:
        node = origin.get(exc.node, exc.node) if exc.node else None
        line = node_lines.get(node) if node else None
        if line is None and exc.node in states:
            line = top_lines.get("states")
        raise CellError(exc.reason, node=node, source=source, line=line) from None
    return graph


def _node_from_mapping(name: str, spec: dict[Any, Any]) -> Node:
    for key in spec:
        if key not in NODE_FIELDS:
            raise CellError(f"unknown node field {shown(_key_name(key))} (allowed: {', '.join(NODE_FIELDS)})",
                            node=name)
    op = spec.get("op")
    if not isinstance(op, str):
        raise CellError("a node in graph form needs 'op' (e.g. {op: tanh, inputs: [a]})", node=name)
    args = spec.get("inputs", [])
    if isinstance(args, str):
        args = [args]
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise CellError(f"node 'inputs' must be a list of names, got {shown(args)}", node=name)
    for a in args:
        check_name(a, "argument", node=name)
    attrs = spec.get("attrs") or {}
    if not isinstance(attrs, dict):
        raise CellError(f"node 'attrs' must be a mapping, got {shown(attrs)}", node=name)
    for key, value in attrs.items():
        check_name(key, "attribute", node=name)
        spec_attr = OPS[op].attrs.get(key) if op in OPS else None
        if isinstance(value, str) and spec_attr is not None and spec_attr.type is str:
            continue  # a word from the attribute's list (kind: general); Node.make checks which
        if not isinstance(value, (bool, int, float)):
            raise CellError(f"attribute '{key}' must be a number or true/false, got {shown(value)}", node=name)
        problem = None if isinstance(value, bool) else literal_problem(value, f"'{key}'")
        if problem:
            raise CellError(problem, node=name)
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
    if graph.memory:
        out["memory"] = list(graph.memory)
    out["states"] = list(graph.states)
    if graph.memory_states:
        out["memory_states"] = list(graph.memory_states)
    if graph.weight_states:
        out["weight_states"] = list(graph.weight_states)
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
    """The cell a YAML text describes (held to the cell-file size, counted in characters)."""
    if len(text) > limits.MAX_CELL_FILE_BYTES:
        raise CellError(exceeds("cell text length", f"{len(text)} characters", "cell file size",
                                f"{limits.MAX_CELL_FILE_BYTES} bytes"), source=source)
    data, lines = load_yaml(text, source)
    return cell_from_dict(data, source, lines, warn=warn)


def read_source(path: str | os.PathLike[str], expected: str = "", *, limit: str = "cell file size",
                maximum: int | None = None) -> str:
    """A text file's contents; CellError naming the file when it is missing, unreadable, not a
    regular file (a FIFO, a device) or larger than ``maximum`` bytes (default
    ``MAX_CELL_FILE_BYTES``; ``limit`` names it in the message).

    The size is checked before the file is read, and the read stops one byte past the limit
    anyway: a growing file may hold more than its size says (``fileio.read_regular``)."""
    maximum = limits.MAX_CELL_FILE_BYTES if maximum is None else maximum
    path = Path(path)
    where = clipped(str(path), 4 * MAX_QUOTED_CHARS)  # the path may be what is wrong (too long for the OS)
    try:
        data = read_regular(path, limit, maximum)
        # (newlines as a text-mode read gives them: line numbers in messages count the same)
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise CellError("no such file" + (f" (expected {expected})" if expected else ""), source=where) from None
    except FileTooLargeError as exc:
        raise CellError(exceeds("file size", exc.size, limit, f"{maximum} bytes"), source=where) from None
    except FileRefusedError as exc:
        raise CellError(exc.reason, source=where) from None
    except (OSError, ValueError) as exc:  # ValueError: undecodable bytes, a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CellError(f"cannot read file: {clipped(str(reason), 2 * MAX_QUOTED_CHARS)}", source=where) from None


def load_cell(path: str | os.PathLike[str], *, warn: bool = True) -> CellGraph:
    """Read, parse and validate a cell file (either form); a ``CellError`` names the place to fix.
    ``warn``: warn (``CellWarning``) of soft problems such as nodes no state uses."""
    return loads_cell(read_source(path), str(path), warn=warn)


def dumps_cell(graph: CellGraph, form: str = "equations") -> str:
    """A cell as the YAML text of a cell file: ``form`` "equations" (one equation per node) or
    "graph" (one mapping of op, args and attributes per node)."""
    return dump_yaml(cell_to_dict(graph, form))


def save_cell(graph: CellGraph, path: str | os.PathLike[str], form: str = "equations") -> Path:
    """Write a cell file whole or not at all (``fileio.atomic_write``)."""
    return atomic_write(path, dumps_cell(graph, form))
