"""Two issuer processes on one SQLite file: their status-list changes are made one after the other.

Two processes are simulated by two engines whose URLs differ (``b.db`` and ``./b.db``), so the
in-process writers' lock is not shared and only the database orders them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from did_registry.identity.crypto import Ed25519PrivateKey
from wallet import issuer as issuer_module
from wallet.issuer import Issuer
from wallet.storage import StatusListRow, open_engine

ISSUER_DID = "did:key:issuer"


def _two_issuers(tmp_path: Path) -> tuple[Issuer, Issuer]:
    key = Ed25519PrivateKey.generate()

    def make(url: str) -> Issuer:
        return Issuer(
            did=ISSUER_DID,
            key=key,
            verification_method=f"{ISSUER_DID}#k",
            engine=open_engine(url),
            status_base_url="https://issuer.example/status",
        )

    return make(f"sqlite:///{tmp_path}/b.db"), make(f"sqlite:///{tmp_path}/./b.db")


def _race(
    first: Callable[[], Any], second: Callable[[], Any], pause: Callable[[Callable[..., Any]], Any]
) -> None:
    """Run ``first`` in one thread and ``second`` in another: ``first`` stops (at the patched
    function, through ``pause``) until ``second`` has got as far, or for one second at most."""
    second_there = threading.Event()
    errors: list[BaseException] = []

    def run(job: Callable[[], Any]) -> None:
        try:
            job()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    def paused(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if threading.current_thread().name == "first":
                second_there.wait(timeout=1.0)
            else:
                second_there.set()
            return result

        return wrapper

    pause(paused)
    threads = [
        threading.Thread(target=run, args=(first,), name="first"),
        threading.Thread(target=run, args=(second,), name="second"),
    ]
    threads[0].start()
    threading.Event().wait(0.2)  # the first is inside its change before the second starts
    threads[1].start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


def test_concurrent_revocations_keep_both_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers revoking different credentials of one list at once both leave their bit set."""
    one, two = _two_issuers(tmp_path)
    first_id = one.issue({"id": "did:example:1"})["id"]
    second_id = one.issue({"id": "did:example:2"})["id"]
    original = issuer_module.BitstringStatusList.from_bytes

    def pause(wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        monkeypatch.setattr(issuer_module.BitstringStatusList, "from_bytes", staticmethod(wrap(original)))

    _race(lambda: one.revoke(first_id), lambda: two.revoke(second_id), pause)
    monkeypatch.undo()
    bits = one.status_list(one.status(first_id).revocation_list)
    assert bits.get(one.status(first_id).index) == 1
    assert bits.get(one.status(second_id).index) == 1


def test_concurrent_issuers_allocate_different_indices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers issuing at once both succeed, with different indices, and the counter counts both."""
    one, two = _two_issuers(tmp_path)
    one.issue({"id": "did:example:warm"})
    original = issuer_module.issue_credential

    def pause(wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        monkeypatch.setattr(issuer_module, "issue_credential", wrap(original))

    issued: list[int] = []
    _race(
        lambda: issued.extend(s.index for _, s in one.issue_many([{"id": "did:example:a"}])),
        lambda: issued.extend(s.index for _, s in two.issue_many([{"id": "did:example:b"}])),
        pause,
    )
    monkeypatch.undo()
    assert len(set(issued)) == 2
    with Session(one.engine) as session:
        counters = {row.purpose: row.allocated for row in session.exec(select(StatusListRow)).all()}
    assert counters == {"revocation": 3, "suspension": 3}
