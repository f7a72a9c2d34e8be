"""Tests of run storage: results.db, a run's files, the writer lock, replay tables (cellsearch.storage)."""
