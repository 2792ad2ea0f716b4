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

import functools
import itertools
import marshal
import re
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import attrs

from coldmig_fsm.runners.cloud import Cloud

__all__ = ["Symmetry", "canonical", "encode"]


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


@attrs.frozen
class _Compiled:
    """What :func:`canonical` needs of a :class:`Symmetry`, computed once."""

    every: re.Pattern[str]  # every host and instance name, whole words
    hosts: tuple[str, ...]
    permutations: tuple[dict[str, str], ...]  # of the instances (identity first)
    trivial: bool  # a group of order 1: nothing to rename


@functools.lru_cache(maxsize=64)
def _compiled(symmetry: Symmetry) -> _Compiled:
    hosts = tuple(h for group in symmetry.hosts for h in group)
    instances = [i for group in symmetry.instances for i in group]
    return _Compiled(
        _pattern([*hosts, *instances]),
        hosts,
        tuple(symmetry.instance_permutations()),
        symmetry.order == 1,
    )


def _first_word(text: str, name: str) -> int:
    """Where ``name`` first occurs in ``text`` as a whole word (-1: nowhere)."""
    at = text.find(name)
    while at >= 0:
        end = at + len(name)
        before = text[at - 1] if at else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before in "_-") and not (after.isalnum() or after in "_-"):
            return at
        at = text.find(name, at + 1)
    return -1


_SETS = (0, 2, 5, 6)
"""The parts of a picture that are sets: instances, claims, hosts, guests (flattened to
one ``(host, guest)`` element each); the others (migrations by id, the queue, pending
requests, armed faults) are sequences."""
_ORDERED = (1, 3, 4)  # the sequences whose order does not depend on host names
_SEPARATOR = "\x00"  # between elements (``repr`` escapes control characters)
_PARTS = "\x01"  # between parts


def _elements(picture: tuple[Any, ...]) -> list[list[str]]:
    """Each part of ``picture`` as the ``repr`` of its elements."""
    parts = [[repr(x) for x in part] for part in picture]
    parts[6] = [repr((host, guest)) for host, guests in picture[6] for guest in guests]
    return parts


def _renamed(
    parts: list[list[str]], mapping: dict[str, str], pattern: re.Pattern[str]
) -> list[list[str]]:
    """``parts`` with every name of ``mapping`` renamed at once (one pass over the text)."""
    text = _PARTS.join(_SEPARATOR.join(part) for part in parts)
    renamed = pattern.sub(lambda m: mapping.get(m.group(), m.group()), text)
    return [
        part.split(_SEPARATOR) if old else []
        for part, old in zip(renamed.split(_PARTS), parts, strict=True)
    ]


def _host_order(parts: list[list[str]], symmetry: Symmetry, hosts: Sequence[str]) -> dict[str, str]:
    """The renaming of hosts by first occurrence (see the module docstring)."""
    ordered = _SEPARATOR.join([*sorted(parts[0]), *(e for k in _ORDERED for e in parts[k])])
    where = {h: _first_word(ordered, h) for h in hosts}
    seen = sorted((at, h) for h, at in where.items() if at >= 0)
    mapping: dict[str, str] = {}
    for group in symmetry.hosts:
        members = set(group)
        first = [h for _, h in seen if h in members]
        rest = [h for h in group if where[h] < 0]
        if len(rest) > 1:
            about = [e for k in (5, 6, 2, 7) for e in parts[k]]

            def described(host: str, about: list[str] = about) -> list[str]:
                alone = _pattern([host])
                return sorted(alone.sub("?", e) for e in about if alone.search(e))

            rest.sort(key=described)
        mapping.update(zip([*first, *rest], group, strict=True))
    return mapping


def encode(picture: Any) -> bytes:
    """The bytes of a picture: equal pictures, equal bytes (and the other way round).

    ``marshal`` format 0 writes each value by type and content alone (no references to
    objects seen before, no mark of interned strings), in C; a picture holding a value
    ``marshal`` does not take (an enum member, say) is written as its ``repr``."""
    try:
        return marshal.dumps(picture, 0)
    except ValueError:
        return repr(picture).encode()


def canonical(
    picture: tuple[Any, ...],
    ops: tuple[int, ...],
    names: Sequence[str],
    symmetry: Symmetry | None,
) -> tuple[bytes, tuple[int, ...]]:
    """The encoding of ``picture`` (an abstract picture) and the per-instance budgets
    ``ops`` (in the order of ``names``) renamed to the canonical representative.

    Without ``symmetry`` (or with a group of order 1) the encoding is :func:`encode`
    of ``picture``. With it, the encoding is the text of the picture's elements, the
    sets sorted, after the renaming (so two encodings of the two kinds never meet).
    """
    if symmetry is None or _compiled(symmetry).trivial:
        return encode(picture), ops
    compiled = _compiled(symmetry)
    parts = _elements(picture)
    best: tuple[bytes, tuple[int, ...]] | None = None
    for instances in compiled.permutations:
        renamed = parts
        if any(k != v for k, v in instances.items()):
            renamed = _renamed(parts, instances, compiled.every)
        host_map = _host_order(renamed, symmetry, compiled.hosts)
        if any(k != v for k, v in host_map.items()):
            renamed = _renamed(renamed, host_map, compiled.every)
        renamed = [sorted(part) if k in _SETS else part for k, part in enumerate(renamed)]
        encoding = _PARTS.join(_SEPARATOR.join(part) for part in renamed).encode()
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
