"""Where the tests find the repository and the data shared beside it.

``SHARED`` is the folder beside the checkout that holds downloaded data (PTB, NAS-Bench-NLP
samples); tests that need it skip when it is absent.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
