"""Where a trained NTM's heads look: the row each head weights most at every step of one example.

Loads a checkpoint of a language model whose cell has weights states (the built-in ``ntm``: ``wr``
and ``ww``), runs one copy-like prompt and its answer through the reference interpreter with the
trained weights (``--text``, ``=`` between prompt and answer) and prints, per input character, the
most weighted row of each head and that weight (after the step that read the character): a head
that learnt to move by one row per symbol counts up through the rows.

    python benchmarks/ntm_heads.py runs/train-ntm-copy-s0/checkpoint.pt --text abcdefghabcdefgh=abcdefghabcdefgh
"""

from __future__ import annotations

import argparse

import torch


def head_trace(model, vocab, text: str) -> dict[str, torch.Tensor]:
    """Every head's weights (T, N) while the model reads ``<bos>`` + ``text``."""
    from cellsearch.compile.interpreter import InterpretedCell

    tokens = torch.tensor([vocab.bos, *vocab.encode(list(text))]).unsqueeze(1)  # (T, 1)
    cell = model.rnn.cells[0]
    oracle = InterpretedCell(model.graph, cell.input_size, cell.hidden_size, params=cell.params,
                             memory_rows=model.config.memory_rows)
    values: dict[str, list[torch.Tensor]] = {s: [] for s in model.graph.weight_states}
    with torch.no_grad():
        state = tuple(s[0] for s in model.rnn.initial_state(1))
        for t in range(tokens.shape[0]):
            _, state = oracle(model.embed(tokens[t:t + 1]), state)
            for name, value in zip(model.graph.states, state):
                if name in values:
                    values[name].append(value[0])
    return {k: torch.stack(v) for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--text", default="abcdefghabcdefgh=abcdefghabcdefgh")
    args = ap.parse_args()
    from cellsearch.training.saved_model import load_model

    model, vocab, _ = load_model(args.checkpoint)
    trace = head_trace(model, vocab, args.text)
    print("char " + " ".join(f"{k:>10}" for k in trace))
    for t, ch in enumerate(["<bos>", *args.text]):
        print(f"{ch:>5} " + " ".join(f"{int(w[t].argmax()):>3} ({float(w[t].max()):.2f})" for w in trace.values()))


if __name__ == "__main__":
    main()
