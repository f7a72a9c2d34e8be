"""Tests of cellsearch.compile."""
