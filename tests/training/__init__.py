"""Tests of training: the trainer, populations, objectives, optimizer groups, the allocator, recipes (cellsearch.training)."""
