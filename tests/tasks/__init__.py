"""Tests of cellsearch.tasks."""
