"""A step that loops fails fast, naming the request that did not settle."""

from __future__ import annotations

import re

import pytest

from coldmig_fsm import Cloud
from coldmig_fsm.messages import Message
from coldmig_fsm.roles.conductor import Conductor
from coldmig_fsm.runners.cloud import MAX_STEPS
from tests.conftest import make_cloud


def looping(monkeypatch: pytest.MonkeyPatch) -> Cloud:
    """A conductor regression: it sends every message it gets to itself again."""

    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")

    def handle(self: Conductor, message: Message) -> None:
        cloud.store.push_message(message)

    monkeypatch.setattr(Conductor, "handle", handle)
    return cloud


def test_the_default_cap_is_low() -> None:
    assert MAX_STEPS == 1_000


def test_wait_on_a_looping_request_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = looping(monkeypatch)
    operation = cloud.migrate("vm1")
    uuid = cloud.instance("vm1").uuid
    expected = (
        f"still busy after 1000 messages: request {operation.request_id} (migrate of "
        f"instance {uuid}) did not settle; the last message delivered: migrate_server to "
        f"conductor for request {operation.request_id}"
    )
    with pytest.raises(RuntimeError, match=f"^{re.escape(expected)}$"):
        operation.wait()


def test_run_on_a_looping_request_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = looping(monkeypatch)
    operation = cloud.migrate("vm1")
    with pytest.raises(
        RuntimeError, match=re.escape(f"request {operation.request_id} (migrate of ")
    ):
        cloud.run()
    assert len(cloud.pending()) == 1  # it stopped at the cap, with the loop still going
    with pytest.raises(RuntimeError, match=r"^still busy after 5 messages: "):
        cloud.run(max_steps=5)


def test_a_request_that_cannot_progress_is_pending_not_an_error() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.lose_next("migrate_server")
    result = cloud.migrate("vm1").wait()
    assert (result.outcome.value, result.error_type) == ("pending", "OperationPending")
    assert cloud.run() == 0
