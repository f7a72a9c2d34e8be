"""``python -m cellsearch`` = the ``cellsearch`` command."""

from cellsearch.cli import main

main()
