"""The stateful suite on the shipped cloud: every operation, fault and restart.

One line per configuration, as a user would write it (``docs/verification.md``).
"""

from __future__ import annotations

from coldmig_fsm import Cloud, CloudConfig
from coldmig_fsm.testing import ColdMigrationMachine
from coldmig_fsm.verify import initial_cloud
from tests.testing.conftest import PROFILE


def default_cloud() -> Cloud:
    return initial_cloud(instances=2, hosts=3)


def same_host_cloud() -> Cloud:
    """Same-host resizes allowed, no auto-confirm: other paths of the scheduler."""
    return initial_cloud(instances=2, hosts=2, config=CloudConfig(allow_resize_to_same_host=True))


TestColdMigration = ColdMigrationMachine.for_cloud(default_cloud, settings=PROFILE).TestCase
TestSameHost = ColdMigrationMachine.for_cloud(
    same_host_cloud, settings=PROFILE.__class__(PROFILE, max_examples=300)
).TestCase
