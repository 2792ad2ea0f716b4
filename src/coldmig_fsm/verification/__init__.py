"""Verification: the invariants, the explorer and model checker, the generated documents."""
