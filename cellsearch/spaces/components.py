"""Memory components a ``dag`` cell may carry: the node templates of an NTM memory, location-addressed heads and a stack.

A component gives the cell extra states and two groups of nodes:

* a **read**, from the previous states only, whose value node 0 of the dag reads beside the input
  and ``h_prev`` (``n0 = act0(linear(x, mem_read, h_prev))``), as it reads an attention context;
* a **write**, from the new ``h``, giving the components' states their next values.

* ``ntm``: the Neural Turing Machine's memory M with content addressing (the built-in
  ``ntm-content`` cell's heads, Graves et al. 2014);
* ``ntm-location``: the same memory with Graves's full addressing, content then location (the
  built-in ``ntm`` cell's heads): each head's weights are a state (``wr``, ``ww``) interpolated
  with the content weights, shifted and sharpened;
* ``stack``: Joulin & Mikolov's stack (2015), one per hidden unit: node 0 reads its top, and the new
  ``h`` gives the push/pop/no-op scores and the value pushed (the built-in ``stack-rnn``'s stack).

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
    weight_states: tuple[str, ...]  # those of them that are (B, N) weights over a memory's rows
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


def _location_head(nl: NodeList, weights: str, src: str) -> str:
    """Graves's addressing of one head from ``src``: content, then interpolation with the head's
    previous weights, a shift and sharpening; the new weights are the state ``weights``."""
    key, beta = _lin(nl, f"{weights}_key", src), _lin(nl, f"{weights}_beta", src)
    content = nl.add(f"{weights}_c", "address", [key, "M_prev", beta], auto=True)
    gated = nl.add(f"{weights}_g", "interpolate", [content, f"{weights}_prev", _lin(nl, f"{weights}_gate", src)],
                   auto=True)
    shifted = nl.add(f"{weights}_s", "shift", [gated, _lin(nl, f"{weights}_shift", src)], auto=True)
    return nl.add(weights, "sharpen", [shifted, _lin(nl, f"{weights}_gamma", src)], exact=True)


def _location_read(nl: NodeList) -> None:
    nl.add(READ, "read", [_location_head(nl, "wr", "h_prev"), "M_prev"], exact=True)


def _location_write(nl: NodeList) -> None:
    w = _location_head(nl, "ww", "h")
    erase = nl.add("erase", "sigmoid", [_lin(nl, "erase_linear", "h")], auto=True)
    add = nl.add("add_vec", "tanh", [_lin(nl, "add_linear", "h")], auto=True)
    nl.add("M", "write", ["M_prev", w, erase, add], exact=True)


def _stack_read(nl: NodeList) -> None:
    nl.add(READ, "top", ["S_prev"], exact=True)


def _stack_write(nl: NodeList) -> None:
    scores = [_lin(nl, f"{action}_score", "h") for action in ("push", "pop", "noop")]
    value = nl.add("pushed", "sigmoid", [_lin(nl, "pushed_linear", "h")], auto=True)
    nl.add("S", "stack", ["S_prev", *scores, value], exact=True)


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("ntm", ("M",), ("M",), (), _ntm_read, _ntm_write,
              "an NTM memory M, read and written by content addressing"),
    Component("ntm-location", ("M", "wr", "ww"), ("M",), ("wr", "ww"), _location_read, _location_write,
              "an NTM memory M whose heads address by content, then by location (their weights are states)"),
    Component("stack", ("S",), ("S",), (), _stack_read, _stack_write,
              "a stack per hidden unit: node 0 reads the tops, the new h pushes, pops or leaves them"),
)}
COMPONENT_NAMES = tuple(COMPONENTS)

__all__ = ["COMPONENTS", "COMPONENT_NAMES", "Component", "READ"]
