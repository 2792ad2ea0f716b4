"""preflight: would the API accept it, where would it go; nothing changes."""

from __future__ import annotations

from coldmig_fsm import Caller, Cloud
from tests.conftest import make_cloud
from tests.test_api_guards import world


def test_preflight_names_the_host_and_alternates_and_changes_nothing() -> None:
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("big", "m1.medium", "host-c")
    before = world(cloud)
    answer = cloud.preflight("vm1")
    assert (answer.accepted, answer.host, answer.alternates, answer.error_type) == (
        True,
        "host-b",
        ("host-c",),
        None,
    )
    assert answer.would_start
    assert world(cloud) == before
    # And the real move goes where the preflight said.
    assert cloud.migrate("vm1").wait().ok
    assert cloud.instance("vm1").host == "host-b"


def test_preflight_reports_the_guard_error(cloud: Cloud) -> None:
    answer = cloud.preflight("vm1", caller=Caller.owner("demo"))
    assert (answer.accepted, answer.error_type, answer.host) == (
        False,
        "PolicyNotAuthorized",
        None,
    )
    answer = cloud.preflight("vm1", flavor="m1.tiny")
    assert (answer.accepted, answer.error_type) == (False, "CannotResizeToSameFlavor")


def test_preflight_accepted_but_no_host() -> None:
    cloud = make_cloud(1)
    cloud.boot("vm1", "m1.tiny", "host-a")
    before = world(cloud)
    answer = cloud.preflight("vm1", flavor="m1.small")
    assert (answer.accepted, answer.host, answer.error_type, answer.would_start) == (
        True,
        None,
        "NoValidHost",
        False,
    )
    assert world(cloud) == before
