"""Symmetry reduction: one canonical encoding for every state that differs only in names.

Hosts whose records are equal but for their names (same capacity, same flags) are
interchangeable, and so are instances whose initial records are equal but for their
names, uuids and hosts: renaming them consistently everywhere (records, claims, queue,
guests, armed faults, budgets) gives a state that behaves the same, up to the same
renaming. :func:`canonical` maps a cloud's :func:`~coldmig_fsm.verification.explorer.abstract`
picture to one encoding per such class of states, so that the model checker expands each
class once. Why the invariants do not notice the renaming is written down in
``docs/verification.md`` ("Symmetry reduction").

How the representative is chosen (a canonical form, not a heuristic: two states get the
same encoding if and only if one is a renaming of the other within the classes):

* for each permutation of the instances within their classes (usually one: the default
  start has no two equal instances), the instance names are renamed;
* hosts are then numbered in the order they first occur in the parts whose order does
  not depend on host names (the instances by name, the migrations by id, the queue in
  order, the pending requests in order): the ``k``-th host of a class to occur gets the
  ``k``-th name of that class. Hosts that occur in none of those are ordered by what the
  rest of the picture says about them (liveness, guests, claims, armed faults), with
  their own names blanked: two such hosts with the same description can be swapped
  without changing the encoding;
* the parts that are sets (instances, claims, hosts, guests) are sorted again under the
  new names, and the smallest encoding over the instance permutations is the canonical
  one; its budgets are the instance budgets renamed the same way (the largest vector
  among the permutations with that encoding).

Invariant: :func:`canonical` of a renamed cloud equals :func:`canonical` of the cloud.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import attrs

from coldmig_fsm.runners.cloud import Cloud

__all__ = ["Symmetry", "canonical"]


def _blank_instance(cloud: Cloud, name: str) -> Hashable:
    instance = cloud.instance(name)
    return repr(attrs.evolve(instance, uuid="-", name="-", host="-", node=None))


def _blank_host(cloud: Cloud, name: str) -> Hashable:
    host = cloud.store.get_host(name)
    return None if host is None else repr(attrs.evolve(host, name="-", heartbeat_at=None))


@attrs.frozen
class Symmetry:
    """Classes of interchangeable hosts and instances (each class sorted by name).

    Attributes:
        hosts: the host names, grouped by equal records.
        instances: the instance names, grouped by equal initial records.
    """

    hosts: tuple[tuple[str, ...], ...]
    instances: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, cloud: Cloud) -> Symmetry:
        """The classes of ``cloud`` as it is now (the model checker's start)."""
        hosts: dict[Hashable, list[str]] = {}
        for host in sorted(cloud.hosts):
            hosts.setdefault(_blank_host(cloud, host), []).append(host)
        instances: dict[Hashable, list[str]] = {}
        for instance in sorted(i.name for i in cloud.store.list_instances()):
            instances.setdefault(_blank_instance(cloud, instance), []).append(instance)
        return cls(
            tuple(tuple(group) for group in hosts.values()),
            tuple(tuple(group) for group in instances.values()),
        )

    @property
    def order(self) -> int:
        """How many renamings the group has (1: no reduction possible)."""
        size = 1
        for group in (*self.hosts, *self.instances):
            for k in range(2, len(group) + 1):
                size *= k
        return size

    def instance_permutations(self) -> Iterator[dict[str, str]]:
        """Every renaming of the instances within their classes (identity first)."""
        classes = [g for g in self.instances if len(g) > 1]
        for choice in itertools.product(*(itertools.permutations(g) for g in classes)):
            mapping: dict[str, str] = {}
            for group, image in zip(classes, choice, strict=True):
                mapping.update(zip(group, image, strict=True))
            yield mapping


def _pattern(names: Sequence[str]) -> re.Pattern[str]:
    # Longest first, whole words: vm1 is not a prefix match of vm10.
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


class _Renamer:
    """Renames the strings of a nested tuple (whole strings, and names inside text)."""

    def __init__(self, mapping: dict[str, str], pattern: re.Pattern[str]) -> None:
        self.mapping = mapping
        self.pattern = pattern
        self.whole = {**mapping, **{f"compute:{k}": f"compute:{v}" for k, v in mapping.items()}}

    def __call__(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            found = self.whole.get(value)
            if found is not None:
                return found
            if self.pattern.search(value) is None:
                return value
            return self.pattern.sub(lambda m: self.mapping.get(m.group(), m.group()), value)
        if kind is tuple:
            return tuple([self(v) for v in value])
        return value


def _resort(picture: tuple[Any, ...], guests_by_name: bool) -> tuple[Any, ...]:
    """Sort again the parts of an abstract picture that are sets (after a renaming), in
    the order :func:`~coldmig_fsm.verification.explorer.abstract` gives them (so that a
    picture that needed no renaming is already sorted). The guests on a host are in the
    order of their uuids there, which a renaming of instances does not follow: with
    ``guests_by_name`` (interchangeable instances) they are sorted by name instead."""
    inst, mig, alloc, queue, req, hosts, guests, armed = picture
    if guests_by_name:
        guests = tuple((h, tuple(sorted(g, key=repr))) for h, g in guests)
    return (
        tuple(sorted(inst, key=lambda i: i[0])),
        mig,
        tuple(sorted(alloc)),
        queue,
        req,
        tuple(sorted(hosts, key=lambda h: h[0])),
        tuple(sorted(guests, key=lambda x: x[0])),
        armed,
    )


def _host_order(
    picture: tuple[Any, ...], symmetry: Symmetry, pattern: re.Pattern[str]
) -> dict[str, str]:
    """The renaming of hosts by first occurrence (see the module docstring)."""
    inst, mig, alloc, queue, req, hosts, guests, armed = picture
    ordered = repr((tuple(sorted(inst, key=lambda i: i[0])), mig, queue, req))
    seen: dict[str, None] = {}
    for found in pattern.findall(ordered):
        seen.setdefault(found, None)
    mapping: dict[str, str] = {}
    for group in symmetry.hosts:
        members = set(group)
        first = [h for h in seen if h in members]
        rest = [h for h in group if h not in seen]
        if len(rest) > 1:

            def described(host: str) -> str:
                blank = _Renamer({host: "?"}, _pattern([host]))
                return repr(
                    (
                        [blank(h[1:]) for h in hosts if h[0] == host],
                        [blank(g) for h, g in guests if h == host],
                        sorted(repr(blank(a)) for a in alloc if a[1] == host),
                        [blank(a) for a in armed if a[0] == host],
                    )
                )

            rest.sort(key=described)
        mapping.update(zip([*first, *rest], group, strict=True))
    return mapping


def canonical(
    picture: tuple[Any, ...],
    ops: tuple[int, ...],
    names: Sequence[str],
    symmetry: Symmetry | None,
) -> tuple[str, tuple[int, ...]]:
    """The encoding of ``picture`` (an abstract picture) and the per-instance budgets
    ``ops`` (in the order of ``names``) renamed to the canonical representative.

    Without ``symmetry`` (or with a group of order 1) the encoding is ``repr(picture)``.
    """
    if symmetry is None or symmetry.order == 1:
        return repr(picture), ops
    all_names = [*names, *(h for g in symmetry.hosts for h in g)]
    pattern = _pattern(all_names)
    host_pattern = _pattern([h for g in symmetry.hosts for h in g])
    guests_by_name = any(len(g) > 1 for g in symmetry.instances)
    best: tuple[str, tuple[int, ...]] | None = None
    for instances in symmetry.instance_permutations():
        renamed = picture
        if any(k != v for k, v in instances.items()):
            renamed = _Renamer(instances, pattern)(picture)
        hosts = _host_order(renamed, symmetry, host_pattern)
        if any(k != v for k, v in hosts.items()):
            renamed = _Renamer(hosts, host_pattern)(renamed)
        if renamed is not picture or guests_by_name:
            renamed = _resort(renamed, guests_by_name)
        encoding = repr(renamed)
        by_name = {instances.get(n, n): left for n, left in zip(names, ops, strict=True)}
        budgets = tuple(by_name[n] for n in names)
        if (
            best is None
            or encoding < best[0]
            or (encoding == best[0] and tuple(-b for b in budgets) < tuple(-b for b in best[1]))
        ):
            best = (encoding, budgets)
    assert best is not None
    return best
