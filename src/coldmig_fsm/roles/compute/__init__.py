"""The compute role: the service of one host, its hops, its start-up and periodic work."""

from coldmig_fsm.roles.compute.hops import Failure, Hop
from coldmig_fsm.roles.compute.service import HOPS, ComputeService, reconcile

__all__ = ["HOPS", "ComputeService", "Failure", "Hop", "reconcile"]
