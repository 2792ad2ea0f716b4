"""Symmetry reduction: one canonical encoding for every state that differs only in names.

Hosts whose records are equal but for their names (same capacity, same flags) are
interchangeable, and so are instances whose initial records are equal but for their
names, uuids and hosts: renaming them consistently everywhere (records, claims, queue,
guests, armed faults, budgets) gives a state that behaves the same, up to the same
renaming. :func:`canonical` maps a cloud's :func:`~coldmig_fsm.verification.explorer.abstract`
picture to one encoding per such class of states, so that the model checker expands each
class once. Why the invariants do not notice the renaming is written down in
``docs/verification.md`` ("Symmetry reduction").

Where the names are: a picture holds host and instance names only in the places that
:data:`~coldmig_fsm.verification.explorer.PLACES` and
:data:`~coldmig_fsm.verification.explorer.QUEUE_PLACES` declare, and each place says
what it holds (:class:`~coldmig_fsm.verification.explorer.Holds`): a host's name (or
``None``), a tuple of them, an instance's name (or what stands where there is none:
``migration#<n>``, ``?``, an empty string), or text in which names are the whole words
(neither letter, digit, ``_`` nor ``-`` on either side): a message's destination
``compute:<host>``, a restart's reason, ``<instance>.disk``. Every message field is
declared (:data:`~coldmig_fsm.verification.explorer.MESSAGE_HOLDS`; an undeclared one
fails at import). Renaming a picture renames exactly those places, nothing else.

How the representative is chosen (a canonical form, not a heuristic: two states get the
same encoding if and only if one is a renaming of the other within the classes):

* for each permutation of the instances within their classes (usually one: the default
  start has no two equal instances), the instance names are renamed;
* hosts are then numbered in the order they first occur in the parts whose order does
  not depend on host names (the instances by the ``repr`` of their names, the
  migrations by id, the queue in order; the pending requests name no host): within an
  element, in the order of its places, within a tuple in order and within text left to
  right. The ``k``-th host of a class to occur gets the ``k``-th name of that class.
  Hosts that occur in none of those are ordered by what the rest of the picture says
  about them (the sorted ``repr`` of each element of the hosts, guests, claims and armed
  faults that names the host, its name written ``?``): two such hosts with the same
  description can be swapped without changing the encoding;
* the renamed picture, its guests flattened to one ``(host, guest)`` pair each and its
  parts that are sets (instances, claims, hosts, guests) sorted, is encoded by
  :func:`encode`; the smallest encoding over the instance permutations is the canonical
  one; its budgets are the instance budgets renamed the same way (the largest vector
  among the permutations with that encoding).

The host order is found from those places directly, and a renaming that changes no
host (most states: the instances' hosts keep the order of their names) writes nothing:
the picture is encoded as it is. Text is split into words, and renamed, once per string
and renaming; a host renaming that those places decide alone (one class, at most one
host named nowhere) is found once per sequence of what they hold.
:meth:`~coldmig_fsm.verification.explorer.Abstraction.picture_and_names` also hands
over, with the picture, what those places hold in that order, so that the model checker
does not read them twice.

Invariant: :func:`canonical` of a renamed cloud equals :func:`canonical` of the cloud.
"""

from __future__ import annotations

import functools
import itertools
import marshal
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.verification.explorer import PLACES, QUEUE_PLACES, Holds, Part, named_values

__all__ = ["Symmetry", "canonical", "encode"]


def _blank_instance(cloud: Cloud, name: str) -> Hashable:
    instance = cloud.instance(name)
    return repr(attrs.evolve(instance, uuid="-", name="-", host="-", node=None))


def _blank_host(cloud: Cloud, name: str) -> Hashable:
    host = cloud.store.get_host(name)
    return None if host is None else repr(attrs.evolve(host, name="-", heartbeat_at=None))


@attrs.frozen(cache_hash=True)  # the key of _group, looked up on every state
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


# --- the canonical form ----------------------------------------------------------------


def _pattern(names: Sequence[str]) -> re.Pattern[str]:
    # Longest first, whole words: vm1 is not a prefix match of vm10.
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


_TEXTS_KEPT = 4096  # renamed strings remembered per group before starting again


class _Group:
    """What :func:`canonical` needs of a :class:`Symmetry`, computed once, and the
    strings it renamed word by word (few: destinations, restart reasons, disk names)."""

    def __init__(self, symmetry: Symmetry) -> None:
        self.classes = symmetry.hosts
        self.hosts = tuple(h for group in symmetry.hosts for h in group)
        self.class_of = {h: k for k, group in enumerate(symmetry.hosts) for h in group}
        instances = [i for group in symmetry.instances for i in group]
        self.every = _pattern([*self.hosts, *instances])
        self.permutations = tuple(symmetry.instance_permutations())
        self.trivial = symmetry.order == 1
        # The first-occurrence rule reads the instances by the repr of their elements,
        # which (names being distinct) is by repr of their names: by name, when the two
        # orders agree on every name of the group.
        self.by_repr_is_by_name = sorted(instances, key=repr) == sorted(instances)
        self.words: dict[str, tuple[str, ...]] = {}
        self.texts: dict[tuple[str, Hashable], str] = {}
        # What named gave (see _host_names), when nothing else decides the renaming.
        self.renamings: dict[tuple[Any, ...], dict[str, str]] = {}

    def words_in(self, text: str) -> tuple[str, ...]:
        """The names that are words of ``text``, left to right."""
        found = self.words.get(text)
        if found is None:
            if len(self.words) > _TEXTS_KEPT:
                self.words.clear()
            found = tuple(m.group() for m in self.every.finditer(text))
            self.words[text] = found
        return found


@functools.lru_cache(maxsize=64)
def _group(symmetry: Symmetry) -> _Group:
    return _Group(symmetry)


class _Renaming:
    """One renaming of a picture: hosts by ``hosts``, instances by ``instances``
    (names missing from a mapping keep theirs); ``key`` names it for the group's memory
    of renamed strings."""

    __slots__ = ("group", "hosts", "instances", "key", "names")

    def __init__(
        self, group: _Group, hosts: dict[str, str], instances: dict[str, str], key: Hashable
    ) -> None:
        self.group = group
        self.hosts = hosts
        self.instances = instances
        self.names = {**instances, **hosts}
        self.key = key

    def text(self, text: str) -> str:
        group = self.group
        if not group.words_in(text):
            return text
        memo = (text, self.key)
        found = group.texts.get(memo)
        if found is None:
            if len(group.texts) > _TEXTS_KEPT:
                group.texts.clear()
            names = self.names
            found = group.every.sub(lambda m: names.get(m.group(), m.group()), text)
            group.texts[memo] = found
        return found

    def place(self, value: Any, holds: Holds) -> Any:
        """``value``, held in a place that holds ``holds``, renamed."""
        if holds is Holds.HOST:
            return self.hosts.get(value, value)
        if holds is Holds.INSTANCE:
            return self.instances.get(value, value)
        if holds is Holds.HOSTS:
            return tuple(self.hosts.get(v, v) for v in value)
        if holds is Holds.TEXT:
            return self.text(value)
        if holds is Holds.TEXTS:
            return tuple(self.text(v) for v in value)
        return value

    def element(self, element: tuple[Any, ...], places: Sequence[tuple[int, Holds]]) -> Any:
        renamed = list(element)
        hosts = self.hosts
        for at, holds in places:
            value = element[at]
            if holds is Holds.HOST:
                renamed[at] = hosts.get(value, value)
            else:
                renamed[at] = self.place(value, holds)
        return tuple(renamed)

    def guest(self, guest: Any) -> Any:
        if guest is None:
            return None
        return (self.instances.get(guest[0], guest[0]), *guest[1:5], self.guest(guest[5]))

    def picture(self, picture: tuple[Any, ...]) -> list[list[Any]]:
        """``picture`` renamed, its guests flattened to ``(host, guest)`` pairs."""
        inst, migs, claims, queue, reqs, hosts, guests, armed = picture
        element = self.element
        if self.instances:
            guests = [(h, tuple(self.guest(g) for g in gs)) for h, gs in guests]
        pairs = [(self.hosts.get(h, h), g) for h, gs in guests for g in gs]
        return [
            [element(e, PLACES[Part.INSTANCES]) for e in inst],
            [element(e, PLACES[Part.MIGRATIONS]) for e in migs],
            [element(e, PLACES[Part.CLAIMS]) for e in claims],
            [element(e, QUEUE_PLACES[e[0]]) for e in queue],
            [element(e, PLACES[Part.REQUESTS]) for e in reqs] if self.instances else list(reqs),
            [element(e, PLACES[Part.HOSTS]) for e in hosts],
            pairs,
            [element(e, PLACES[Part.ARMED]) for e in armed],
        ]


def _by_repr_of_name(element: tuple[Any, ...]) -> str:
    return repr(element[0])


def _named(parts: Sequence[Sequence[Any]], instances: dict[str, str]) -> list[Any]:
    """What the places of the ordered parts that hold hosts or text hold, in the order
    the first-occurrence rule reads them once the ``instances`` are renamed: the
    instances (by the ``repr`` of their elements, which is by the ``repr`` of their
    distinct names), the migrations and the queue (the pending requests name no host;
    renaming instances moves no host within an element)."""
    named: list[Any] = []
    order = _by_repr_of_name
    if instances:

        def order(element: tuple[Any, ...]) -> str:
            return repr(instances.get(element[0], element[0]))

    for e in sorted(parts[Part.INSTANCES], key=order):
        named += named_values(e, PLACES[Part.INSTANCES])
    for e in parts[Part.MIGRATIONS]:
        named += named_values(e, PLACES[Part.MIGRATIONS])
    for e in parts[Part.QUEUE]:
        named += named_values(e, QUEUE_PLACES[e[0]])
    return named


def _first_hosts(named: Iterable[Any], group: _Group) -> list[str]:
    """The group's hosts in the order they first occur in ``named`` (see :func:`_named`):
    a value that is a host's name is that host; in another string, the names that are
    words of it, left to right."""
    class_of = group.class_of
    found: dict[str, None] = {}
    for value in named:
        if value in class_of:
            found[value] = None
        elif value.__class__ is str:
            for word in group.words_in(value):
                if word in class_of:
                    found[word] = None
    return list(found)


_ABOUT = (Part.HOSTS, Part.CLAIMS, Part.ARMED)  # with the guests: what describes a host
_HOST_PLACES = {part: [at for at, holds in PLACES[part] if holds is Holds.HOST] for part in _ABOUT}


def _described(parts: Sequence[Sequence[Any]], host: str) -> list[str]:
    """What the rest of a picture says about ``host``: the ``repr`` of each element of
    the hosts, guests (``(host, guest)`` pairs), claims and armed faults that names it,
    its name written ``?``; sorted."""
    found = [repr(("?", g)) for h, gs in parts[Part.GUESTS] for g in gs if h == host]
    for part in _ABOUT:
        places = _HOST_PLACES[part]
        for e in parts[part]:
            if any(e[at] == host for at in places):
                blank = list(e)
                for at in places:
                    if e[at] == host:
                        blank[at] = "?"
                found.append(repr(tuple(blank)))
    found.sort()
    return found


def _host_names(
    described: Callable[[], Sequence[Sequence[Any]]], named: Sequence[Any], group: _Group
) -> dict[str, str]:
    """The renaming of the hosts (see the module docstring); empty when it changes none.
    ``described`` gives the picture (instances renamed) that describes the hosts that
    ``named`` does not hold, when two of a class are such."""
    key = tuple(named)
    known = group.renamings.get(key)
    if known is not None:
        return known
    first = _first_hosts(named, group)
    alone = len(group.classes) == 1 and len(first) + 1 >= len(group.hosts)
    if alone:
        # One class, at most one host named nowhere: the usual case, nothing to describe.
        ranked = first + [h for h in group.hosts if h not in first]
    else:
        ranked = []
        for k, members in enumerate(group.classes):
            mine = [h for h in first if group.class_of[h] == k]
            rest = [h for h in members if h not in mine]
            if len(rest) > 1:
                parts = described()
                rest.sort(key=lambda h: _described(parts, h))
            ranked += mine
            ranked += rest
    found = {} if tuple(ranked) == group.hosts else dict(zip(ranked, group.hosts, strict=True))
    if alone:  # decided by named alone: remembered
        if len(group.renamings) > _TEXTS_KEPT:
            group.renamings.clear()
        group.renamings[key] = found
    return found


def encode(picture: Any) -> bytes:
    """The bytes of a picture: equal pictures, equal bytes (and the other way round).

    ``marshal`` format 0 writes each value by type and content alone (no references to
    objects seen before, no mark of interned strings), in C; a picture holding a value
    ``marshal`` does not take (an enum member, say) is written as its ``repr``."""
    try:
        return marshal.dumps(picture, 0)
    except ValueError:
        return repr(picture).encode()


_SETS = (Part.INSTANCES, Part.CLAIMS, Part.HOSTS, Part.GUESTS)
"""The parts of a picture that are sets (the guests flattened to one ``(host, guest)``
pair each); the others (migrations by id, the queue, pending requests, armed faults)
are sequences."""


def canonical(
    picture: tuple[Any, ...],
    ops: tuple[int, ...],
    names: Sequence[str],
    symmetry: Symmetry | None,
    *,
    named: Sequence[Any] | None = None,
) -> tuple[bytes, tuple[int, ...]]:
    """The encoding of ``picture`` (an abstract picture) and the per-instance budgets
    ``ops`` (in the order of ``names``) renamed to the canonical representative.

    Without ``symmetry`` (or with a group of order 1) the encoding is :func:`encode`
    of ``picture``. With it, it is :func:`encode` of the representative: the picture
    renamed (see the module docstring), as a tuple of its eight parts, the guests
    flattened to ``(host, guest)`` pairs and the parts that are sets sorted (a
    different shape: the two kinds of encoding never stand for the same state).

    ``named``, when given, is what
    :meth:`~coldmig_fsm.verification.explorer.Abstraction.picture_and_names` gave with
    ``picture`` (else it is read from ``picture``: the same values).
    """
    if symmetry is None:
        return encode(picture), ops
    group = _group(symmetry)
    if group.trivial:
        return encode(picture), ops
    best: tuple[bytes, tuple[int, ...]] | None = None
    for index, instances in enumerate(group.permutations):
        reading = named
        if reading is None or instances or not group.by_repr_is_by_name:
            reading = _named(picture, instances)

        def described(index: int = index, instances: dict[str, str] = instances) -> Any:
            # The instances renamed first: the hosts are described by what they give.
            if not instances:
                return picture
            parts = _Renaming(group, {}, instances, index).picture(picture)
            parts[Part.GUESTS] = [(h, (g,)) for h, g in parts[Part.GUESTS]]
            return parts

        hosts = _host_names(described, reading, group)
        if hosts or instances:
            inst, migs, claims, queue, reqs, hosts_part, pairs, armed = _Renaming(
                group, hosts, instances, (index, tuple(hosts.items()))
            ).picture(picture)
        else:
            inst, migs, claims, queue, reqs, hosts_part, guests, armed = picture
            pairs = [(h, g) for h, gs in guests for g in gs]
        encoding = encode(
            (
                # From an Abstraction (``named``) the instances and the claims come
                # sorted, and a renaming that changes nothing keeps them so.
                inst if named is not None and not hosts and not instances else _sorted(inst),
                tuple(migs),
                claims if named is not None and not hosts and not instances else _sorted(claims),
                tuple(queue),
                tuple(reqs),
                _sorted(hosts_part),
                _sorted(pairs),
                tuple(armed),
            )
        )
        budgets = ops
        if instances:
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


def _sorted(part: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(part))
