"""DARTS (Liu et al. 2019) over a ``dag`` space's supernet: the choices relaxed to a softmax, learned by gradient.

The relaxed cell (``relaxed_cell``) is one ``CellGraph`` holding every cell of the space: node 0
is ``mixed`` over its activations of ``linear(x, h_prev)``, and each node i ≥ 1 is ``mixed`` over
every (predecessor j < i, activation) pair of the space, each the highway node
``blend(sigmoid(linear(n_j)), act(linear(n_j)), n_j)`` of the edge j → i — with the supernet's
shared weights of that edge (``e{j}_{i}_w``/``_gw``/``_b``/``_gb``, bound as ``model_for`` binds
them, so the derived cells later score with the same tensors). The new ``h`` is the mean of all
``n`` nodes, node 0 included; DARTS's cell averages its intermediate nodes only and leaves out its
s0 (the node of x and h_prev, our node 0), and a derived cell here, as every cell of the space,
averages its loose ends (the nodes no other node reads). Our compiler compiles it, with its
generated backward (the ``mixed`` op's rule gives the gradients of the architecture weights α, one
(K,) vector per node).

Training alternates, step by step: a step of the shared weights (the search's optimizer) on a
training batch through the relaxed cell, then a step of α (Adam, β = (0.5, 0.999) as DARTS's
code) on a validation batch — the first-order approximation. Validation batches come from the
task's validation split (shuffled examples of a synthetic task, PTB's valid text read in order
with its state carried), a task without one (xml) gives fresh draws of another seed.

Then the derived cells are scored: DARTS's cell (the argmax of every node's softmax) first, then
the next most probable ones by the product of their choices' softmax weights, until
``candidates`` distinct cells are scored with the shared weights (``model_for``); the best
``trials`` are recorded (strategy ``darts``). α and its optimizer, the validation stream and its
carried state, and how many ranked cells scoring has drawn are in the checkpoint, so resume is exact.

Options (``-o KEY=VALUE``) and defaults: ``arch_lr`` 3e-3 and ``arch_weight_decay`` 1e-3
(DARTS's), ``candidates`` 10 × ``trials``. Not here: the second-order (unrolled) gradient.
"""

from __future__ import annotations

import heapq
import math
import random
from pathlib import Path
from typing import Any, Iterator

import torch

from cellsearch.dsl.graph import CellGraph, Node
from cellsearch.errors import ConfigError
from cellsearch.nn.model import SeqModel
from cellsearch.oneshot.search import OneShotSearch, ProgressHandler, check_oneshot_config, resume_oneshot, run_oneshot
from cellsearch.oneshot.supernet import DagSupernet
from cellsearch.ops.mixed import alpha_name
from cellsearch.records import random_state
from cellsearch.spaces.base import Space
from cellsearch.spaces.dag import DagSpace
from cellsearch.storage.settings import SearchConfig
from cellsearch.tasks.base import Batch, Stream, Task
from cellsearch.tasks.ptb import PTBStream, PTBTask
from cellsearch.tasks.synthetic import ExampleTask
from cellsearch.training.config import TrainConfig

STRATEGY = "darts"
DEFAULTS: dict[str, Any] = {
    "arch_lr": 3e-3,  # Adam's learning rate for α (DARTS's)
    "arch_weight_decay": 1e-3,  # its weight decay (DARTS's)
}
ALPHA_INIT = 1e-3  # α starts as ALPHA_INIT × N(0, 1), as DARTS's code


# ---------------------------------------------------------------------------------------------- the cell
def relaxed_cell(space: DagSpace) -> tuple[CellGraph, dict[str, str]]:
    """The relaxed cell of ``space`` (module docstring) and its bindings: the cell's parameter names
    (``CellParameters``) → the supernet's shared tensors' names. Node ``node{i}``'s arguments are its
    choices in the order ``choice_pairs`` lists them."""
    acts = space.activations
    bias = {} if space.bias else {"bias": False}
    nodes: list[Node] = []
    bindings: dict[str, str] = {"node0_linear__w0": "n0_x", "node0_linear__w1": "n0_h"}
    if space.bias:
        bindings["node0_linear__b"] = "n0_b"

    def linear(name: str, args: list[str], weight: str, b: str) -> str:
        nodes.append(Node.make(name, "linear", args, bias))
        bindings[f"{name}__w0"] = weight
        if space.bias:
            bindings[f"{name}__b"] = b
        return name

    def act(name: str, a: str, of: str) -> str:
        if a == "identity":
            return of
        nodes.append(Node.make(name, a, [of]))
        return name

    def choose(name: str, options: list[str]) -> None:
        nodes.append(Node.make(name, "mixed", options) if len(options) > 1 else Node.make(name, "identity", options))

    nodes.append(Node.make("node0_linear", "linear", ["x", "h_prev"], bias))
    choose("node0", [act(f"node0_{a}", a, "node0_linear") for a in acts])
    for i in range(1, space.n):
        options = []
        for j in range(i):
            src, edge = f"node{j}", f"e{j}_{i}"
            gate = f"{edge}_gate"
            linear(f"{gate}_linear", [src], f"{edge}_gw", f"{edge}_gb")
            nodes.append(Node.make(gate, "sigmoid", [f"{gate}_linear"]))
            cand = linear(f"{edge}_linear", [src], f"{edge}_w", f"{edge}_b")
            for a in acts:
                options.append(f"{edge}_{a}_blend")
                nodes.append(Node.make(options[-1], "blend", [gate, act(f"{edge}_{a}", a, cand), src]))
        choose(f"node{i}", options)
    if space.n == 1:
        nodes.append(Node.make("h", "identity", ["node0"]))
    else:
        acc = "node0"
        for i in range(1, space.n):
            nodes.append(Node.make(f"sum{i}", "add", [acc, f"node{i}"]))
            acc = f"sum{i}"
        nodes.append(Node.make("h_const", "const", [], {"value": 1.0 / space.n}))
        nodes.append(Node.make("h", "mul", [acc, "h_const"]))
    graph = CellGraph(name=f"{space.name}_relaxed", inputs=("x",), states=("h",), output="h", nodes=tuple(nodes),
                      source="DARTS (Liu et al. 2019) relaxed cell",
                      description=f"Every cell of space '{space.name}', its choices mixed by softmax(alpha).")
    graph.validate(warn=False)
    return graph, bindings


def choice_pairs(space: DagSpace, i: int) -> list[tuple[int, ...]]:
    """Node ``i``'s choices in the order of its mixed node's arguments, as the space's decisions:
    (activation,) for node 0, (predecessor, activation) for the others."""
    k = len(space.activations)
    if i == 0:
        return [(a,) for a in range(k)]
    return [(j, a) for j in range(i) for a in range(k)]


def relaxed_model(net: DagSupernet) -> SeqModel:
    """The ``SeqModel`` of ``net``'s relaxed cell: its linear weights, embedding and head are ``net``'s
    shared tensors; the architecture weights α (``node{i}__alpha``) are the model's own."""
    graph, bindings = relaxed_cell(net.space)
    return net.bound_model(graph, bindings, own={alpha_name(n.name) for n in graph.nodes if n.op == "mixed"})


def ranked_choices(space: DagSpace, weights: list[list[float]]) -> Iterator[tuple[int, ...]]:
    """The space's decision tuples by decreasing product of their choices' weights (``weights[i]``: node
    i's softmax, in ``choice_pairs`` order): the argmax first, then best-first over the products."""
    options = []  # per node: (log weight, choice) sorted best first
    for i, w in enumerate(weights):
        pairs = choice_pairs(space, i)
        options.append(sorted(((math.log(max(p, 1e-300)), c) for p, c in zip(w, pairs)),
                              key=lambda t: -t[0]))
    start = (0,) * len(options)
    heap = [(-sum(o[0][0] for o in options), start)]
    seen = {start}
    while heap:
        cost, ranks = heapq.heappop(heap)
        choices: list[int] = []
        for o, r in zip(options, ranks):
            choices.extend(o[r][1])
        yield tuple(choices)
        for i, r in enumerate(ranks):
            if r + 1 < len(options[i]):
                nxt = ranks[:i] + (r + 1,) + ranks[i + 1:]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (cost - options[i][r + 1][0] + options[i][r][0], nxt))


# ---------------------------------------------------------------------------------------------- validation data
class _ExamplesStream(Stream):
    """Batches of a synthetic task's validation examples, drawn without replacement per batch by a
    seeded generator."""

    def __init__(self, task: ExampleTask, batch_size: int, seed: int):
        self.task, self.batch_size = task, batch_size
        self.rng = random.Random(seed)

    def __next__(self) -> Batch:
        examples = self.task.split("valid")
        return self.task.encode(self.rng.sample(examples, min(self.batch_size, len(examples))))

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict``."""
        self.rng.setstate(random_state(state["rng"]))


def validation_stream(task: Task, batch_size: int, seed: int) -> Stream:
    """Batches of ``task``'s validation data for α's steps (module docstring)."""
    if isinstance(task, ExampleTask):
        return _ExamplesStream(task, batch_size, seed)
    if isinstance(task, PTBTask):
        return PTBStream(task.tokens("valid"), batch_size, task.bptt, seed)
    return task.train_stream(batch_size, seed * 1_000_003 + 41)


# ---------------------------------------------------------------------------------------------- the search
class DARTS(OneShotSearch):
    """One DARTS search in progress: the shared weights, the relaxed cell and its architecture weights."""

    name = STRATEGY
    option_defaults = DEFAULTS

    @classmethod
    def check_space(cls, space: DagSpace) -> None:
        """DARTS relaxes every decision into a softmax mixture of its choices' values; a memory
        decision changes the cell's states, which no mixture of values can hold."""
        if space.memory:
            raise ConfigError(f"strategy darts cannot relax the memory decision of space '{space.name}' (its "
                              "choices give cells different states): search it with rsws or enas",
                              field="SearchConfig.space")

    def __init__(self, space: Space, task: Task, tc: TrainConfig, count: int, seed: int, checkpoint: Path | None = None,
                 on_progress: ProgressHandler | None = None, options: dict[str, Any] | None = None):
        super().__init__(space, task, tc, count, seed, checkpoint, on_progress, options)
        assert isinstance(self.space, DagSpace)  # (check_oneshot_space)
        self.dag: DagSpace = self.space
        self.relaxed = relaxed_model(self.net)
        params = self.relaxed.rnn.cells[0].params
        self.alphas = [getattr(params, alpha_name(f"node{i}")) for i in range(self.dag.n)
                       if hasattr(params, alpha_name(f"node{i}"))]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + 37)
        with torch.no_grad():
            for a in self.alphas:
                a.copy_(ALPHA_INIT * torch.randn(a.shape, generator=gen, dtype=a.dtype))
        o = self.options
        self.arch_opt = torch.optim.Adam(self.alphas, lr=o["arch_lr"], betas=(0.5, 0.999),
                                         weight_decay=o["arch_weight_decay"])
        self.val_stream = validation_stream(task, tc.batch_size, seed)
        self.val_carried: Any = None
        self.arch_losses: list[float] = []  # validation losses of α's steps, latest last
        self._ranking: Iterator[tuple[int, ...]] | None = None  # the cells to score, most probable first
        self._ranked = 0  # how many cells the ranking has given (kept in the checkpoint: a resumed run skips them)
        self._last: tuple[int, ...] = ()

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """``arch_lr`` (> 0) and ``arch_weight_decay`` (≥ 0) checked (ConfigError, one line naming the option)."""
        from cellsearch.limits import check_number

        if "arch_lr" in options:
            check_number("arch_lr", options["arch_lr"], 0, integer=False, low_open=True)
        if "arch_weight_decay" in options:
            check_number("arch_weight_decay", options["arch_weight_decay"], 0, integer=False)
        return {k: float(v) for k, v in options.items()}

    def train_model(self) -> SeqModel:
        """The relaxed cell's model: every choice runs, weighed by softmax(α)."""
        return self.relaxed

    def alpha_gradients(self, batch: Batch, begin: Any) -> tuple[list[torch.Tensor], torch.Tensor, Any]:
        """α's gradient of the relaxed model's mean loss on ``batch`` from state ``begin``, the loss and the
        final state. The supernet's weights need no gradient meanwhile: its backward computes α's alone."""
        model = self.relaxed
        weights = list(self.net.parameters())
        for p in weights:
            p.requires_grad_(False)
        try:
            logits, new_state = model(batch.inputs, begin)
            model.take_outputs()
            nll, n = self.task.masked_nll(logits, batch.targets, batch.mask)
            loss = nll / max(n, 1)
            grads = list(torch.autograd.grad(loss, self.alphas))
        finally:
            for p in weights:
                p.requires_grad_(True)
        return grads, loss, new_state

    def after_step(self) -> None:
        """A first-order step of α on a validation batch."""
        model = self.relaxed
        batch = next(self.val_stream).to(self.device)
        begin = self.val_carried if batch.carry_state and self.val_carried is not None else model.start(batch)
        grads, loss, new_state = self.alpha_gradients(batch, begin)
        self.arch_opt.zero_grad(set_to_none=True)
        for a, g in zip(self.alphas, grads):
            a.grad = g
        self.arch_opt.step()
        self.val_carried = model.detach_state(new_state) if model.carries_state else None
        self.arch_losses = [*self.arch_losses[-999:], float(loss.detach())]

    def weights(self) -> list[list[float]]:
        """Every node's softmax over its choices (``choice_pairs`` order); a node of one choice: [1.0]."""
        out, k = [], 0
        for i in range(self.dag.n):
            if len(choice_pairs(self.dag, i)) == 1:
                out.append([1.0])
                continue
            out.append(torch.softmax(self.alphas[k].detach().double(), -1).tolist())
            k += 1
        return out

    def derived(self) -> tuple[int, ...]:
        """DARTS's derived cell: the most probable choice of every node."""
        return next(ranked_choices(self.dag, self.weights()))

    def score_cell(self) -> tuple[tuple[int, ...], CellGraph]:
        """The next most probable cell (the argmax first); the least probable again once all are given."""
        if self._ranking is None:
            self._ranking = ranked_choices(self.dag, self.weights())
            for _ in range(self._ranked):  # (resumed: the cells given before the checkpoint, skipped)
                self._last = next(self._ranking, self._last)
        self._last = next(self._ranking, self._last)
        self._ranked += 1
        return self._last, self.space.decode(self._last)

    def extra_state(self) -> Any:
        """α, its optimizer, the validation stream and its carried state, α's recent losses, the derived cell,
        how many ranked cells scoring has drawn."""
        carried = None if self.val_carried is None else [t.cpu() for t in self.val_carried]
        return {"alphas": [a.detach().cpu().clone() for a in self.alphas], "arch_opt": self.arch_opt.state_dict(),
                "val_stream": self.val_stream.state_dict(), "val_carried": carried,
                "arch_losses": list(self.arch_losses), "derived": list(self.derived()), "ranked": self._ranked}

    def load_extra_state(self, state: Any) -> None:
        """Restore α and the rest exactly."""
        with torch.no_grad():
            for a, saved in zip(self.alphas, state["alphas"], strict=True):
                a.copy_(saved)
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.val_stream.load_state_dict(state["val_stream"])
        carried = state["val_carried"]
        self.val_carried = None if carried is None else tuple(t.to(self.device) for t in carried)
        self.arch_losses = [float(v) for v in state["arch_losses"]]
        self._ranking, self._ranked = None, int(state.get("ranked", 0))


def check_darts_config(cfg: SearchConfig, space: Space) -> int:
    """Refuse settings DARTS cannot run (ConfigError, one line); return the number of cells to score."""
    return check_oneshot_config(cfg, space, DARTS)


def run_darts(cfg: SearchConfig, runs_dir: str | Path = "runs", *, space: Space | None = None,
              on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """DARTS end to end: train the shared weights and α, score the most probable cells, record the top ``cfg.trials``."""
    return run_oneshot(DARTS, cfg, runs_dir, space=space, on_progress=on_progress)


def resume_darts(run_dir: str | Path, *, on_progress: ProgressHandler | None = None) -> dict[str, Any]:
    """Continue an interrupted DARTS run from its checkpoint (a finished one: its summary again)."""
    return resume_oneshot(DARTS, run_dir, on_progress=on_progress)


__all__ = ["DARTS", "DEFAULTS", "STRATEGY", "check_darts_config", "choice_pairs", "ranked_choices", "relaxed_cell",
           "relaxed_model", "resume_darts", "run_darts", "validation_stream"]
