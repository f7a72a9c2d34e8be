"""The README and the guide in docs/: the README stays short and its Python example runs, the guide
builds with ``mkdocs build --strict`` (every link, anchor and API reference resolving), the layout
page lists exactly the modules of the package, and every results page is in the results index."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# the repository root, wherever in tests/ this file lives
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PACKAGE = ROOT / "cellsearch"


def _env() -> dict[str, str]:
    # the checkout first, so a subprocess reads this tree's cellsearch even without an install
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/ (the guide)"


def test_readme_test_command_is_what_ci_runs():
    """CI runs `.ci/run`; the README promises it runs exactly the README's test command."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert ci in [b.strip() for b in blocks], f"the README has no block with CI's command {ci!r}"


def _cli_commands() -> list[str]:
    """Every command of the ``cellsearch`` CLI, sub-commands spelt out (``"cells info"``)."""
    import typer.main

    from cellsearch.cli import app

    def walk(cmd, prefix):
        if hasattr(cmd, "list_commands"):
            ctx = cmd.context_class(cmd)
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), [*prefix, name])
        else:
            yield " ".join(prefix)

    return sorted(walk(typer.main.get_command(app), []))


def test_readme_command_table_has_every_command():
    rows = [line.split(" | ")[0] for line in README.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `cellsearch ")]
    commands = _cli_commands()
    assert len(commands) > 20, commands
    missing = [c for c in commands if not any(re.search(rf"`(cellsearch )?{re.escape(c)}[ `]", row) for row in rows)]
    assert not missing, f"commands without a row in the README's command table: {missing}"


def test_readme_python_example_runs(tmp_path):
    """The README's Python example, run as a newcomer would paste it (in an empty folder)."""
    blocks = _python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"the README should have one Python example, found {len(blocks)}"
    script = tmp_path / "example.py"
    script.write_text(blocks[0], encoding="utf-8")
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip(), "the example prints what it computed"
    assert [p.name for p in tmp_path.iterdir()] == ["example.py"], "the example leaves no files behind"


def _guide_examples() -> list[tuple[str, str]]:
    """(page, code) for every guide page with Python examples: its blocks joined in order, but for a
    block right after a ``<!-- not run: why -->`` line."""
    pages = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        blocks = [m.group(1) for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
                  if not text[:m.start()].rstrip().endswith("-->")]
        if blocks:
            pages.append((page.name, "\n".join(blocks)))
    return pages


@pytest.mark.slow
@pytest.mark.parametrize("page, code", _guide_examples(), ids=[p for p, _ in _guide_examples()])
def test_guide_python_examples_run(page, code, tmp_path):
    """The guide's Python examples run as written, from a folder that has the repository's
    benchmarks/ (its replay tables) and nothing else, and print without an error."""
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks", target_is_directory=True)
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    res = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, f"docs/{page}:\n{res.stderr[-3000:]}"


def test_guide_builds_strictly(tmp_path):
    """`mkdocs build --strict`: every page in the nav, every link and anchor resolving, every
    ``::: cellsearch.x`` of the API reference found and its docstrings parsed without a warning."""
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (it comes with the dev extra)")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8").count("doc-heading") > 50


def _package_entries(pkg: Path) -> set[str]:
    """What a layout table of package ``pkg`` must list: its modules and its subpackages (``name/``)."""
    return ({p.name for p in pkg.glob("*.py") if p.name != "__init__.py"}
            | {d.name + "/" for d in pkg.iterdir() if d.is_dir() and (d / "__init__.py").exists()})


def _packages() -> list[Path]:
    return [PACKAGE] + sorted(d for d in PACKAGE.rglob("*") if d.is_dir() and (d / "__init__.py").exists())


def _layout_tables(text: str) -> dict[str, set[str]]:
    """``{"cellsearch/compile/": {"emit_forward.py", ...}, ...}`` from the layout page's "Every module"."""
    section = text.split("## Every module", 1)[1]
    tables: dict[str, set[str]] = {}
    current = None
    for line in section.splitlines():
        heading = re.match(r"^### `([^`]+)`", line)
        if heading:
            current = heading.group(1)
            assert current not in tables, f"layout: {current} has two tables"
            tables[current] = set()
        elif current and (row := re.match(r"^\| `([^`]+)` \|", line)):
            assert row.group(1) not in tables[current], f"layout: {current}{row.group(1)} listed twice"
            tables[current].add(row.group(1))
    return tables


def test_layout_page_lists_every_module_and_nothing_else():
    tables = _layout_tables((DOCS / "layout.md").read_text(encoding="utf-8"))
    assert len(tables) > 5, tables  # the parser found the tables (it must not pass by finding none)
    want = {f"{pkg.relative_to(ROOT).as_posix()}/": _package_entries(pkg) for pkg in _packages()}
    want = {pkg: entries for pkg, entries in want.items() if entries}  # library/, recipes/: data only
    problems = [f"{pkg}: no table" for pkg in want if pkg not in tables]
    problems += [f"{pkg}: a table, but no such package (or it has no modules)" for pkg in tables if pkg not in want]
    for pkg in set(want) & set(tables):
        problems += [f"{pkg}{name}: missing from docs/layout.md" for name in sorted(want[pkg] - tables[pkg])]
        problems += [f"{pkg}{name}: listed in docs/layout.md but does not exist"
                     for name in sorted(tables[pkg] - want[pkg])]
    assert not problems, "\n".join(problems)


def test_layout_layers_name_every_top_level_module_once():
    """The layer diagram (the first code block of the layout page) names each module and package at
    the package's top level exactly once, in its first column."""
    text = (DOCS / "layout.md").read_text(encoding="utf-8")
    block = re.search(r"^```\n(.*?)^```", text.split("## Layers", 1)[1], flags=re.M | re.S).group(1)
    named: list[str] = []
    for line in block.splitlines():
        if line and not line[0].isspace():
            named += re.split(r"\s{2,}", line.strip())[0].split()
    assert len(named) > 10, named
    assert sorted(named) == sorted(set(named)), f"named twice: {sorted({n for n in named if named.count(n) > 1})}"
    want = _package_entries(PACKAGE)
    assert not want - set(named), f"missing from the layer diagram: {sorted(want - set(named))}"
    assert not set(named) - want, f"in the layer diagram but not in cellsearch/: {sorted(set(named) - want)}"


def test_results_index_links_every_results_page():
    index = (DOCS / "results" / "index.md").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (DOCS / "results").glob("*.md") if p.name != "index.md")
    assert pages
    missing = [p for p in pages if f"]({p})" not in index]
    assert not missing, f"results pages without a row in docs/results/index.md: {missing}"
