"""Hypothesis settings for this package's tests: a fixed budget and a fixed seed in CI.

Property tests choose their own ``max_examples`` (sized to a few seconds each); this profile
makes every run draw the same examples (``derandomize``), so CI time and results do not vary,
and keeps no example database between runs. ``HYPOTHESIS_PROFILE=explore`` draws fresh random
examples on every run (same budgets), for hunting bugs locally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
