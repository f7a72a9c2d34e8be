"""Helpers shared by test modules (not tests themselves): random cells, CLI probes, differential checks, paths."""
