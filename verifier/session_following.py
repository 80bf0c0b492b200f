"""Following the sessions a :class:`~verifier.verifier.Verifier` opened, to end them when their
devices' ledger records change.

A part of the verifier: each session it opens is stored (:meth:`SessionFollowing._keep`) and noted
by its device and its credential's status entries (:meth:`SessionFollowing._watch`); a block that
touches a device, or sets a bit of a status entry one of its sessions relies on, ends the device's
sessions (:meth:`SessionFollowing._on_changes`). What is noted lasts only as long as the sessions:
expired ones are swept out, a little at a time as sessions open and all at once on each block. The
bounds (:data:`SESSIONS_PER_DEVICE`, :data:`WATCHED_DEVICES_MAX`) are importable from
:mod:`verifier.verifier` too.
"""

from __future__ import annotations

import contextlib
import heapq
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, cast

from verifier import _signed
from verifier._checks import CredentialSummary
from verifier.errors import StoreUnavailable
from verifier.ledger_cache import Changes
from verifier.sessions import Session, SessionStore

if TYPE_CHECKING:
    from verifier.verifier import Verifier

__all__ = ["SESSIONS_PER_DEVICE", "WATCHED_DEVICES_MAX", "SessionFollowing"]

SESSIONS_PER_DEVICE: Final = 4
"""Live sessions a device may hold, opened by one verifier process: each full authentication opens a
new one, so opening one more ends the device's oldest (later requests in it are told ``session_ended``,
"superseded by a newer session of the device"). A device uses the session of its latest offer; the
few older ones kept cover requests already in flight. Without this one device could fill the store."""
WATCHED_DEVICES_MAX: Final = 1_000_000
"""Devices with live sessions opened by one verifier process that it follows (to end their sessions
when their ledger records change): about 1 KB each. Beyond it a device that authenticates fully is let
in without a session offer (noted in ``Verifier.session_errors``), as when the session store is full.
A device is followed until its last session from this process expires or is ended."""
_SWEEP_STEP: Final = 64  # expired devices dropped per session opened (a block drops them all)
_SWEEP_CHUNK: Final = 1024  # expired devices dropped per hold of the lock when a block is applied

_StatusRef = tuple[str, str, int]  # (issuer, status list, index) of a credential's status entry
_Opened = tuple[float, tuple[_StatusRef, ...]]  # a session's expiry and its credential's status entries


class SessionFollowing:
    """The sessions a :class:`~verifier.verifier.Verifier` opened and follows (its constructor sets the
    attributes declared here)."""

    sessions: SessionStore | None
    clock: Callable[[], float]
    session_errors: list[str]
    _watch_lock: threading.Lock
    _watched: dict[tuple[str, str], dict[int, set[str]]]
    _sessions_of: dict[str, dict[str, _Opened]]
    _expiring: list[tuple[float, str]]

    def _keep(self, session: Session) -> bool:
        """Store ``session`` and note when it expires; False (and no session) when a store cannot take
        it (full, or unreachable): the device is let in all the same, without a session offer."""
        assert self.sessions is not None
        if not self._may_watch(session.did):
            self.session_errors = [
                *self.session_errors[-99:],
                f"no session opened: this process follows the sessions of {WATCHED_DEVICES_MAX} devices",
            ]
            return False
        try:
            self.sessions.put(session)
        except StoreUnavailable as exc:
            self.session_errors = [*self.session_errors[-99:], f"no session opened: {exc}"]
            return False
        try:
            _signed.remember_session(cast("Verifier", self), session.id, session.expires_at)
        except StoreUnavailable as exc:
            self.session_errors = [*self.session_errors[-99:], f"no session opened: {exc}"]
            with contextlib.suppress(StoreUnavailable):  # unknown to the device: it expires unused
                self.sessions.end(session.id)
            return False
        return True

    # -- sessions ---------------------------------------------------------------------------
    def _may_watch(self, did: str) -> bool:
        """Whether a new session of ``did`` can be followed (:data:`WATCHED_DEVICES_MAX`)."""
        with self._watch_lock:
            if did in self._sessions_of or len(self._sessions_of) < WATCHED_DEVICES_MAX:
                return True
            self._sweep(self.clock(), _SWEEP_STEP)
            return len(self._sessions_of) < WATCHED_DEVICES_MAX

    def _watch(self, did: str, summary: CredentialSummary, session_id: str, expires_at: float) -> None:
        """Note the device's new session (for ending it on ledger changes), and end its oldest ones
        beyond :data:`SESSIONS_PER_DEVICE` opened by this process."""
        now = self.clock()
        with self._watch_lock:
            self._sweep(now, _SWEEP_STEP)
            held = self._sessions_of.get(did, {})
            live = {k: v for k, v in held.items() if v[0] > now}
            live[session_id] = (expires_at, summary.status)
            superseded = [(k, live.pop(k)[0]) for k in list(live)[: max(0, len(live) - SESSIONS_PER_DEVICE)]]
            self._sessions_of[did] = live
            watched = self._watched
            for issuer, name, index in summary.status:
                watched.setdefault((issuer, name), {}).setdefault(index, set()).add(did)
            self._unwatch(did, _refs(held) - _refs(live))
            expiring = self._expiring
            heapq.heappush(expiring, (expires_at, did))
            if len(expiring) > 2 * len(self._sessions_of) + _SWEEP_CHUNK:  # left by ended sessions
                self._expiring = [(max(e for e, _ in s.values()), d) for d, s in self._sessions_of.items()]
                heapq.heapify(self._expiring)
        for ended, until in superseded:  # the oldest first (dicts keep the order they were opened in)
            try:
                _signed.remember_session(
                    cast("Verifier", self), ended, until, "superseded by a newer session of the device"
                )
                if self.sessions is not None:
                    self.sessions.end(ended)
            except StoreUnavailable as exc:  # it expires in time; the new session is open meanwhile
                self.session_errors = [*self.session_errors[-99:], f"session {ended} not ended: {exc}"]

    def _sweep(self, now: float, limit: int) -> bool:
        """Forget up to ``limit`` devices' sessions that expired by ``now`` (and stop following devices
        left with none); True when more may be due. The caller holds ``_watch_lock``."""
        expiring, sessions_of = self._expiring, self._sessions_of
        for _ in range(limit):
            if not expiring or expiring[0][0] > now:
                return False
            did = heapq.heappop(expiring)[1]
            held = sessions_of.get(did)
            if held is None:  # ended meanwhile
                continue
            live = {k: v for k, v in held.items() if v[0] > now}  # each has an entry still due
            if len(live) == len(held):
                continue
            if live:
                sessions_of[did] = live
            else:
                del sessions_of[did]
            self._unwatch(did, _refs(held) - _refs(live))
        return bool(expiring) and expiring[0][0] <= now

    def _unwatch(self, did: str, refs: set[_StatusRef]) -> None:
        """Stop listing ``did`` under the status entries ``refs``. The caller holds ``_watch_lock``."""
        watched = self._watched
        for issuer, name, index in refs:
            indices = watched.get((issuer, name))
            dids = None if indices is None else indices.get(index)
            if dids is None:
                continue
            assert indices is not None
            dids.discard(did)
            if not dids:
                del indices[index]
                if not indices:
                    del watched[(issuer, name)]

    def _on_changes(self, changes: Changes) -> None:
        if self.sessions is None:
            return
        now = self.clock()
        more = True
        while more:  # expired sessions go first, in chunks, so that request threads wait little
            with self._watch_lock:
                more = self._sweep(now, _SWEEP_CHUNK)
        ended = set(changes.ended)
        with self._watch_lock:
            if changes.everything:
                ended |= set(self._sessions_of)
            for key, indices in changes.status_set.items():
                watched = self._watched.get(key)
                for index in indices if watched else ():
                    assert watched is not None
                    ended |= watched.pop(index, set())
                if watched is not None and not watched:
                    del self._watched[key]
        for did in ended:
            self.end_sessions(did, f"the device's ledger records changed at block {changes.height}")

    def end_sessions(
        self, did: str, why: str, *, session_id: str | None = None, expires_at: float | None = None
    ) -> int:
        """End every session of device ``did``; later requests in them are told ``session_ended``.

        Sessions opened by this process (and ``session_id``) are remembered as ended until they
        would have expired; others, opened by other processes sharing the store, become unknown.
        """
        if self.sessions is None:
            return 0
        with self._watch_lock:
            opened = self._sessions_of.pop(did, {})
            self._unwatch(did, _refs(opened))
        known = {k: until for k, (until, _) in opened.items()}
        if session_id is not None and expires_at is not None:
            known[session_id] = expires_at
        now = self.clock()
        for ended, until in known.items():
            if until > now:
                _signed.remember_session(cast("Verifier", self), ended, until, why)
        return self.sessions.end_device(did)


def _refs(sessions: Mapping[str, _Opened]) -> set[_StatusRef]:
    """The status entries of the credentials of ``sessions``."""
    return {ref for _, status in sessions.values() for ref in status}
