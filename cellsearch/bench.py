"""Training-step throughput of compiled cells against torch's RNNs and the interpreter.

Everything is measured in one process, interleaved round by round, and reported as the
median over rounds of per-round ratios: on a shared, noisy machine a burst of load hits
one round of every contender instead of all rounds of one. Absolute times are context only.
A training step is forward + backward of ``out.sum()`` over a (T, B, I) batch. On CUDA each
measurement synchronises the device before reading the clock (kernels launch asynchronously).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from cellsearch.compile.attention import Memory
from cellsearch.compile.interpreter import InterpretedCell
from cellsearch.compile.cell import CompiledCell
from cellsearch import limits as L
from cellsearch.library import get_cell
from cellsearch.limits import check_number


@dataclass
class BenchConfig:
    seq_len: int = 64  # T
    batch: int = 32  # B
    input_size: int = 128  # I
    hidden_size: int = 256  # H
    rounds: int = 7  # interleaved measurement rounds; the median ratio is reported
    min_time: float = 0.25  # seconds each contender runs per round (at least one step)
    threads: int | None = None  # torch threads (default: leave as is)
    with_torch_compile: bool = False  # also time the generated steps under torch.compile
    seed: int = 0
    device: str = "cpu"  # cpu | cuda (torch.nn.LSTM/GRU then run cuDNN's kernels)
    with_interpreter: bool = True  # also time the reference interpreter (vs_interpreter)
    tf32: bool = False  # CUDA: TF32 matmuls (cuDNN's and ours alike); off: both in full fp32

    def __post_init__(self) -> None:  # (checked when made: before anything is timed)
        check_sizes(seq_len=self.seq_len, batch=self.batch, input_size=self.input_size, hidden_size=self.hidden_size,
                    rounds=self.rounds, threads=self.threads, seed=self.seed)
        check_number("min_time", self.min_time, 0, integer=False, low_open=True)


def check_sizes(*, seq_len: int = 1, batch: int = 1, input_size: int = 1, hidden_size: int = 1, rounds: int = 1,
                threads: int | None = None, seed: int = 0, k: int = 1) -> None:
    """A benchmark's sizes against the limits a training has (``cellsearch.limits``)."""
    check_number("BenchConfig.seq_len", seq_len, 1, "sequence length", L.MAX_SEQUENCE_LENGTH)
    check_number("BenchConfig.batch", batch, 1, "batch size", L.MAX_BATCH_SIZE)
    check_number("BenchConfig.input_size", input_size, 1, "hidden size", L.MAX_HIDDEN_SIZE)
    check_number("BenchConfig.hidden_size", hidden_size, 1, "hidden size", L.MAX_HIDDEN_SIZE)
    check_number("BenchConfig.rounds", rounds, 1, "bench rounds", L.MAX_BENCH_ROUNDS)
    if threads is not None:
        check_number("BenchConfig.threads", threads, 1, "threads", L.MAX_THREADS)
    check_number("seed", seed, 0, "seed", L.MAX_SEED)
    check_number("PopulationBenchConfig.k", k, 1, "population size", L.MAX_POPULATION)
    # the inputs, an LSTM's weights and the activations its backward keeps, as a training's estimate counts them
    from cellsearch.training.memory_estimate import ACTIVATIONS_PER_LINEAR, GATES_OF_AN_UNKNOWN_CELL, check_memory

    gates = GATES_OF_AN_UNKNOWN_CELL
    need = 4 * k * (seq_len * batch * (input_size + ACTIVATIONS_PER_LINEAR * gates * hidden_size)
                    + 4 * gates * hidden_size * (input_size + hidden_size))
    check_memory(need, f"a benchmark of T {seq_len}, B {batch}, I {input_size}, H {hidden_size}"
                       + (f", {k} members" if k > 1 else ""))


# On CUDA, the compiled cell also runs as these variants, to show what each part of the GPU path
# buys: the eager generated steps (the path before fused kernels), fused kernels without CUDA
# graphs, and CUDA graphs over the eager steps. "compiled" itself is the default: fused + graphs.
CUDA_VARIANTS: dict[str, dict[str, Any]] = {"eager steps": {"pointwise": "eager", "cuda_graphs": False},
                 "fused, no graphs": {"pointwise": "fused", "cuda_graphs": False},
                 "eager steps + graphs": {"pointwise": "eager", "cuda_graphs": True}}
# The sizes the GPU issue measures against cuDNN: (T, B, I, H)
CUDA_SIZES = ((64, 64, 256, 256), (64, 64, 1024, 1024))


TORCH_MODULES: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU, "tanh": nn.RNN}


def _timer(step: Callable[[], None], min_time: float, sync: Callable[[], None] = lambda: None
           ) -> Callable[[], float]:
    """A function that runs ``step`` for about ``min_time`` seconds and returns seconds per step."""
    calls = [1]

    def measure() -> float:
        n = calls[0]
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        dt = time.perf_counter() - t0
        per = dt / n
        calls[0] = max(1, int(min_time / max(per, 1e-6)))
        return per

    return measure


def _train_step(module: nn.Module, x: torch.Tensor, memory: tuple = ()) -> Callable[[], None]:
    params = list(module.parameters())
    args = (None, None, memory) if memory else ()

    def step() -> None:
        for p in params:
            p.grad = None
        out, _ = module(x, *args)
        out.sum().backward()

    return step


def bench_cell(name: str, cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Throughputs (tokens/s) and ratios for one built-in cell that torch also implements."""
    torch.manual_seed(cfg.seed)
    T, B, I, H = cfg.seq_len, cfg.batch, cfg.input_size, cfg.hidden_size
    device = torch.device(cfg.device)
    graph = get_cell(name)
    compiled = CompiledCell(graph, I, H).to(device)
    x = torch.randn(T, B, I, device=device)
    # a cell that attends reads a memory: an encoder's outputs over a source as long as the sequence
    memory = tuple(Memory(torch.randn(B, T, H, device=device)) for _ in graph.memory)
    contenders: dict[str, nn.Module] = {"compiled": compiled}
    if cfg.with_interpreter:
        contenders["interpreter"] = InterpretedCell(graph, I, H, params=compiled.params)
    if name in TORCH_MODULES:
        contenders["torch"] = TORCH_MODULES[name](I, H).to(device)
    if device.type == "cuda":
        from cellsearch.compile.fused import triton_available

        for variant, options in CUDA_VARIANTS.items():
            fusable = triton_available() and not graph.memory and not graph.memory_states  # (kernels are pointwise)
            if options["pointwise"] != "fused" or fusable:
                contenders[variant] = CompiledCell(graph, I, H, params=compiled.params, **options)
    if cfg.with_torch_compile:
        contenders["compiled+torch.compile"] = CompiledCell(graph, I, H, params=compiled.params, compile=True)
    steps = {k: _train_step(m, x, memory) for k, m in contenders.items()}
    for step in steps.values():  # warm up: allocator, caches, torch.compile
        for _ in range(3):
            step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timers = {k: _timer(s, cfg.min_time, sync) for k, s in steps.items()}
    samples: dict[str, list[float]] = {k: [] for k in steps}
    order = list(steps)
    for r in range(cfg.rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            samples[k].append(timers[k]())
        if progress:
            progress(f"{name}: round {r + 1}/{cfg.rounds}")
    tokens = T * B
    result: dict = {"tokens_per_s": {k: tokens / statistics.median(v) for k, v in samples.items()},
                    "ms_per_step": {k: 1e3 * statistics.median(v) for k, v in samples.items()}}

    def ratio(other: str) -> float:
        return statistics.median(o / c for o, c in zip(samples[other], samples["compiled"]))

    if "torch" in samples:
        result["vs_torch"] = ratio("torch")
        variants = {k: statistics.median(o / c for o, c in zip(samples["torch"], samples[k]))
                    for k in CUDA_VARIANTS if k in samples}
        if variants:
            result["variants_vs_torch"] = variants
    if "interpreter" in samples:
        result["vs_interpreter"] = ratio("interpreter")
    if "compiled+torch.compile" in samples:
        result["vs_torch_compiled_steps"] = statistics.median(
            o / c for o, c in zip(samples["torch"], samples["compiled+torch.compile"]))
    return result


def run_benchmark(cells: tuple[str, ...] = ("lstm", "gru"), cfg: BenchConfig | None = None,
                  progress: Callable[[str], None] | None = None) -> dict:
    """The CPU benchmark of docs/results/cpu-bench.md (``cellsearch bench``):
    ``{"lstm": {"vs_torch": R, "vs_interpreter": R, ...}, ...}``."""
    cfg = cfg or BenchConfig()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        from cellsearch.errors import ConfigError

        raise ConfigError("device cuda: CUDA is not available here", field="BenchConfig.device")
    from cellsearch.training.parallelism import torch_threads

    out: dict = {}
    with torch_threads(cfg.threads), _tf32(cfg):  # (the caller's thread count comes back after)
        for name in cells:
            out[name] = bench_cell(name, cfg, progress)
        threads = torch.get_num_threads()
    out["config"] = {"T": cfg.seq_len, "B": cfg.batch, "I": cfg.input_size, "H": cfg.hidden_size,
                     "rounds": cfg.rounds, "threads": threads, "torch": torch.__version__,
                     "device": torch.cuda.get_device_name() if cfg.device == "cuda" else "cpu"}
    if cfg.device == "cuda":
        out["config"]["tf32"] = cfg.tf32
    return out


@contextlib.contextmanager
def _tf32(cfg: BenchConfig) -> Iterator[None]:
    """TF32 as ``cfg`` says for cuDNN and cuBLAS alike, restored afterwards."""
    if cfg.device != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def bench_cudnn_sizes(cells: tuple[str, ...], rounds: int = 5, tf32: bool = False,
                      progress: Callable[[str], None] | None = None) -> dict:
    """The training-step ratio against cuDNN at ``CUDA_SIZES``: ``{"T=64 B=64 I=256 H=256": {"lstm":
    {"vs_cudnn": R, "variants_vs_cudnn": {...}, "tokens_per_s": {...}}, ...}, ...}``."""
    out: dict = {}
    for T, B, I, H in CUDA_SIZES:
        cfg = BenchConfig(seq_len=T, batch=B, input_size=I, hidden_size=H, rounds=rounds, min_time=0.2,
                          device="cuda", with_interpreter=False, tf32=tf32)
        r = run_benchmark(cells, cfg, progress)
        out[f"T={T} B={B} I={I} H={H}"] = {
            name: {"vs_cudnn": v["vs_torch"], "variants_vs_cudnn": v.get("variants_vs_torch", {}),
                   "tokens_per_s": v["tokens_per_s"]}
            for name, v in r.items() if name != "config" and "vs_torch" in v}
    return out


@dataclass
class PopulationBenchConfig:
    k: int = 8  # members
    cell: str = "lstm"
    task: str = "arith"
    hidden_size: int = 64  # the search's default training size
    batch: int = 32
    rounds: int = 5
    steps_per_round: int = 4  # training steps each contender takes per round
    threads: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:  # (checked when made: before anything is timed)
        check_sizes(batch=self.batch, hidden_size=self.hidden_size, rounds=self.rounds, threads=self.threads, k=self.k)
        check_number("steps_per_round", self.steps_per_round, 1, "steps", L.MAX_STEPS)


def bench_population(cfg: PopulationBenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Training-step time of a population of ``k`` members against one member trained alone.

    The members differ in seed (initialisation and data order). Solo: ``k`` separate trainers,
    each taking its steps in turn; population: one ``PopulationTrainer`` of the same members.
    ``speedup`` = k × (one member's step time alone) ÷ (the population's step time), the median
    over interleaved rounds of the per-round ratio. On ``cfg.threads`` torch threads (the caller's
    count comes back after)."""
    from cellsearch.training.parallelism import torch_threads

    with torch_threads(cfg.threads):
        return _bench_population(cfg, progress)


def _bench_population(cfg: PopulationBenchConfig, progress: Callable[[str], None] | None) -> dict:
    from cellsearch.training.config import TrainConfig
    from cellsearch.training.population import Member, PopulationTrainer
    from cellsearch.training.trainer import Trainer

    base = TrainConfig(cell=cfg.cell, task=cfg.task, hidden_size=cfg.hidden_size, batch_size=cfg.batch, steps=None,
                       seconds=L.MAX_TRAINING_SECONDS, device=cfg.device)
    members = [Member(seed=k) for k in range(cfg.k)]
    solos = [Trainer(m.apply(base)) for m in members]
    population = PopulationTrainer(base, members)
    sync = torch.cuda.synchronize if cfg.device == "cuda" else (lambda: None)

    def solo_time() -> float:
        sync()
        t0 = time.perf_counter()
        for trainer in solos:
            for _ in range(cfg.steps_per_round):
                trainer.train_step(next(trainer.stream))
        sync()
        return (time.perf_counter() - t0) / (cfg.steps_per_round * cfg.k)

    def population_time() -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(cfg.steps_per_round):
            population.train_step(population.trainers)
        sync()
        return (time.perf_counter() - t0) / cfg.steps_per_round

    solo_time(), population_time()  # warm up
    solo, pop = [], []
    for r in range(cfg.rounds):
        pair = (solo_time, population_time) if r % 2 == 0 else (population_time, solo_time)
        first, second = pair[0](), pair[1]()
        s, p = (first, second) if r % 2 == 0 else (second, first)
        solo.append(s)
        pop.append(p)
        if progress:
            progress(f"population of {cfg.k}: round {r + 1}/{cfg.rounds}")
    return {"k": cfg.k, "cell": cfg.cell, "task": cfg.task, "hidden": cfg.hidden_size, "batch": cfg.batch,
            "threads": torch.get_num_threads(), "solo_ms": round(1e3 * statistics.median(solo), 3),
            "population_ms": round(1e3 * statistics.median(pop), 3),
            "speedup": round(statistics.median(cfg.k * s / p for s, p in zip(solo, pop)), 3)}
