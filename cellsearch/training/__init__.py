"""Training a model: the budgeted trainer, populations trained as one, objectives, checkpoints and recipes.

Nothing is imported here, so that reading a setting (``cellsearch.training.config``) does not load
the trainer: import the module that holds what you need.
"""
