"""Tests of cellsearch.export."""
