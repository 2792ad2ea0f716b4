"""Hypothesis profiles of the verification kit's tests (this package only).

``coldmig-ci`` (the default, run by ``make test``): 2,000 examples of the stateful suite,
derandomized so that CI is reproducible. ``coldmig-explore`` (``make explore``): 50,000
random examples, longer runs; set ``COLDMIG_HYPOTHESIS_PROFILE=coldmig-explore``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile(
    "coldmig-ci",
    max_examples=2_000,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
)
settings.register_profile(
    "coldmig-explore",
    max_examples=50_000,
    stateful_step_count=60,
    deadline=None,
)
PROFILE = settings.get_profile(os.environ.get("COLDMIG_HYPOTHESIS_PROFILE", "coldmig-ci"))
