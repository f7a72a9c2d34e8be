"""Hostile inputs, second round (issue 24): recipes and population checkpoints.

Each probe runs the CLI in this process (``tests/support/hostile.py``): a refusal is exit
status 2, one stderr line, no traceback, under a memory cap and a time limit, with the files
around it hashed before and after. Population checkpoints are crafted by editing a real saved one as data
(``torch.load(weights_only=True)``, change, ``torch.save``), as an attacker would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cellsearch.training.recipes import RECIPE_FIELDS
from tests.support.hostile import cli, refused, unchanged

pytestmark = pytest.mark.timeout(60)

TINY = ["--hidden", "8", "--batch-size", "4", "-t", "max_digits=2", "-t", "eval_examples=8", "--no-progress"]


def trained(*args: str) -> Path:
    """Run ``cellsearch train ... --out OUT`` (OUT: the value after --out), check it succeeded, and
    return OUT's checkpoint."""
    out = cli("train", *args)
    assert out.exit_code == 0 and out.exception is None, (out.exception, out.stderr[-2000:])
    return Path(args[args.index("--out") + 1]) / "checkpoint.pt"


# ---------------------------------------------------------------------- recipes
# A valid value for every key a recipe may set (each different from the trainer's default, so the
# checkpoint shows whether the recipe's value is the one that trained).
RECIPE_VALUES = {
    "hidden_size": 6, "num_layers": 2, "embed_size": 5, "dropout": 0.1, "batch_size": 3, "steps": 1,
    "seconds": 30.0, "optimizer": "sgd", "lr": 0.01, "momentum": 0.5, "weight_decay": 0.001, "clip": 1.0,
    "lr_schedule": "cosine", "warmup_steps": 1, "init_scale": 0.5, "forget_bias": 1.0, "eval_batch_size": 16,
    "diverge_factor": 50.0, "ar": 0.5, "tar": 0.5, "state_limit": 5.0, "encoder": "gru",
}


def test_the_recipe_values_cover_the_allow_list():
    """Probe: recipes (the enumeration below must cover every key a recipe may set)."""
    assert set(RECIPE_VALUES) == set(RECIPE_FIELDS)


@pytest.mark.slow
@pytest.mark.parametrize("key", RECIPE_FIELDS)
def test_a_recipe_setting_any_allowed_key_trains_with_its_value(tmp_path, key):
    """Probe: recipes: a recipe that sets ``encoder:`` crashed `train` ("multiple values for
    'encoder'"); every allowed key must train with the recipe's value (or be refused in one line)."""
    recipe = tmp_path / "r.yaml"
    base = {"steps": 2, "hidden_size": 8, "batch_size": 4, "eval_batch_size": 8}
    recipe.write_text(json.dumps({**base, key: RECIPE_VALUES[key]}))  # JSON is YAML
    ckpt = trained("lstm", "--recipe", str(recipe), "--out", str(tmp_path / "out"),
                   "-t", "max_digits=2", "-t", "eval_examples=8", "--no-progress")
    config = torch.load(ckpt, weights_only=True)["config"]
    assert config[key] == RECIPE_VALUES[key]


def test_an_explicit_encoder_overrides_the_recipes(tmp_path):
    """Probe: recipes: with ``encoder:`` in the recipe, an explicit --encoder still wins."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("encoder: gru\nsteps: 1\n")
    ckpt = trained("lstm", "--recipe", str(recipe), "--encoder", "lstm", "--out", str(tmp_path / "out"), *TINY)
    assert torch.load(ckpt, weights_only=True)["config"]["encoder"] == "lstm"


# ---------------------------------------------------------------------- population checkpoints
@pytest.fixture(scope="module")
def populations(tmp_path_factory) -> dict[str, Path]:
    """Two real population checkpoints of two learning rates each: LSTM and GRU."""
    root = tmp_path_factory.mktemp("populations")
    return {cell: trained(cell, "--lrs", "1e-3,1e-2", "--steps", "2", "--out", str(root / cell), *TINY)
            for cell in ("lstm", "gru")}


def crafted(populations: dict[str, Path], folder: Path, edit) -> Path:
    """The LSTM population's checkpoint as data, changed by ``edit(ckpt, gru_ckpt)``, saved in ``folder``."""
    ckpt = torch.load(populations["lstm"], weights_only=True)
    edit(ckpt, torch.load(populations["gru"], weights_only=True))
    folder.mkdir()
    torch.save(ckpt, folder / "checkpoint.pt")
    return folder / "checkpoint.pt"


def test_a_population_of_different_cells_is_refused(populations, tmp_path):
    """Probe: populations: resuming a checkpoint whose members are different cells (LSTM and
    GRU) was a traceback."""
    def swap(ckpt, gru):
        ckpt["population"][1] = gru["population"][1]

    path = crafted(populations, tmp_path / "mixed", swap)
    with unchanged(tmp_path, populations["lstm"].parent):
        refused("train", "lstm", "--resume", str(path), "--steps", "3", "--out", str(tmp_path / "resumed"),
                "--no-progress", says=(str(path), "member 1 is another cell"))


def _label(ckpt, gru):  # member 0 says it trains at lr 0.5; its settings and optimizer: 1e-3
    ckpt["members"][0]["lr"] = 0.5


def _optimizer(ckpt, gru):  # member 1's optimizer decays its weights; its settings say it does not
    ckpt["population"][1]["optimizer"]["param_groups"][0]["weight_decay"] = 0.3


def _shared(ckpt, gru):  # member 1 trains with another dropout, a setting members share
    ckpt["population"][1]["config"]["dropout"] = 0.5


@pytest.mark.parametrize("edit, says", [
    (_label, "member 0 is labelled lr=0.5 but trains with lr=0.001"),
    (_optimizer, "optimizer state has weight_decay 0.3 where its training settings give 0.0"),
    (_shared, "member 1's training settings differ from member 0's in 'dropout'"),
])
def test_a_population_that_contradicts_itself_is_refused(populations, tmp_path, edit, says):
    """Probe: populations: a checkpoint whose member list disagrees with its optimizer state
    trained at one learning rate and labelled the members with another."""
    path = crafted(populations, tmp_path / "edited", edit)
    with unchanged(tmp_path, populations["lstm"].parent):
        refused("train", "lstm", "--resume", str(path), "--steps", "3", "--out", str(tmp_path / "resumed"),
                "--no-progress", says=(str(path), says))


def test_an_unedited_population_still_resumes(populations, tmp_path):
    """Probe: populations (control: the checks above refuse only what contradicts itself)."""
    path = crafted(populations, tmp_path / "as-saved", lambda ckpt, gru: None)
    resumed = trained("lstm", "--resume", str(path), "--steps", "3", "--out", str(tmp_path / "resumed"),
                      "--no-progress")
    ckpt = torch.load(resumed, weights_only=True)
    assert [m["step"] for m in ckpt["population"]] == [3, 3]
    assert ckpt["members"] == [{"lr": 0.001}, {"lr": 0.01}]
