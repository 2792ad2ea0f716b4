"""``python -m coldmig_fsm`` is the ``coldmig`` command."""

from coldmig_fsm.cli.app import main

main()
