"""PBFT view changes: the ``view_change`` and ``new_view`` handlers (:class:`ViewChanges`, the half of
the replica that :class:`~did_registry.consensus.pbft.PBFT` extends), the checks of VIEW-CHANGE and
NEW-VIEW messages, and the computation of the new view's O set.

Castro & Liskov, TOCS 2002 §4.4, adapted to one block in flight (``docs/consensus.md`` § View change).
A VIEW-CHANGE for view ``v`` carries the commit certificate of the sender's last executed block
(height ``h``; it replaces the checkpoint proof, since a certificate fixes every block up to ``h``)
and, if the sender is prepared at ``h + 1``, that prepared certificate (the P set: at most one entry,
because a validator only prepares ``h + 1`` after executing ``h``).

The new primary takes ``q`` VIEW-CHANGEs (V). ``max_h`` is the highest certified height in V. If some
member of V is prepared at ``max_h + 1``, the block of the prepared certificate from the highest view
is re-issued at ``max_h + 1`` in the new view (O); otherwise O is empty and the primary proposes a
fresh block there. No null requests are needed: nothing beyond ``max_h + 1`` can be prepared. Every
backup recomputes O from V and refuses a NEW-VIEW whose O differs. Timers, the ``f + 1`` join rule,
retransmission and help for lagging peers are described in the docs.
"""

from __future__ import annotations

from collections.abc import Callable

from did_registry.consensus.base import BlockApp, Broadcast
from did_registry.consensus.core import EngineCore
from did_registry.consensus.errors import InvalidMessage
from did_registry.consensus.log import MessageLog
from did_registry.consensus.messages import (
    Commit,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    Request,
    ViewChange,
)
from did_registry.consensus.pool import Overtaking
from did_registry.consensus.quorum import Quorum
from did_registry.ledger.block import InvalidCertificate

__all__ = [
    "ViewChanges",
    "check_new_view",
    "check_prepared_certificate",
    "check_view_change",
    "plan_new_view",
]

_KEPT_PER_SENDER = 16


def _bad_view_change(reason: str) -> InvalidMessage:
    return InvalidMessage("invalid-view-change", reason)


def check_prepared_certificate(
    certificate: PreparedCertificate, quorum: Quorum, app: BlockApp, view: int
) -> None:
    """Check a prepared certificate carried by a VIEW-CHANGE for ``view``; raise :class:`InvalidMessage`.

    It holds a PRE-PREPARE of an earlier view signed by that view's primary, whose digest is the
    block's, and ``q - 1`` matching PREPAREs signed by distinct backups.
    """
    pre_prepare = certificate.pre_prepare
    if len(certificate.prepares) > quorum.n:
        raise _bad_view_change(f"{len(certificate.prepares)} prepares from a set of {quorum.n}")
    if pre_prepare.view >= view:
        raise _bad_view_change(f"prepared certificate of view {pre_prepare.view} in a change to view {view}")
    primary = quorum.leader(pre_prepare.view)
    if pre_prepare.sender != primary:
        raise _bad_view_change(f"pre-prepare of view {pre_prepare.view} not from its primary {primary}")
    quorum.authenticate(pre_prepare)
    if app.digest(pre_prepare.block) != pre_prepare.digest:
        raise _bad_view_change("the pre-prepare's digest is not its block's")
    senders: set[str] = set()
    for prepare in certificate.prepares:
        key = (prepare.view, prepare.seq, prepare.digest)
        if key != (pre_prepare.view, pre_prepare.seq, pre_prepare.digest):
            raise _bad_view_change("a prepare does not match the pre-prepare")
        if prepare.sender == primary or prepare.sender in senders:
            raise _bad_view_change(f"prepare from {prepare.sender} is from the primary or repeated")
        quorum.authenticate(prepare)
        senders.add(prepare.sender)
    if len(senders) < quorum.size - 1:
        raise _bad_view_change(f"{len(senders)} prepares; a prepared certificate needs {quorum.size - 1}")


def check_view_change(
    message: ViewChange, quorum: Quorum, app: BlockApp, certifying: Callable[[int], Quorum] | None = None
) -> int:
    """Check a VIEW-CHANGE's certificate and P set; return the height it proves executed.

    ``certifying(height)`` is the quorum whose certificates are valid at a height (``quorum``'s by
    default): the certificate of the block a set change took effect after is the previous set's."""
    quorum.authenticate(message)
    height = 0
    if message.executed is not None:
        try:
            (quorum if certifying is None else certifying(message.executed.height)).check_certificate(
                message.executed
            )
        except InvalidCertificate as exc:
            raise _bad_view_change(f"executed certificate: {exc}") from None
        height = message.executed.height
    if message.prepared is not None:
        check_prepared_certificate(message.prepared, quorum, app, message.view)
        if message.prepared.pre_prepare.seq != height + 1:
            raise _bad_view_change(
                f"prepared at {message.prepared.pre_prepare.seq}, not at height {height + 1}"
            )
    return height


def plan_new_view(view_changes: tuple[ViewChange, ...]) -> tuple[int, PrePrepare | None]:
    """``max_h`` of V and the pre-prepare (from the highest view) prepared at ``max_h + 1``, if any."""
    max_h = max(v.height for v in view_changes)
    candidates = [
        v.prepared.pre_prepare
        for v in view_changes
        if v.prepared is not None and v.prepared.pre_prepare.seq == max_h + 1
    ]
    if not candidates:
        return max_h, None
    return max_h, max(candidates, key=lambda p: (p.view, p.digest))


def check_new_view(
    message: NewView, quorum: Quorum, app: BlockApp, certifying: Callable[[int], Quorum] | None = None
) -> int:
    """Check a NEW-VIEW against the VIEW-CHANGEs it encloses (``certifying`` as for
    :func:`check_view_change`); return ``max_h``; raise :class:`InvalidMessage`."""

    def bad(reason: str) -> InvalidMessage:
        return InvalidMessage("invalid-new-view", reason)

    if message.sender != quorum.leader(message.view):
        raise bad(f"new-view for view {message.view} not from its primary")
    quorum.authenticate(message)
    if len(message.view_changes) > quorum.n:
        raise bad(f"{len(message.view_changes)} view-changes from a set of {quorum.n}")
    senders = {v.sender for v in message.view_changes}
    if len(senders) != len(message.view_changes) or len(senders) < quorum.size:
        raise bad(f"{len(senders)} distinct view-changes; a new view needs {quorum.size}")
    for change in message.view_changes:
        if change.view != message.view:
            raise bad(f"a view-change for view {change.view} in new-view {message.view}")
        try:
            check_view_change(change, quorum, app, certifying)
        except InvalidMessage as exc:
            raise bad(f"view-change from {change.sender}: {exc.reason}") from None
    max_h, chosen = plan_new_view(message.view_changes)
    issued = message.pre_prepare
    if chosen is None:
        if issued is not None:
            raise bad("the O set must be empty: no view-change is prepared above the certified height")
        return max_h
    if issued is None or (issued.view, issued.seq, issued.digest, issued.block, issued.sender) != (
        message.view,
        chosen.seq,
        chosen.digest,
        chosen.block,
        message.sender,
    ):
        raise bad(f"the O set must re-issue block {chosen.digest.hex()[:16]} at {chosen.seq}")
    quorum.authenticate(issued)
    return max_h


class ViewChanges(EngineCore):
    """The view-change half of a PBFT replica: its view, the VIEW-CHANGEs it holds, and the handlers
    ``view_change`` and ``new_view``. :class:`~did_registry.consensus.pbft.PBFT` adds the normal case."""

    _log: MessageLog
    _overtaking: Overtaking
    _overtaken: list[bytes]

    def _init_view_changes(self) -> None:
        self._view = 0
        self._active = True
        self._failures = 0
        self._view_changes: dict[int, dict[str, ViewChange]] = {}
        self._new_view: NewView | None = None
        self._later: dict[str, list[PrePrepare | Prepare | Commit]] = {}
        self._sent_changes: dict[int, ViewChange] = {}  # ours, since the last view we were active in

    @property
    def view(self) -> int:
        """The current view (the one being changed to, while a view change is under way)."""
        return self._view

    @property
    def active(self) -> bool:
        """Whether the view is in force (``False`` between VIEW-CHANGE and NEW-VIEW)."""
        return self._active

    @property
    def primary(self) -> str:
        """The primary of the current view."""
        return self._q.leader(self._view)

    def _accept_pre_prepare(self, message: PrePrepare, *, built: bool = False) -> None:
        raise NotImplementedError

    def _resend_certify(self) -> None:
        raise NotImplementedError

    def _keep_for_later(self, message: PrePrepare | Prepare | Commit) -> None:
        """Keep a message of a view not entered yet (its NEW-VIEW may come after it): per sender,
        a few messages of the latest such view."""
        kept = self._later.setdefault(message.sender, [])
        if kept and kept[0].view != message.view:
            if kept[0].view > message.view:
                self._drop("wrong-view")
                return
            kept.clear()
        if len(kept) >= _KEPT_PER_SENDER or (
            isinstance(message, PrePrepare)
            and sum(len(m.block) for m in kept if isinstance(m, PrePrepare)) + len(message.block)
            > self._config.max_kept_block_bytes // self._q.n  # each sender's share of the budget
        ):
            self._drop("wrong-view")
            return
        kept.append(message)

    def _start_view_change(self, view: int) -> None:
        """Leave the current view for ``view``: send VIEW-CHANGE(view, C, P) and wait for NEW-VIEW."""
        self._view, self._active = view, False
        self._timers.clear("progress")
        self._timers.clear("resend")
        self._timers.clear("batch")
        self._log.views_before(view)
        prepared = self._log.prepared.get(self._height + 1)
        change = ViewChange(sender=self._id, view=view, executed=self._certificate, prepared=prepared)
        self._view_changes = {v: c for v, c in self._view_changes.items() if v >= view}
        self._view_changes.setdefault(view, {})[self._id] = self._sent_changes[view] = self._broadcast(change)
        self._timers.set("view-change", self._now + self._config.backoff(self._failures))
        self._maybe_new_view()

    def _view_change_timeout(self) -> None:
        """No NEW-VIEW in time: with a quorum of VIEW-CHANGEs, try the next view (timeout doubled);
        without one, send the VIEW-CHANGE and the pending requests again (peers may have missed them)."""
        self._resend_certify()
        changes = self._view_changes.get(self._view, {})
        if len(changes) >= self._q.size:
            self._failures += 1
            self._start_view_change(self._view + 1)
            return
        own = changes.get(self._id)
        if own is not None:
            self._out.append(Broadcast(own))
        if self._pool:
            self._broadcast(Request(sender=self._id, requests=self._forwardable(4 * self._config.batch_size)))
        self._timers.set("view-change", self._now + self._config.backoff(self._failures))

    def view_change(self, message: ViewChange) -> None:
        """Triggered by: a VIEW-CHANGE from a validator whose timer expired, that joined a view change
        on ``f + 1`` VIEW-CHANGEs, or that resends one. A sender in an older view is helped along."""
        try:
            check_view_change(message, self._q, self._app, self._certifying)
        except InvalidMessage as exc:
            self._drop(exc.code)
            return
        self._learn_certificate(message.executed)
        behind_us = message.view < self._view or (message.view == self._view and self._active)
        if behind_us or message.height < self._height:
            self._help(message.sender, message.height, message.view)
        if behind_us:
            return
        if message.view > self._view:  # keep one future VIEW-CHANGE per sender: its highest
            for view, changes in self._view_changes.items():
                if view > self._view and view != message.view and message.sender in changes:
                    if view > message.view:
                        return
                    del changes[message.sender]
            # A view nobody asks for any more is forgotten: else one validator naming view after
            # view would leave an entry for each, for ever, and every VIEW-CHANGE walks them all.
            self._view_changes = {v: c for v, c in self._view_changes.items() if c or v <= self._view}
        changes = self._view_changes.setdefault(message.view, {})
        new_sender = message.sender not in changes
        changes[message.sender] = message
        if message.view == self._view and new_sender and len(changes) == self._q.size:
            self._timers.set("view-change", self._now + self._config.backoff(self._failures))
        ahead: dict[str, int] = {}
        for view, senders in self._view_changes.items():
            for sender in senders:
                if view > self._view and sender != self._id:
                    ahead[sender] = max(ahead.get(sender, 0), view)
        if len(ahead) > self._q.f:
            self._start_view_change(sorted(ahead.values(), reverse=True)[self._q.f])
        self._maybe_new_view()

    def _help(self, peer: str, height: int, view: int) -> None:
        """Bring a lagging peer along. If its view is behind ours: the last NEW-VIEW we accepted, if it
        is for the peer's view or a later one (it proves itself, even after we left that view); else
        our own VIEW-CHANGE for its view, if we sent one (it may have been lost, and it still holds:
        we have not been active since). If its height is behind ours: our last certificate."""
        if not self._may_help(peer):
            return
        if view < self._view or (view == self._view and self._active):  # the peer's view is behind ours
            if self._new_view is not None and self._new_view.view >= view:
                self._send(peer, self._new_view)
            elif view in self._sent_changes:
                self._send(peer, self._sent_changes[view])
        if height < self._height:
            self._send_certificate(peer)

    def _maybe_new_view(self) -> None:
        """The new primary, holding ``q`` VIEW-CHANGEs (its own among them), sends NEW-VIEW(v, V, O)."""
        changes = self._view_changes.get(self._view, {})
        if self._active or self.primary != self._id or self._id not in changes or len(changes) < self._q.size:
            return
        others = [changes[s] for s in sorted(changes) if s != self._id]
        chosen = (changes[self._id], *others[: self._q.size - 1])
        _, prepared = plan_new_view(chosen)
        issued = None
        if prepared is not None:
            issued = PrePrepare(
                sender=self._id,
                view=self._view,
                seq=prepared.seq,
                digest=prepared.digest,
                block=prepared.block,
            ).signed(self._key)
        message = self._broadcast(
            NewView(sender=self._id, view=self._view, view_changes=chosen, pre_prepare=issued)
        )
        self._enter_view(message)

    def new_view(self, message: NewView) -> None:
        """Triggered by: a NEW-VIEW from the primary of a later view (or relayed by a validator
        helping this one); accepted when it matches the VIEW-CHANGEs it encloses."""
        if message.view < self._view or (message.view == self._view and self._active):
            self._drop("stale")
            return
        try:
            check_new_view(message, self._q, self._app, self._certifying)
        except InvalidMessage as exc:
            self._drop(exc.code)
            return
        self._enter_view(message)

    def _enter_view(self, message: NewView) -> None:
        """Enter the view of an accepted NEW-VIEW: keep its certificates, prepare O, replay early messages."""
        self._view, self._active, self._new_view = message.view, True, message
        self._sent_changes = {}
        for change in message.view_changes:
            self._learn_certificate(change.executed)
        self._view_changes = {v: c for v, c in self._view_changes.items() if v > message.view}
        self._log.views_before(message.view)
        self._timers.clear("view-change")
        self._timers.clear("progress")
        self._timers.clear("resend")
        self._overtaking.reset()  # the new primary is judged afresh
        self._overtaken.clear()
        if message.pre_prepare is not None and message.pre_prepare.seq > self._height:
            self._accept_pre_prepare(message.pre_prepare)
        later = [m for kept in self._later.values() for m in kept if m.view == message.view]
        self._later = {s: kept for s, kept in self._later.items() if kept and kept[0].view > message.view}
        for early in later:
            self._handle(early)
        if self.primary != self._id and self._pool:
            forward = Request(sender=self._id, requests=self._forwardable(4 * self._config.batch_size))
            self._send(self.primary, forward.signed(self._key))
