"""The compute role: the service of one host, its hops, its start-up and periodic work."""

from coldmig_fsm.roles.compute.service import ComputeService, reconcile

__all__ = ["ComputeService", "reconcile"]
