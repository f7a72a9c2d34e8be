"""The ops a cell may use: one object per op holding everything about it (see ``base.py``), collected in ``registry.py``."""
