"""Runners: what runs the roles. :class:`~coldmig_fsm.runners.cloud.Cloud` runs them all
in one process and delivers their messages itself."""
