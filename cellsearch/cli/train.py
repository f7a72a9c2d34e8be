"""``cellsearch train``, ``generate`` and ``data``: training a cell on a task, decoding, data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from cellsearch.cli import check_picture, cli_errors, console, err_console
from cellsearch.errors import ConfigError

data_app = typer.Typer(help="Data sets: download (with SHA-256 checks) and verify.", no_args_is_help=True)


def parse_options(items: list[str] | None) -> dict:
    """``key=value`` pairs; values parsed as YAML scalars (numbers, booleans, strings).

    The values go through the cell files' YAML loader, so they are held to the same limits
    (depth, size, aliases) and a bad one is a one-line ConfigError."""
    from cellsearch.dsl.io import load_yaml
    from cellsearch.errors import CellError
    from cellsearch.limits import shown

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"expected KEY=VALUE, got {shown(item)}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()], _ = load_yaml(value, "")
        except CellError as exc:
            raise ConfigError(f"option {shown(key.strip())}: {exc.reason}") from None
    return out


def parse_list(text: str | None, option: str, kind: type) -> list | None:
    """A comma-separated list of numbers (``--seeds 0,1,2``); None when the option is not given."""
    from cellsearch.limits import MAX_POPULATION, shown

    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ConfigError(f"{option}: expected a comma-separated list of numbers, got {shown(text)}")
    if len(items) > MAX_POPULATION:
        raise ConfigError(f"{option}: {len(items)} values exceed the limit of {MAX_POPULATION} (population size)")
    try:
        return [kind(t) for t in items]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ConfigError(f"{option}: expected a comma-separated list of {what}, got {shown(text)}") from None


def explicit(ctx: typer.Context, param: str) -> bool:
    """Whether the option ``param`` was given on the command line (or by the environment), not
    left at its default: explicit options override a recipe's settings."""
    # by name: typer may bring its own copy of click, whose ParameterSource is another class
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


# TrainConfig field → the parameter of `cellsearch train` that sets it (minutes set seconds). Only the
# options given reach TrainConfig: its defaults are the command's (the ones shown in --help are
# TrainConfig's, as tests/test_library_api.py checks; not imported here, which would load torch)
TRAIN_FLAGS = {"task": "task", "steps": "steps", "seconds": "minutes", "hidden_size": "hidden", "num_layers": "layers",
               "seed": "seed", "batch_size": "batch_size", "lr": "lr", "optimizer": "optimizer", "clip": "clip",
               "lr_schedule": "lr_schedule", "dropout": "dropout", "forget_bias": "forget_bias",
               "init_scale": "init_scale", "ar": "ar", "tar": "tar", "state_limit": "state_limit",
               "scheduled_sampling": "scheduled_sampling", "ss_k": "ss_k", "eval_every": "eval_every",
               "data_dir": "data_dir", "threads": "threads", "device": "device", "encoder": "encoder",
               "objective": "objective", "reward": "reward", "mixer_xent_steps": "mixer_xent_steps",
               "mixer_every": "mixer_every", "mixer_delta": "mixer_delta", "memory_rows": "memory_rows"}


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``generate`` commands and the ``data`` group (download, verify) to ``app``."""
    app.add_typer(data_app, name="data")

    @app.command("train")
    @cli_errors
    def train_cmd(
        ctx: typer.Context,
        cell: Annotated[str, typer.Argument(help="Built-in cell name or YAML file.")],
        recipe: Annotated[Optional[str], typer.Option(
            help="Training recipe: a shipped name (default, nasbench-nlp, darts-search, darts-final) or a YAML file; the options "
                 "given explicitly override its settings.")] = None,
        task: Annotated[str, typer.Option(help="arith | xml | memorize | ptb | copy | repeat-copy | reverse | sort | addition | "
                                                      "recall | anbn | anbncn | anbmcnm | string-memorization | "
                                                      "binary-addition | babi | digits | digits-caption")] = "arith",
        steps: Annotated[Optional[int], typer.Option(help="Budget in optimizer steps.")] = None,
        minutes: Annotated[Optional[float], typer.Option(help="Budget in minutes (with --steps: first to end).")] = None,
        hidden: Annotated[int, typer.Option(help="Hidden size.")] = 128,
        layers: Annotated[int, typer.Option(help="Stacked layers.")] = 1,
        seed: Annotated[int, typer.Option(help="Seed for data, initialisation and dropout.")] = 0,
        out: Annotated[Optional[Path], typer.Option(help="Output directory (default runs/train-CELL-TASK-sSEED).")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Print the final metrics as one JSON object.")] = False,
        batch_size: Annotated[int, typer.Option(help="Sequences per batch.")] = 32,
        lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-3,
        optimizer: Annotated[str, typer.Option(help="adam | sgd")] = "adam",
        clip: Annotated[float, typer.Option(help="Max gradient norm (0: off).")] = 5.0,
        lr_schedule: Annotated[str, typer.Option(help="constant | cosine | linear")] = "constant",
        dropout: Annotated[float, typer.Option(help="Dropout between layers.")] = 0.0,
        forget_bias: Annotated[Optional[float], typer.Option(help="Initial bias of the gate named f.")] = None,
        init_scale: Annotated[float, typer.Option(help="Cell weights uniform(±scale/√H).")] = 1.0,
        ar: Annotated[float, typer.Option(help="Activation regularisation: AR × mean square of the last layer's "
                                               "outputs joins the gradient (AWD-LSTM's alpha; 0: off).")] = 2.0,
        tar: Annotated[float, typer.Option(help="Temporal activation regularisation: TAR × mean square of the change "
                                                "between consecutive outputs (AWD-LSTM's beta; 0: off).")] = 1.0,
        state_limit: Annotated[float, typer.Option(help="Bound on a runaway cell: a layer whose outputs leave "
                                                        "±LIMIT is run again step by step with values outside it set "
                                                        "to 0 (0: no bound).")] = 10.0,
        scheduled_sampling: Annotated[Optional[str], typer.Option(
            help="linear | exponential | inverse_sigmoid decay of teacher forcing.")] = None,
        ss_k: Annotated[float, typer.Option(help="Scheduled-sampling decay speed (see TrainConfig).")] = 1000.0,
        eval_every: Annotated[int, typer.Option(help="Steps between validation runs (0: at the end).")] = 0,
        data_dir: Annotated[Optional[Path], typer.Option(help="Data root for PTB (default $CELLSEARCH_DATA).")] = None,
        task_option: Annotated[Optional[List[str]], typer.Option(
            "--task-option", "-t", help="Task setting KEY=VALUE, e.g. -t max_digits=4 (repeatable).")] = None,
        threads: Annotated[Optional[int], typer.Option(help="torch CPU threads.")] = None,
        device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
        resume: Annotated[Optional[Path], typer.Option(help="Continue from this checkpoint.")] = None,
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
        seeds: Annotated[Optional[str], typer.Option(
            help="Train one member per seed, e.g. 0,1,2,3, as one population (batched).")] = None,
        lrs: Annotated[Optional[str], typer.Option(help="Members' learning rates, e.g. 1e-3,3e-3 (with --seeds: "
                                                        "every combination).")] = None,
        init_scales: Annotated[Optional[str], typer.Option(help="Members' init scales (combined likewise).")] = None,
        weight_decays: Annotated[Optional[str], typer.Option(help="Members' weight decays.")] = None,
        clips: Annotated[Optional[str], typer.Option(help="Members' gradient clips (0: off).")] = None,
        encoder: Annotated[Optional[str], typer.Option(
            help="Encoder cell (built-in or YAML): train CELL as the decoder of an encoder-decoder model on a "
                 "task of prompts and answers (default: gru for a cell that reads a memory, e.g. attn-gru; "
                 "none otherwise).")] = None,
        objective: Annotated[str, typer.Option(
            help="xent (teacher forcing) | reinforce (REINFORCE on the sampled answer's edit-distance reward, "
                 "average baseline) | mixer (teacher forcing, then REINFORCE on a growing tail: Ranzato et al. "
                 "2016); the last two need an encoder-decoder model.")] = "xent",
        reward: Annotated[str, typer.Option(help="REINFORCE's sequence reward: edit (1 - edit distance / length) "
                                                 "| exact (1 for an exact answer, else 0).")] = "edit",
        mixer_xent_steps: Annotated[int, typer.Option(help="MIXER: steps of pure teacher forcing first.")] = 200,
        mixer_every: Annotated[int, typer.Option(help="MIXER: steps between moves of the boundary.")] = 100,
        mixer_delta: Annotated[int, typer.Option(help="MIXER: answer tokens the boundary moves each time.")] = 1,
        memory_rows: Annotated[int, typer.Option(help="Rows of the memory of a cell with a memory state "
                                                      "(e.g. ntm).")] = 16,
    ) -> None:
        """Train a cell on a task within a budget; save a checkpoint and the validation metrics.

        With --seeds/--lrs/... it trains every combination of the lists as one population (one
        batched model; each member equals its own solo training) and --json prints a list with one
        object per member, each with a "member" object naming its settings."""
        from cellsearch.training.checkpoint import checkpoint_file, is_population_file
        from cellsearch.cli.progress import progress_bars
        from cellsearch.fileio import atomic_write
        from cellsearch.training.population import PopulationTrainer, members_product
        from cellsearch.training.config import TrainConfig
        from cellsearch.training.trainer import Trainer

        if recipe is not None and resume is not None:
            raise ConfigError("--resume continues with the checkpoint's own settings; leave out --recipe")
        if minutes is not None:  # (in minutes, as given: the training's own check speaks in seconds)
            from cellsearch import limits

            limits.check_minutes(minutes, "--minutes")  # (the command's own option: no library field)
        seconds = minutes * 60 if minutes is not None else None
        lists = {"seed": parse_list(seeds, "--seeds", int), "lr": parse_list(lrs, "--lrs", float),
                 "init_scale": parse_list(init_scales, "--init-scales", float),
                 "weight_decay": parse_list(weight_decays, "--weight-decays", float),
                 "clip": parse_list(clips, "--clips", float)}
        members = members_product(**lists) if any(v is not None for v in lists.values()) else None
        population = None
        if resume is not None and is_population_file(checkpoint_file(resume)):
            if members is not None:
                raise ConfigError("--resume continues a population with its own members; leave out --seeds/--lrs/...")
            # the budget given now (else the default one) replaces the checkpoint's: the run continues to it
            population = PopulationTrainer.from_checkpoint(resume, steps=steps, seconds=seconds)
            cfg = population.cfg
        elif resume is not None:
            if members is not None:
                raise ConfigError("--resume continues one training; leave out --seeds/--lrs/...")
            trainer = Trainer.from_checkpoint(resume, steps=steps, seconds=seconds)
            cfg = trainer.cfg
        else:
            # flags to fields, and only the flags given: the defaults are TrainConfig's, and a recipe's
            # settings lie between them and the options given (Recipe.train_config)
            values = {"task": task, "steps": steps, "seconds": seconds, "hidden_size": hidden, "num_layers": layers,
                      "seed": seed, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                      "clip": clip or None, "lr_schedule": lr_schedule, "dropout": dropout,
                      "forget_bias": forget_bias, "init_scale": init_scale, "ar": ar, "tar": tar,
                      "state_limit": state_limit or None, "scheduled_sampling": scheduled_sampling, "ss_k": ss_k,
                      "eval_every": eval_every, "data_dir": str(data_dir) if data_dir else None,
                      "threads": threads, "device": device, "encoder": encoder, "objective": objective,
                      "reward": reward, "mixer_xent_steps": mixer_xent_steps, "mixer_every": mixer_every,
                      "mixer_delta": mixer_delta, "memory_rows": memory_rows}
            given: dict[str, Any] = {field: values[field] for field, flag in TRAIN_FLAGS.items() if explicit(ctx, flag)}
            given.update(cell=cell, task_options=parse_options(task_option))
            if recipe is not None:
                from cellsearch.training.recipes import load_recipe

                cfg = load_recipe(recipe).train_config(given)
            else:
                cfg = TrainConfig(**given)
            if members is not None:
                population = PopulationTrainer(cfg, members)
            else:
                trainer = Trainer(cfg)
        if population is not None:
            out_dir = out or Path("runs") / f"train-{Path(cfg.cell).stem}-{cfg.task}-population"
            with progress_bars(progress and not json_out) as bars:
                results = population.run(progress=bars, out_dir=out_dir)
            rows = [{**r.to_json(), "member": m.to_json()} for r, m in zip(results, population.members)]
            atomic_write(Path(out_dir) / "metrics.json", json.dumps(rows, indent=2) + "\n")
            if json_out:
                print(json.dumps(rows))
                return
            _print_population(rows)
            return
        out_dir = out or Path("runs") / f"train-{Path(cfg.cell).stem}-{cfg.task}-s{cfg.seed}"
        with progress_bars(progress and not json_out) as bars:  # (on stdout, as the results)
            result = trainer.run(progress=bars, out_dir=out_dir)
        payload = result.to_json()
        atomic_write(Path(out_dir) / "metrics.json", json.dumps(payload, indent=2) + "\n")
        if json_out:
            print(json.dumps(payload))
            return
        console.print(f"{payload['cell']} on {payload['task']}: status {payload['status']}, {payload['steps']} steps "
                      f"in {payload['seconds']:.1f}s, {payload['params']:,} cell parameters")
        for k, v in payload["metrics"].items():
            console.print(f"  {k}: {v if v is None else round(v, 4)}")
        console.print(f"checkpoint: {payload['checkpoint']}")

    def _print_population(rows: list[dict]) -> None:
        from rich.table import Table

        first = rows[0]
        console.print(f"{first['cell']} on {first['task']}: {len(rows)} members trained as one population, "
                      f"{first['params']:,} cell parameters each")
        metrics = list(first["metrics"])
        table = Table(show_header=True, header_style="bold")
        for col in ("member", "status", "steps", *metrics):
            table.add_column(col)
        for row in rows:
            member = " ".join(f"{k}={v}" for k, v in row["member"].items())
            values = [("—" if row["metrics"].get(k) is None else f"{row['metrics'][k]:.4g}") for k in metrics]
            table.add_row(member, row["status"], str(row["steps"]), *values)
        console.print(table)
        console.print(f"checkpoint: {first['checkpoint']}")

    @app.command("generate")
    @cli_errors
    def generate_cmd(
        checkpoint: Annotated[Path, typer.Argument(help="A checkpoint.pt (or its directory) from `cellsearch train`.")],
        prompt: Annotated[str, typer.Option(help="Text to start from (characters; words for PTB).")] = "",
        beam: Annotated[Optional[int], typer.Option(help="Beam search with this many beams.")] = None,
        temperature: Annotated[Optional[float], typer.Option(help="Sample with this temperature.")] = None,
        top_k: Annotated[Optional[int], typer.Option(help="Sample only from the k most likely tokens.")] = None,
        length: Annotated[int, typer.Option(help="Tokens to generate at most.")] = 50,
        length_penalty: Annotated[float, typer.Option(help="Beam score / len**penalty.")] = 0.0,
        seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
        attention_map: Annotated[Optional[Path], typer.Option(
            help="An encoder-decoder model: draw where its decoder attended while answering (PNG).")] = None,
        image: Annotated[Optional[Path], typer.Option(
            help="A digits model: write a grid of sampled images (PNG; a conditional model: a row per class).")] = None,
        test_image: Annotated[Optional[int], typer.Option(
            help="A digits-caption model: caption test image N (0..249) instead of a prompt; "
                 "--attention-map then draws over the image.")] = None,
    ) -> None:
        """Continue a prompt with a trained model: greedy by default, --temperature samples, --beam searches."""
        import torch

        from cellsearch.limits import MAX_SEED, check_new_path, check_number
        from cellsearch.nn.decoding import beam_search, check_decoding, greedy, sample
        from cellsearch.training.saved_model import load_model

        if beam is not None and temperature is not None:
            raise ConfigError("use either --beam or --temperature, not both")
        # every setting before the model is loaded
        check_decoding(length, beam_size=beam, temperature=temperature, top_k=top_k, length_penalty=length_penalty)
        check_number("--seed", seed, 0, "seed", MAX_SEED)
        if attention_map is not None:
            check_new_path("--attention-map", attention_map)
        check_image_options(image, test_image, prompt, beam, attention_map)
        model, vocab, ckpt = load_model(checkpoint)
        task_name = ckpt["task"].get("name")
        if attention_map is not None:
            if not (model.is_seq2seq and model.graph.memory):
                raise ConfigError("--attention-map needs an encoder-decoder model whose decoder attends (e.g. attn-gru)")
            check_picture(attention_map, "--attention-map")
        if image is not None:
            if task_name != "digits":
                raise ConfigError(f"--image needs a model trained on the digits task (this one: {task_name})")
            check_picture(image, "--image")
            path = sample_grid(model, bool(ckpt["task"].get("conditional")), image, temperature, top_k, seed)
            err_console.print(f"image: {path}")
            return
        shown_image = None
        if test_image is not None:
            from cellsearch.tasks.digits import digit_splits
            from cellsearch.tasks.digits_caption import image_text

            if task_name != "digits-caption":
                raise ConfigError(f"--test-image needs a model trained on the digits-caption task (this one: {task_name})")
            shown_image = digit_splits()["test"][0][test_image].reshape(8, 8)
            prompt = image_text(shown_image)
        word_level = task_name == "ptb"
        tokens = prompt.split() if word_level else list(prompt)
        unknown = [t for t in tokens if t not in vocab.stoi and "<unk>" not in vocab.stoi]
        if unknown:
            raise ConfigError(f"prompt has tokens the model does not know: {''.join(unknown)!r}")
        ids = vocab.encode(tokens)
        state = None
        if model.is_seq2seq:  # the prompt is the source; the decoder starts from <bos>
            if not ids:
                raise ConfigError("an encoder-decoder model needs a prompt to encode (e.g. --prompt 'abc=')")
            state = model.encode(torch.tensor(ids, dtype=torch.long)[:, None])
            ids = [vocab.bos]
        elif vocab.bos >= 0:
            ids = [vocab.bos, *ids]
        if not ids:
            ids = [vocab.eos]  # PTB: start a new sentence
        eos = vocab.eos if vocab.eos >= 0 and not word_level else None
        x = torch.tensor(ids, dtype=torch.long)
        if beam is not None:
            hyps = beam_search(model, x, beam, length, eos_id=eos, length_penalty=length_penalty, state=state)
            outs: list[tuple[list[int], float | None]] = [(h, score) for h, score in hyps]
        elif temperature is not None:
            gen = torch.Generator().manual_seed(seed)
            outs = [(sample(model, x[:, None], length, temperature, top_k, eos, gen, state)[:, 0].tolist(), None)]
        else:
            outs = [(greedy(model, x[:, None], length, eos, state)[:, 0].tolist(), None)]
        for toks, score in outs:
            if eos is not None and eos in toks:
                toks = toks[: toks.index(eos)]
            words = vocab.decode(toks)
            text = " ".join(w if w != "<eos>" else "\n" for w in words) if word_level else "".join(words)
            line = prompt + (" " if word_level and prompt else "") + text if shown_image is None else text
            print(f"{line}" if score is None else f"{score:.4f}\t{line}")
        if attention_map is not None:
            from cellsearch.analysis.attention import plot_attention

            answer = outs[0][0]
            answer = answer[: answer.index(eos) + 1] if eos is not None and eos in answer else answer
            read = torch.tensor([vocab.bos, *answer[:-1]] if answer else [vocab.bos], dtype=torch.long)[:, None]
            maps = model.attention_maps(read, state)
            shown = [vocab.itos[t] for t in answer] or ["<none>"]
            title = f"{task_name}: {model.graph.name}"
            if shown_image is not None:  # the attention over the memory's 64 rows drawn on the image's grid
                from cellsearch.analysis.images import plot_image_attention

                path = plot_image_attention(shown_image, maps, shown, attention_map,
                                            title=f"{title}, test image {test_image}")
            else:
                path = plot_attention(maps, list(tokens), shown, attention_map, title=title)
            err_console.print(f"attention map: {path}")

    @data_app.command("download")
    @cli_errors
    def download_cmd(
        name: Annotated[str, typer.Argument(help="Data set name (ptb).")],
        data_dir: Annotated[Optional[Path], typer.Option(help="Data root (default $CELLSEARCH_DATA or the user cache).")] = None,
        url: Annotated[Optional[str], typer.Option(help="Base URL to download from.")] = None,
    ) -> None:
        """Download a data set, verifying every file's SHA-256 (a corrupted file is refused)."""
        from cellsearch.cli.progress import progress_bars
        from cellsearch.tasks.data import download

        with progress_bars(True, err_console) as bars:
            folder = download(name, data_dir, base_url=url, progress=bars)
        console.print(f"{name}: {folder}")

    @data_app.command("verify")
    @cli_errors
    def verify_cmd(name: Annotated[str, typer.Argument(help="Data set name (ptb).")],
                   data_dir: Annotated[Optional[Path], typer.Option(help="Data root.")] = None) -> None:
        """Check that a data set is present and its checksums are right."""
        from cellsearch.tasks.data import verify

        folder = verify(name, data_dir)
        console.print(f"{name}: ok ({folder})")


def check_image_options(image: Path | None, test_image: int | None, prompt: str, beam: int | None,
                        attention_map: Path | None) -> None:
    """Refuse ``generate``'s image options where they cannot apply (one-line ConfigErrors), before the model loads."""
    from cellsearch.limits import check_new_path, check_number

    if image is not None:
        check_new_path("--image", image)
        if beam is not None:
            raise ConfigError("--image samples images: use --temperature (default 1), not --beam")
        if prompt:
            raise ConfigError("--image samples whole images: leave out --prompt")
        if test_image is not None or attention_map is not None:
            raise ConfigError("--image samples from a digits model; --test-image and --attention-map "
                              "caption with a digits-caption model: use one or the other")
    if test_image is not None:
        from cellsearch.tasks.digits import SPLIT_SIZES

        check_number("--test-image", test_image, 0)
        if test_image >= SPLIT_SIZES["test"]:
            raise ConfigError(f"--test-image must be at most {SPLIT_SIZES['test'] - 1} "
                              f"(the digits test set has {SPLIT_SIZES['test']} images), not {test_image}")
        if prompt:
            raise ConfigError("use either --prompt or --test-image, not both")


def sample_grid(model: Any, conditional: bool, path: Path, temperature: float | None, top_k: int | None,
                seed: int) -> Path:
    """Sample digits from a digits model into a PNG grid: a conditional model 10 of each class,
    a row per class; an unconditional one 40 images, 10 a row."""
    import torch

    from cellsearch.analysis.images import plot_image_grid
    from cellsearch.tasks.digits import CLASSES, NAMES, DigitsTask

    task = DigitsTask(conditional=conditional)
    gen = torch.Generator().manual_seed(seed)
    classes = torch.arange(CLASSES).repeat_interleave(10) if conditional else None
    count = len(classes) if classes is not None else 40
    images = task.sample_images(model, count, classes, 1.0 if temperature is None else temperature, gen,
                                top_k=top_k)
    return plot_image_grid(images, path, row_labels=list(NAMES) if conditional else None,
                           title=f"{model.graph.name} on digits{' given the class' if conditional else ''}")


__all__ = ["register", "parse_options", "err_console"]
