"""Verification kit: test your driver, your configuration, or the machine itself.

* :class:`ColdMigrationMachine`: a Hypothesis ``RuleBasedStateMachine`` over every
  operation, fault and restart, checking the spec's invariants after every step;
  ``ColdMigrationMachine.for_cloud(factory).TestCase`` runs it on your cloud.
* :func:`check_driver`: plain-assert contract checks for a
  :class:`~coldmig_fsm.HypervisorDriver` implementation.
* :func:`check_store`: plain-assert contract checks for a
  :class:`~coldmig_fsm.stores.base.Store` backend (records, atomic blocks, queue,
  placement, logs, lookups, outbox).
* :class:`DriverComparisonMachine`: a stateful test running your driver beside the fake
  driver (the model) and comparing them after every call.
* :mod:`coldmig_fsm.testing.strategies`: Hypothesis strategies for clouds, flavors,
  instances in any state and fault plans.

Needs Hypothesis at run time: ``pip install coldmig_fsm[testing]``. The exhaustive model
checker is :mod:`coldmig_fsm.verification.model_check` (no Hypothesis needed).
"""

from coldmig_fsm.testing.driver_check import DriverComparisonMachine, DriverPair, check_driver
from coldmig_fsm.testing.stateful import ColdMigrationMachine
from coldmig_fsm.testing.store_check import check_store

__all__ = [
    "ColdMigrationMachine",
    "DriverComparisonMachine",
    "DriverPair",
    "check_driver",
    "check_store",
]
