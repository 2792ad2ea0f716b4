"""Child process of the kill test: migrate + confirm on SQLite, SIGKILLed after commit N.

Run as ``python -m tests.kill_child DB STATE N``: opens the database and the fake
hypervisor's state file made by the parent, then runs a migrate and a confirm; the
store's ``on_commit`` hook kills the process right after its N-th commit (so at every
boundary between two committed transactions, hops included). Exits 0 if it finished
first.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from coldmig_fsm import Cloud, SqliteStore
from coldmig_fsm.drivers import FakeHypervisor


class KillAfter:
    """An ``on_commit`` hook that SIGKILLs this process at the N-th commit once armed."""

    def __init__(self, kill_after: int) -> None:
        self.kill_after = kill_after
        self.commits = 0
        self.armed = False

    def __call__(self) -> None:
        if not self.armed:
            return
        self.commits += 1
        if self.commits >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


def open_cloud(db: Path, state: Path, store: SqliteStore) -> Cloud:
    hosts = store.list_hosts()
    hypervisor = FakeHypervisor([h.name for h in hosts], state_file=state)
    return Cloud({h.name: hypervisor.driver(h.name) for h in hosts}, store=store)


def main() -> int:
    db, state, kill_after = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    killer = KillAfter(kill_after)
    store = SqliteStore(db, on_commit=killer)
    cloud = open_cloud(db, state, store)
    killer.armed = True
    cloud.migrate("vm1").wait()
    cloud.confirm_resize("vm1").wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
