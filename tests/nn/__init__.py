"""Tests of cellsearch.nn."""
