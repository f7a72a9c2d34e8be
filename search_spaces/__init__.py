"""The shipped search spaces, one YAML file each (installed with the package as ``cellsearch.spaces.builtin``).

This folder is the only copy: pyproject.toml maps the package ``cellsearch.spaces.builtin`` to it,
so a wheel and an editable install both carry these files; ``cellsearch.spaces.registry`` reads
them with ``importlib.resources``. See docs/search_spaces.md for the format.
"""
