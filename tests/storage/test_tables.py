"""Replay tables and table outputs, hostile: an output in the way and garbage, mistyped or oversized
tables are refused in one line before a run directory exists; row and data-size limits are read
from the metadata (Parquet) or stop one row past the limit (CSV, JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.hostile import cli, refused, unchanged

# A hang guard: each refusal takes a second; a table read past its limit would take minutes.
pytestmark = pytest.mark.timeout(60)


def test_a_table_output_in_the_way_is_refused(run_copy, tmp_path):
    (tmp_path / "folder.csv").mkdir()
    refused("runs", "export", str(run_copy), "-o", str(tmp_path / "folder.csv"), says="is a directory")
    (tmp_path / "file").write_text("keep me")
    refused("runs", "export", str(run_copy), "-o", str(tmp_path / "file" / "t.csv"), says="is a file")
    assert (tmp_path / "file").read_text() == "keep me"
    res = cli("runs", "export", str(run_copy), "-o", str(tmp_path / "t.csv"))
    assert res.exit_code == 0, res.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # written whole, then renamed


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_a_garbage_replay_table_is_refused_before_the_run_exists(tmp_path, suffix):
    table = tmp_path / f"table{suffix}"
    table.write_bytes(b"\x00\xff garbage \n" * 50 + os.urandom(500))
    runs = tmp_path / "runs"
    refused("search", "--runs", str(runs), "--benchmark", str(table), "--no-progress", says=str(table))
    assert not runs.exists()


# ---------------------------------------------------------------------- replay tables
def replay_refused(tmp_path: Path, table: Path, says) -> None:
    """``search --benchmark TABLE`` is refused in one line, before the run directory exists."""
    runs = tmp_path / "runs"
    with unchanged(tmp_path):
        refused("search", "--space", "greff", "--trials", "2", "--runs", str(runs), "--benchmark", str(table),
                "--no-progress", says=(str(table), *says))
    assert not runs.exists()


def test_a_table_with_non_numeric_params_is_refused(tmp_path):
    """Probe: replay tables: a non-numeric ``params`` column was a traceback."""
    table = tmp_path / "t.csv"
    table.write_text("hash,score,params\nabc,0.5,1200\ndef,0.4,lots\n")
    replay_refused(tmp_path, table, ("column 'params'", "row 2", "'lots'"))


@pytest.mark.parametrize("statuses", [(1, "weird"), (["ok"],)])
def test_a_table_with_mixed_types_in_status_is_refused(tmp_path, statuses):
    """Probe: replay tables: mixed types in ``status`` (a number beside text, a list) were a traceback."""
    table = tmp_path / "t.json"
    table.write_text("".join(json.dumps({"hash": f"h{i}", "score": 0.5, "status": s}) + "\n"
                             for i, s in enumerate(statuses)))
    replay_refused(tmp_path, table, ("column 'status' must hold text", "row 1"))


def test_a_small_parquet_file_of_sixty_million_rows_is_refused_before_reading(tmp_path):
    """Probe: replay tables: a small Parquet file that expands to 60 million rows ended in an
    ArrowMemoryError at 3 GB; its row count is checked from the metadata before reading."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cellsearch.limits import MAX_TABLE_ROWS

    rows = 1_000_000  # one row group: the same hash and score a million times (a few KB encoded)
    group = pa.table({"hash": pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype="int8")), pa.array(["h"])),
                      "score": pa.array(np.zeros(rows))})
    table = tmp_path / "t.parquet"
    with pq.ParquetWriter(table, group.schema) as writer:
        for _ in range(60):
            writer.write_table(group)
    assert table.stat().st_size < 1 << 20 and 60 * rows > MAX_TABLE_ROWS
    replay_refused(tmp_path, table, ("60000000 exceeds limit 'table rows'",))


def test_a_parquet_table_whose_data_decodes_past_the_limit_is_refused(tmp_path, monkeypatch):
    """Probe: replay tables: the decoded size a Parquet file's metadata states is checked before
    reading (the limit lowered here so that a small file passes it)."""
    import pandas as pd

    import cellsearch.storage.benchmark_tables as tables

    monkeypatch.setattr(tables, "MAX_TABLE_DATA_BYTES", 64 << 10)
    table = tmp_path / "t.parquet"
    pd.DataFrame({"hash": ["h"], "score": [0.5], "cell_yaml": ["x" * (1 << 20)]}).to_parquet(table)
    assert table.stat().st_size < 64 << 10
    replay_refused(tmp_path, table, ("exceeds limit 'table data size'",))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_a_text_table_past_the_row_limit_is_refused_after_reading_one_row_more(tmp_path, monkeypatch, suffix):
    """Probe: replay tables: CSV and JSON tables stop reading one row past the row limit (lowered
    here; the file holds many more rows)."""
    import cellsearch.storage.benchmark_tables as tables

    monkeypatch.setattr(tables, "MAX_TABLE_ROWS", 10)
    table = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        table.write_text("hash,score\n" + "h,0.5\n" * 10_000)
    else:
        table.write_text('{"hash": "h", "score": 0.5}\n' * 10_000)
    replay_refused(tmp_path, table, ("more than 10 exceeds limit 'table rows'",))
