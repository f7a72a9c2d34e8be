"""A search run on disk: its folder and files, the results database, the settings, outcomes and benchmark tables.

Nothing is imported here: import the module that holds what you need (reading a run's results
must not load torch).
"""
