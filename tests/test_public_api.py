"""The exported names are the product: pin them."""

from __future__ import annotations

import coldmig_fsm
from coldmig_fsm import exceptions


def test_all_is_sorted_and_complete() -> None:
    names = coldmig_fsm.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(coldmig_fsm, name), name
    assert {"Cloud", "Operation", "MACHINE", "HypervisorDriver", "FakeHypervisor"} <= set(names)


def test_exception_tree_and_stdlib_bases() -> None:
    assert issubclass(exceptions.InstanceNotFound, LookupError)
    assert issubclass(exceptions.PolicyNotAuthorized, PermissionError)
    assert issubclass(exceptions.InstanceInvalidState, RuntimeError)
    assert issubclass(exceptions.CannotResizeDisk, ValueError)
    assert issubclass(exceptions.MaxRetriesExceeded, exceptions.NoValidHost)
    assert issubclass(exceptions.HypervisorError, OSError)
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.ColdmigError)
        assert name in (exceptions.__doc__ or ""), f"{name} missing from the tree"
