"""Tests of cellsearch.strategies."""
