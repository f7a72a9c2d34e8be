"""Tests of cellsearch.cli."""
