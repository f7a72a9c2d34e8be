"""Memory components a ``dag`` cell may carry: the node templates of an NTM memory with its read and write heads.

A component gives the cell extra states and two groups of nodes:

* a **read**, from the previous states only, whose value node 0 of the dag reads beside the input
  and ``h_prev`` (``n0 = act0(linear(x, mem_read, h_prev))``), as it reads an attention context;
* a **write**, from the new ``h``, giving the components' states their next values.

``ntm`` is the Neural Turing Machine's memory M with content addressing (the built-in
``ntm-content`` cell's heads, Graves et al. 2014).

Templates are fixed: the decisions of the space pick a component or none, never its inner
wiring, so a component's nodes are recognised back by decoding (``Space.encode`` checks that the
decisions it guessed decode to the same cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cellsearch.spaces.common import NodeList

READ = "mem_read"  # the value node 0 reads


@dataclass(frozen=True)
class Component:
    """One memory component: its states and how its read and write nodes are added."""

    name: str
    states: tuple[str, ...]  # extra states of the cell, after h
    memory_states: tuple[str, ...]  # those of them that are (B, N, H) matrices
    read: Callable[[NodeList], None]  # adds nodes ending in READ (from the previous states)
    write: Callable[[NodeList], None]  # adds nodes giving every state in ``states`` its new value
    doc: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The names the component's templates insist on (states and the read)."""
        return (*self.states, READ)


def _lin(nl: NodeList, base: str, src: str) -> str:
    return nl.add(base, "linear", [src], auto=True)


def _ntm_read(nl: NodeList) -> None:
    key, beta = _lin(nl, "read_key", "h_prev"), _lin(nl, "read_beta", "h_prev")
    w = nl.add("w_read", "address", [key, "M_prev", beta], auto=True)
    nl.add(READ, "read", [w, "M_prev"], exact=True)


def _ntm_write(nl: NodeList) -> None:
    key, beta = _lin(nl, "write_key", "h"), _lin(nl, "write_beta", "h")
    w = nl.add("w_write", "address", [key, "M_prev", beta], auto=True)
    erase = nl.add("erase", "sigmoid", [_lin(nl, "erase_linear", "h")], auto=True)
    add = nl.add("add_vec", "tanh", [_lin(nl, "add_linear", "h")], auto=True)
    nl.add("M", "write", ["M_prev", w, erase, add], exact=True)


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("ntm", ("M",), ("M",), _ntm_read, _ntm_write,
              "an NTM memory M, read and written by content addressing"),
)}
COMPONENT_NAMES = tuple(COMPONENTS)

__all__ = ["COMPONENTS", "COMPONENT_NAMES", "Component", "READ"]
