"""coldmig_fsm."""
