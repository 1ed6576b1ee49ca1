"""The side data's files, loaded for the machines: the blacklist snapshot
(``Policy.blacklist_paths``), the user profiles (``Policy.profiles_path``) and the models'
warm-start snapshot (``Policy.model_warm_start``). A machine reads them through its
:class:`~core.graph.Side` and never opens a file itself.

* :class:`SideLoader`: once per Beam worker process (Beam's ``Shared``), for the composite;
* :func:`load_side`: now, for one process (the reference's callers, the benches);
* :func:`replay_policy` and :func:`load_replay`: a replay directory's side files and inputs,
  for the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from apache_beam.utils.shared import Shared

from core.graph import ProfileBook, Side
from core.learner import warm_versions as versions_of_warm
from core.policy import Policy
from schemas.blacklist import BlacklistSnapshot, load_many
from schemas.codecs import read_records
from schemas.rows import DeadLetter, UserProfile
from transforms.snapshots import load_snapshot

__all__ = ["ProfileBook", "SideLoader", "load_profiles", "load_replay", "load_side",
           "load_warm", "replay_policy", "warm_versions"]


def load_profiles(path: Optional[str]) -> ProfileBook:
    """The UserProfile file at ``path`` (none: no profiles)."""
    if not path:
        return ProfileBook()
    rows = {}
    for r in read_records(path, "UserProfile", source="profiles"):
        if isinstance(r, UserProfile):
            rows[r.user_id] = r
    return ProfileBook(rows)


def load_warm(policy: Policy) -> dict:
    """``{model name: ModelState}`` of the warm-start snapshot ({} without one)."""
    return load_snapshot(policy.model_warm_start) if policy.model_warm_start else {}


def warm_versions(policy: Policy) -> list:
    """The model versions a warm start gives the scorers from the start of a run
    (:func:`core.learner.warm_versions` of the loaded snapshot)."""
    if not policy.model_warm_start or not policy.use_models:
        return []
    return versions_of_warm(policy, load_warm(policy))


def load_side(policy: Policy, mode: str = "batch") -> Side:
    """The policy's blacklist files, profiles and warm-start snapshot, loaded now, for one
    process (the Beam composite shares them per worker instead: :class:`SideLoader`)."""
    snapshot = load_many(tuple(policy.blacklist_paths))[0]
    profiles = load_profiles(policy.profiles_path)
    warm = load_warm(policy)
    return Side(lambda: snapshot, lambda: profiles.get, mode, lambda: warm)


class _Ref:
    """A weak-referenceable box: ``Shared`` keeps what it shares by weak reference."""

    def __init__(self, value):
        self.value = value


# Shared keeps what it shares by weak reference only: where a DoFn lives one bundle (Beam's
# local runner unpickles a fresh one per bundle) nothing held the snapshot or the profiles
# between bundles, and every bundle loaded the files again. One copy per process stays here.
_PINNED: dict = {}


def _stamp(paths: tuple) -> tuple:
    """What identifies a side file's content for reuse: path, modification time, size.
    The blacklist snapshot and the profiles (read-only for the machines) loaded by one
    pipeline are reused by the next one in this process (a chunked replay runs one per
    chunk) while their files are unchanged."""
    import os

    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


class SideLoader:
    """Loads the blacklist snapshot, the profiles and the warm-start snapshot once per
    worker process; ``for_mode`` gives a machine its :class:`~core.graph.Side` of
    them."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self._snapshot = Shared()
        self._profiles = Shared()
        self._warm = Shared()

    def snapshot(self) -> BlacklistSnapshot:
        paths = tuple(self.policy.blacklist_paths)
        key, stamp = ("snapshot", repr(paths)), _stamp(paths)
        got = _PINNED.get(key)
        if got is not None and got[0] == stamp:  # an earlier pipeline's (a chunk's) copy
            return got[1].value
        ref = self._snapshot.acquire(lambda: _Ref(load_many(paths)[0]), tag=repr(paths))
        _PINNED[key] = (stamp, ref)
        return ref.value

    def profiles(self) -> ProfileBook:
        path = self.policy.profiles_path
        key, stamp = ("profiles", repr(path)), _stamp((path,) if path else ())
        got = _PINNED.get(key)
        if got is not None and got[0] == stamp:
            return got[1]
        book = self._profiles.acquire(lambda: load_profiles(path), tag=repr(path))
        _PINNED[key] = (stamp, book)
        return book

    def warm(self) -> dict:
        path = self.policy.model_warm_start
        ref = self._warm.acquire(lambda: _Ref(load_warm(self.policy)), tag=repr(path))
        _PINNED[("warm", repr(path))] = ref
        return ref.value

    def for_mode(self, mode: str) -> Side:
        return Side(self.snapshot, lambda: self.profiles().get, mode, self.warm)


def replay_policy(directory: str | Path, policy: Optional[Policy] = None) -> Policy:
    """``policy`` with the side data of a replay directory: ``blacklist_snapshot.*`` as the
    blacklist snapshot and ``profiles.*`` as the profiles, where present."""
    import dataclasses

    from schemas.codecs import find_input

    policy = policy or Policy()
    snap = find_input(directory, "blacklist_snapshot")
    prof = find_input(directory, "profiles")
    return dataclasses.replace(
        policy,
        blacklist_paths=(str(snap),) if snap else policy.blacklist_paths,
        profiles_path=str(prof) if prof else policy.profiles_path)


_RECORDS = {"transfers": "Transfer", "reports": "ScamReport", "outcomes": "CaseOutcome",
            "blacklist": "BlacklistUpdate"}


def load_replay(directory: str | Path) -> dict[str, list]:
    """The four inputs of a replay directory as lists of rows. A record the reader cannot
    validate is a ``DeadLetter`` stamped, as the backtest driver stamps it, with the last
    valid event time before it in its file (``run_reference`` passes it to ``dead_letter``)."""
    from schemas.codecs import find_input, read_batches

    out = {}
    for name, record in _RECORDS.items():
        path = find_input(directory, name)
        rows: list = []
        if path is not None:
            last = 0
            for batch in read_batches(path, record, name):
                for r in batch:
                    if type(r) is DeadLetter:
                        rows.append(r._replace(at=last))
                    else:
                        last = r.event_time
                        rows.append(r)
        out[name] = rows
    return out
