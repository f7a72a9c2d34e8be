"""Encoder-decoder models: the seq2seq task layout, encoding with padding, decoding from an
encoded source, attention cells trained from the CLI, checkpoints, and bad options."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from cellsearch.cli import app
from cellsearch.errors import ConfigError
from cellsearch.library import get_cell
from cellsearch.nn.decoding import beam_search, greedy
from cellsearch.nn.model import Encoded, ModelConfig, SeqModel
from cellsearch.tasks import make_task
from cellsearch.training.config import TrainConfig
from cellsearch.training.trainer import Trainer
from cellsearch.training.saved_model import load_model


def _task(name="reverse", **options):
    task = make_task(name, seed=0, **options)
    task.use_layout("seq2seq")
    return task


def test_seq2seq_layout_puts_the_prompt_in_the_source():
    task = _task()
    batch = task.encode([("abc=", "cba"), ("d=", "d")])
    v = task.vocab
    assert batch.source[:, 0].tolist() == v.encode("abc=")
    assert batch.source[:, 1].tolist() == [*v.encode("d="), v.pad, v.pad]
    assert batch.source_mask.t().tolist() == [[True] * 4, [True, True, False, False]]
    assert batch.inputs[:, 0].tolist() == [v.bos, *v.encode("cba")]
    assert batch.targets[:, 0].tolist() == [*v.encode("cba"), v.eos]
    assert batch.mask.t().tolist() == [[True] * 4, [True, True, False, False]]


def _model(cell="attn-gru", encoder="gru", hidden=8, vocab=14, seed=0):
    torch.manual_seed(seed)
    model = SeqModel(get_cell(cell), ModelConfig(vocab_size=vocab, hidden_size=hidden, encoder=encoder))
    return model.double().eval()


@pytest.mark.parametrize("cell", ["attn-gru", "attn-lstm", "gru"])
def test_padding_in_the_source_changes_nothing(cell):
    """A sequence decodes to the same logits alone and batched beside a longer, padded one."""
    model = _model(cell)
    task = _task()
    pair = task.encode([("abcdef=", "fedcba"), ("ab=", "ba")])
    alone = task.encode([("ab=", "ba")])
    logits_pair, _ = model(pair.inputs, model.start(pair))
    logits_alone, _ = model(alone.inputs, model.start(alone))
    T = alone.inputs.shape[0]
    torch.testing.assert_close(logits_pair[:T, 1], logits_alone[:, 0], rtol=1e-10, atol=1e-10)


def test_the_decoder_reads_the_source():
    model = _model()
    task = _task()
    a, b = task.encode([("abc=", "cba")]), task.encode([("abd=", "cba")])
    la, _ = model(a.inputs, model.start(a))
    lb, _ = model(b.inputs, model.start(b))
    assert not torch.allclose(la, lb)


def test_stepwise_decoding_equals_the_whole_sequence():
    """model.step from the encoded state, token by token, gives the teacher-forced logits."""
    model = _model("attn-lstm")
    task = _task()
    batch = task.encode([("abcd=", "dcba"), ("ab=", "ba")])
    whole, _ = model(batch.inputs, model.start(batch))
    state = model.start(batch)
    for t in range(batch.inputs.shape[0]):
        logits, state = model.step(batch.inputs[t], state)
        torch.testing.assert_close(logits, whole[t], rtol=1e-10, atol=1e-10)
    assert isinstance(state, Encoded)


def test_greedy_and_beam_decode_from_the_encoded_source():
    model = _model()
    task = _task()
    batch = task.encode([("abc=", "cba")])
    state = model.encode(batch.source, batch.source_mask)
    out = greedy(model, batch.inputs[:1], 6, eos_id=task.vocab.eos, state=state)
    best = beam_search(model, batch.inputs[:1, 0], 1, 6, eos_id=task.vocab.eos, state=state)
    toks = out[:, 0].tolist()
    if task.vocab.eos in toks:
        toks = toks[:toks.index(task.vocab.eos) + 1]
    assert best[0][0] == toks  # a beam of one is greedy decoding


def test_a_memory_cell_needs_an_encoder_and_an_encoder_no_memory():
    with pytest.raises(ConfigError, match="from an encoder; set encoder"):
        SeqModel(get_cell("attn-gru"), ModelConfig(vocab_size=10, hidden_size=8))
    with pytest.raises(ConfigError, match="reads a memory"):
        SeqModel(get_cell("gru"), ModelConfig(vocab_size=10, hidden_size=8, encoder="attn-gru"))
    model = _model()
    with pytest.raises(ConfigError, match="decodes from"):
        model(torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.slow
def test_attention_decoder_learns_reverse_and_its_checkpoint_reloads(tmp_path):
    cfg = TrainConfig(cell="attn-gru", task="reverse", task_options={"max_length": 4, "eval_examples": 64},
                      hidden_size=32, steps=150, lr=0.01, seed=0)
    trainer = Trainer(cfg)
    result = trainer.run(out_dir=tmp_path)
    assert result.status == "ok"
    assert result.metrics["accuracy"] > 0.6, result.metrics  # chance is 1/8 per symbol
    model, vocab, ckpt = load_model(tmp_path / "checkpoint.pt")
    assert model.is_seq2seq and ckpt["model_config"]["encoder"] == "gru"
    task = _task(max_length=4, eval_examples=64)
    assert task.evaluate(model)["accuracy"] == pytest.approx(result.metrics["accuracy"])


@pytest.mark.slow
def test_cli_trains_an_attention_cell_and_generates(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "attn-gru", "--task", "reverse", "--steps", "3", "--hidden", "8",
                              "--json", "--out", str(tmp_path / "run"), "-t", "eval_examples=16"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["cell"] == "attn-gru" and set(payload["metrics"]) >= {"accuracy", "exact_match_long"}
    model = SeqModel(get_cell("attn-gru"), ModelConfig(vocab_size=3, hidden_size=8, encoder="gru"))
    decoder, encoder = (sum(p.numel() for p in m.parameters()) for m in (model.rnn, model.encoder))
    assert payload["params"] == decoder + encoder and encoder > 0  # the encoder's cell counts too
    res = runner.invoke(app, ["generate", str(tmp_path / "run"), "--prompt", "abc=", "--length", "5"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("abc=")
    res = runner.invoke(app, ["train", "lstm", "--encoder", "gru", "--task", "copy", "--steps", "2", "--hidden", "8",
                              "--json", "--out", str(tmp_path / "plain"), "-t", "eval_examples=16"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("args, message", [
    (["attn-gru", "--task", "xml"], "task xml has no seq2seq layout"),
    (["gru", "--encoder", "attn-gru", "--task", "copy"], "the encoder cell 'attn-gru' reads a memory"),
    (["gru", "--encoder", "nosuch", "--task", "copy"], "no built-in cell named 'nosuch'"),
])
def test_bad_encoder_options_give_one_line(tmp_path, args, message):
    res = CliRunner().invoke(app, ["train", *args, "--steps", "1", "--hidden", "8", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert message in res.output
    assert len(res.output.strip().splitlines()) == 1


# ---------------------------------------------------------------------- the attention space
@pytest.mark.slow
def test_attention_space_offers_no_attention_and_every_kind():
    from cellsearch.dsl.hashing import canonical_hash
    from cellsearch.spaces import load_space

    space = load_space("attention")
    assert space.reads_memory() and not load_space("dag4").reads_memory()
    assert space.decisions()[-1].name == "attention"
    cells = space.distinct_cells()
    kinds = sorted({next((n.attr("kind") for n in g.nodes if n.op == "attend"), "none") for _, g in cells.values()})
    assert kinds == ["additive", "dot", "general", "none"]
    assert len(cells) == 4 * len(load_space("dag4").distinct_cells())
    for choices, graph in list(cells.values())[::37]:  # encode inverts decode, with and without attention
        assert canonical_hash(space.decode(space.encode(graph))) == canonical_hash(graph)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["random", "regularized-evolution", "tpe", "rl", "evolution"])
def test_every_strategy_searches_the_attention_space(tmp_path, strategy):
    """search → leaderboard → export --format py of a cell with attend, run standalone."""
    import subprocess
    import sys

    runner = CliRunner()
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["search", "--space", "attention", "--strategy", strategy, "--tasks", "reverse",
                              "--trials", "4", "--budget", "2", "--hidden", "8", "--backend", "local",
                              "--name", "att", "--runs", str(runs), "--reference", "attn-gru", "--no-progress",
                              "--seed", "1"])
    assert res.exit_code == 0, res.output
    config = json.loads((runs / "att" / "config.json").read_text())
    assert config["train"]["encoder"] == "gru"  # every candidate decodes from an encoder
    res = runner.invoke(app, ["leaderboard", str(runs / "att"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    # (Jozefowicz's evolution rejects candidates in its filter stages: "rejected" is a result too)
    assert rows and all(r["status"] in ("ok", "rejected") for r in rows) and rows[0]["status"] == "ok"
    if strategy != "random":
        return
    rank = next((r["rank"] for r in rows if "attend(" in json.dumps(r["equations"])), None)
    assert rank is not None, "no candidate with attention in the run"
    out = tmp_path / "best.py"
    res = runner.invoke(app, ["export", str(runs / "att"), "--rank", str(rank), "-f", "py", "-o", str(out),
                              "-I", "8", "-H", "8"])
    assert res.exit_code == 0, res.output
    script = ("import torch, best\n"
              "m = best.load()\n"
              "mask = torch.tensor([[True, True, False], [True, True, True]])\n"
              "out, (h,) = m(torch.randn(4, 2, 8), memory=(torch.randn(2, 3, 8),), memory_mask=(mask,))\n"
              "assert out.shape == (4, 2, 8) and torch.isfinite(out).all()\n"
              "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("args, message", [
    (["--tasks", "reverse", "--encoder", "nosuch"], "no built-in cell named 'nosuch'"),
    (["--tasks", "reverse", "--encoder", "attn-gru"], "the encoder cell 'attn-gru' reads a memory"),
    (["--tasks", "ptb"], "task ptb has no seq2seq layout"),
    (["--tasks", "reverse,xml"], "task xml has no seq2seq layout"),
])
def test_search_refuses_a_bad_encoder_or_task_in_one_line(tmp_path, args, message):
    res = CliRunner().invoke(app, ["search", "--space", "attention", *args, "--backend", "local",
                                   "--runs", str(tmp_path), "--no-progress"])
    assert res.exit_code == 2
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing started


def test_a_runaway_encoder_cannot_poison_a_neighbour_through_padding():
    """Padding rows of the memory are 0 and the encoder is bounded like the decoder: a short
    source decodes alike alone and next to a long one whose encoder runs away."""
    from cellsearch.dsl.io import loads_cell

    runaway = loads_cell("name: runaway\ninputs: [x]\nstates: [h]\nnodes:\n  h: 20 * h_prev + tanh(linear(x))\n")
    torch.manual_seed(0)
    task = _task()
    model = SeqModel(get_cell("attn-gru"), ModelConfig(vocab_size=len(task.vocab), hidden_size=8,
                                                       state_limit=10.0), encoder=runaway).double().eval()
    pair = task.encode([("abc=", "cba"), ("abcdefghabcdefghabcdefghabcdefgh=", "a")])
    alone = task.encode([("abc=", "cba")])
    logits_pair, _ = model(pair.inputs, model.start(pair))
    logits_alone, _ = model(alone.inputs, model.start(alone))
    assert torch.isfinite(logits_pair).all()
    T = alone.inputs.shape[0]
    torch.testing.assert_close(logits_pair[:T, 0], logits_alone[:, 0], rtol=1e-10, atol=1e-10)


def test_attention_map_paths_are_checked(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "attn-gru", "--task", "copy", "--steps", "1", "--hidden", "8", "--json",
                              "--out", str(tmp_path / "run"), "-t", "eval_examples=16"])
    assert res.exit_code == 0, res.output
    for path, message in ((tmp_path / "missing" / "m.png", "no directory"), (tmp_path / "m.foo", "should end in")):
        res = runner.invoke(app, ["generate", str(tmp_path / "run"), "--prompt", "ab=", "--attention-map", str(path)])
        assert res.exit_code == 2 and message in res.output, res.output


def test_population_members_of_an_encoder_decoder_equal_their_solo_runs():
    from cellsearch.training.population import Member, PopulationTrainer

    cfg = TrainConfig(cell="attn-gru", task="copy", task_options={"max_length": 4, "eval_examples": 32},
                      hidden_size=8, steps=6)
    members = [Member(seed=0), Member(seed=1, lr=5e-3)]
    results = PopulationTrainer(cfg, members).run()
    for member, got in zip(members, results):
        solo = Trainer(member.apply(cfg))
        solo.run()
        assert got.metrics == solo.final_metrics or got.metrics == solo.result().metrics


def test_attention_maps_are_distributions_over_the_real_source_rows():
    model = _model("attn-gru")
    task = _task()
    batch = task.encode([("abcdef=", "fedcba"), ("ab=", "ba")])
    maps = model.attention_maps(batch.inputs, model.start(batch))
    (name, weights), = maps.items()
    assert name == "c" and weights.shape == (batch.inputs.shape[0], 2, batch.source.shape[0])
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2], dtype=weights.dtype))
    assert not weights[:, 1, 3:].any()  # the second source has 3 real tokens: padding gets no weight


def test_attention_maps_hold_only_weights_over_the_source_for_a_decoder_with_its_own_memory():
    """A decoder that also carries an NTM memory with location-addressed heads traces weights over
    its memory rows too (address, interpolate, shift, sharpen): the maps keep the attend nodes only."""
    from cellsearch.spaces import load_space

    space = load_space("memory_attention")
    names = [d.name for d in space.decisions()]
    choices = [0] * len(names)
    choices[names.index("attention")] = space.decisions()[names.index("attention")].choices.index("dot*2")
    choices[names.index("memory")] = space.decisions()[names.index("memory")].choices.index("ntm-location")
    graph = space.decode(choices)
    torch.manual_seed(0)
    model = SeqModel(graph, ModelConfig(vocab_size=14, hidden_size=8, encoder="gru")).double().eval()
    batch = _task().encode([("abcdef=", "fedcba"), ("ab=", "ba")])
    maps = model.attention_maps(batch.inputs, model.start(batch))
    assert len(maps) == 2  # two hops of attention
    for weights in maps.values():
        assert weights.shape == (batch.inputs.shape[0], 2, batch.source.shape[0])


def test_cli_draws_an_attention_map(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "attn-lstm", "--task", "copy", "--steps", "2", "--hidden", "8", "--json",
                              "--out", str(tmp_path / "run"), "-t", "eval_examples=16"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["generate", str(tmp_path / "run"), "--prompt", "abc=", "--length", "4",
                              "--attention-map", str(tmp_path / "map.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "map.png").stat().st_size > 1000
    res = runner.invoke(app, ["train", "gru", "--task", "copy", "--steps", "1", "--hidden", "8", "--json",
                              "--out", str(tmp_path / "lm"), "-t", "eval_examples=16"])
    res = runner.invoke(app, ["generate", str(tmp_path / "lm"), "--prompt", "abc=", "--attention-map",
                              str(tmp_path / "no.png")])
    assert res.exit_code == 2 and "--attention-map needs an encoder-decoder model" in res.output
