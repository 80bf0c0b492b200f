"""Passwords are hashed with Argon2id; bad hashes match nothing; old costs are upgraded at sign-in."""

from __future__ import annotations

from dataclasses import replace

import pytest
from argon2 import Type
from argon2.profiles import CHEAPEST, RFC_9106_LOW_MEMORY
from flask import Flask

from tests.web.support import PASSWORD, db, operator_named, portal
from web.accounts import authenticate
from web.models import Operator
from web.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Passwords, password_problem


def test_default_cost_hashes_with_argon2id() -> None:
    """The default parameters (RFC 9106 low-memory) produce an ``$argon2id$`` PHC string."""
    stored = Passwords(RFC_9106_LOW_MEMORY).hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_verify_accepts_the_password_and_refuses_others() -> None:
    """The hash matches its password only."""
    passwords = Passwords(CHEAPEST)
    stored = passwords.hash(PASSWORD)
    assert passwords.verify(stored, PASSWORD)
    assert not passwords.verify(stored, PASSWORD + "x")


def test_hashes_are_salted() -> None:
    """Two hashes of one password differ."""
    passwords = Passwords(CHEAPEST)
    assert passwords.hash(PASSWORD) != passwords.hash(PASSWORD)


def test_a_malformed_hash_matches_nothing() -> None:
    """A stored value that is not a PHC string refuses every password instead of raising."""
    assert not Passwords(CHEAPEST).verify("plain-text", "plain-text")


def test_a_password_that_is_not_text_matches_nothing() -> None:
    """A password holding a lone surrogate is checked as wrong instead of raising."""
    passwords = Passwords(CHEAPEST)
    assert not passwords.verify(passwords.hash(PASSWORD), PASSWORD + "\ud800")


def test_other_argon2_variants_are_refused() -> None:
    """Only Argon2id parameters are accepted."""
    with pytest.raises(ValueError, match="Argon2id"):
        Passwords(replace(CHEAPEST, type=Type.I))


def test_sign_in_upgrades_a_hash_made_at_another_cost(app: Flask, make_operator: object) -> None:
    """After a successful sign-in, a hash made with other parameters is replaced by one at today's cost."""
    old = Passwords(RFC_9106_LOW_MEMORY)
    with db(app) as session:
        session.add(Operator(username="legacy", password_hash=old.hash(PASSWORD), role="operator"))
        session.commit()
        assert authenticate(session, portal(app).passwords, "legacy", PASSWORD) is not None
    stored = operator_named(app, "legacy")
    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("a" * (MIN_PASSWORD_LENGTH - 1), "at least"),
        ("a" * (MAX_PASSWORD_LENGTH + 1), "at most"),
        (" " * MIN_PASSWORD_LENGTH, "spaces"),
        (PASSWORD + "\ud800", "not text"),
    ],
)
def test_password_rules(password: str, reason: str) -> None:
    """Too short, too long and blank passwords, and ones holding a lone surrogate (no UTF-8 encodes
    it, so it cannot be hashed), are refused with a reason."""
    problem = password_problem(password)
    assert problem is not None
    assert reason in problem


def test_a_good_password_passes_the_rules() -> None:
    """A long enough passphrase is accepted."""
    assert password_problem(PASSWORD) is None
