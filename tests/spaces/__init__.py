"""Tests of cellsearch.spaces."""
