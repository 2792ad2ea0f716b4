"""Hypothesis profiles of the verification kit's tests (this package only).

``coldmig-ci`` (the default, run by ``make test``): 2,000 examples of the stateful suite,
derandomized so that CI is reproducible. ``coldmig-explore`` (``make explore``): 20,000
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
# About 50 programs of 60 steps per second on one core: 20,000 take 7 to 15 minutes.
settings.register_profile(
    "coldmig-explore",
    max_examples=20_000,
    stateful_step_count=60,
    deadline=None,
)
PROFILE_NAME = os.environ.get("COLDMIG_HYPOTHESIS_PROFILE", "coldmig-ci")
PROFILE = settings.get_profile(PROFILE_NAME)
TIMEOUT = 3_600 if PROFILE_NAME == "coldmig-explore" else 900
"""Seconds the main stateful test may take under this profile (pytest-timeout)."""
