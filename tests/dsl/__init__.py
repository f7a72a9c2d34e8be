"""Tests of cellsearch.dsl."""
