"""Test configuration.

Hypothesis runs derandomized by default so that CI is reproducible: the same examples every run.
Explore new examples locally with ``HYPOTHESIS_PROFILE=explore python -m pytest ...``.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
