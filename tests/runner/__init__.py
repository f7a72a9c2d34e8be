"""Tests of cellsearch.runner."""
