"""A training's saved model: the files it writes, checkpoint saves, and a model loaded back from a checkpoint.

Reading a checkpoint file safely (as data, checked field by field) is ``cellsearch.training.checkpoint``'s;
this module builds on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cellsearch.dsl.io import loads_cell
from cellsearch.errors import ConfigError
from cellsearch.fileio import WriteError
from cellsearch.nn.model import ModelConfig, SeqModel
from cellsearch.records import record_from_dict
from cellsearch.training.checkpoint import load_checkpoint, restore_error


CHECKPOINT_FILE = "checkpoint.pt"  # the final checkpoint in a training's output directory
OUTPUT_FILES = (CHECKPOINT_FILE, "metrics.json")  # what a training (and `cellsearch train`) writes there


def save_checkpoint(save: Callable[[Path], Path], path: Path, last: Path | None) -> Path:
    """``save(path)``; when the file system refuses it (a full disk), the one-line error says which
    checkpoint is kept: ``last`` (the last one this training wrote), else the file at ``path``
    from before (an atomic write leaves it as it was)."""
    try:
        return save(path)
    except WriteError as exc:
        kept = last if last is not None else (path if path.is_file() else None)
        if kept is None:
            raise exc.advised("no checkpoint of this training was written; free space and train again") from None
        raise exc.advised(f"the last good checkpoint, {kept}, is kept: free space and continue from it "
                          f"(Trainer.from_checkpoint, `cellsearch train ... --resume {kept}`)") from None


def checkpoint_encoder(ckpt: dict, path: str | Path):
    """The encoder cell a checkpoint stored (not the file its settings name: that may have changed
    or gone), or None for a language model."""
    return loads_cell(ckpt["encoder_yaml"], source=f"{path}:encoder") if "encoder_yaml" in ckpt else None


def load_model(path: str | Path) -> tuple[SeqModel, Any, dict]:
    """A trained model from a checkpoint, with its vocabulary and the checkpoint dict."""
    from cellsearch.tasks.base import Vocab

    ckpt = load_checkpoint(path)
    graph = loads_cell(ckpt["cell_yaml"], source=f"{path}:cell")
    config = record_from_dict(ModelConfig, ckpt["model_config"], f"{path}: model settings")
    encoder = checkpoint_encoder(ckpt, path)
    if config.encoder is None and encoder is None and graph.memory:  # (the trainer's qa layout: nn/memory_qa.py)
        raise ConfigError(f"{path} holds a memory network that answers {ckpt.get('task', {}).get('name')} questions; "
                          "it generates no text: draw its attention with `cellsearch analyze hops`")
    if config.encoder is not None and encoder is None:
        raise ConfigError(f"{path}: damaged checkpoint: an encoder-decoder model without its encoder cell")
    try:
        model = SeqModel(graph, config, encoder=encoder)
        model.load_state_dict(ckpt["model"])
        vocab = Vocab.from_state(ckpt["vocab"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise restore_error(path, exc) from None
    if len(vocab) != config.vocab_size:
        raise ConfigError(f"{path}: damaged checkpoint: {len(vocab)} tokens, but the model has "
                          f"{config.vocab_size} outputs")
    model.eval()
    return model, vocab, ckpt
