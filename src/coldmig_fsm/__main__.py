"""``python -m coldmig_fsm`` is the ``coldmig`` command."""

from .cli import main

main()
