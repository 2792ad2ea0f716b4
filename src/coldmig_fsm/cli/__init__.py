"""The ``coldmig`` command line."""

from coldmig_fsm.cli.app import app, main

__all__ = ["app", "main"]
