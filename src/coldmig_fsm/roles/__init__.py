"""The roles of a move, each run as its own service, talking only through messages.

* :mod:`~coldmig_fsm.roles.api`: the checks and first compare-and-swap of each request;
* :mod:`~coldmig_fsm.roles.conductor`: the move's coordinator (migration record,
  scheduling, alternates);
* :mod:`~coldmig_fsm.roles.scheduler`: Nova's filter scheduler, as a pure function;
* :mod:`~coldmig_fsm.roles.claims`: resource claims (placement allocations);
* :mod:`~coldmig_fsm.roles.compute`: the compute service of one host;
* :mod:`~coldmig_fsm.roles.runtime`: what every role shares (store, clock, config, machine).
* :mod:`~coldmig_fsm.roles.services`: a compute service's facts in its host record
  (capabilities, heartbeat, liveness);
* :mod:`~coldmig_fsm.roles.moves`: facts about a move that more than one role needs.
"""
