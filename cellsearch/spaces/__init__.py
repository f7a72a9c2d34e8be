"""Search spaces: fixed-length categorical decisions → valid, compilable cells.

``load_space(spec)`` builds a space from a shipped name (``SPACE_NAMES``), a YAML file or a
dict; ``list_spaces()`` describes the shipped ones. Kinds: ``tree`` (Zoph & Le 2017),
``mutation`` (Jozefowicz et al. 2015), ``dag`` (ENAS/DARTS), ``graph`` (NAS-Bench-NLP-like) and
``finite`` (a list of cells, e.g. Greff et al. 2017). See docs/search_spaces.md.
"""

from cellsearch.spaces.base import Candidate, Decision, InvalidCandidate, Space
from cellsearch.spaces.registry import SPACE_NAMES, list_spaces, load_space

__all__ = ["Space", "Decision", "Candidate", "InvalidCandidate", "load_space", "list_spaces", "SPACE_NAMES"]
