"""Safe literals and comments for generated Python source: the only way user text reaches it.

Code generators (the compiler, the Triton kernels, the exporters) print Python source and run
it; a cell's name, description and source are text from a file a stranger may have written.
Such text enters generated source only through the functions here, each of which returns a
single Python string literal (or a comment) whose value is the text, whatever the text holds:
quotes, backslashes, line breaks, NUL bytes, Unicode line separators. ``docstring`` checks
its own result with ``ast`` and falls back to ``repr`` rather than ever returning source that
parses as anything but one string.
"""

from __future__ import annotations

import ast


def string(text: str) -> str:
    """``text`` as a one-line Python string literal (``repr`` of a ``str`` always is one, with
    every quote, backslash and unprintable character escaped)."""
    return repr(str(text))


def _printable(text: str, keep: str = "") -> str:
    """``text`` with every unprintable character except those in ``keep`` written as an escape
    (``\\x00``, ``\\u2028``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def docstring(text: str, indent: str = "") -> str:
    """``text`` as a readable triple-quoted docstring, each line indented by ``indent``; line
    breaks stay line breaks, everything that could end the literal early is escaped."""
    # backslashes first, so that the escapes added after them keep their meaning
    body = _printable(str(text).rstrip("\n").replace("\\", "\\\\"), keep="\n").replace('"""', '\\"\\"\\"')
    body = "\n".join((indent + line) if line.strip() else "" for line in body.split("\n"))
    literal = f'{indent}"""{body.lstrip()}\n{indent}"""'
    if not _is_one_string(literal):  # never expected; a plain repr is always safe
        return indent + string(text)
    return literal


def comment(text: str) -> str:
    """``text`` as a one-line ``#`` comment: line breaks and other unprintable characters are
    written as escapes, so nothing after them can become code."""
    return "# " + _printable(str(text))


def _is_one_string(literal: str) -> bool:
    try:
        tree = ast.parse(literal.strip())
    except SyntaxError:
        return False
    return (len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
            and isinstance(tree.body[0].value, ast.Constant) and isinstance(tree.body[0].value.value, str))


__all__ = ["comment", "docstring", "string"]
