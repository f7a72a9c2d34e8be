"""Tests of cellsearch.analysis."""
