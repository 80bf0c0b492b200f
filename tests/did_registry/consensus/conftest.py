"""Validator sets with known keys, engines over the fake app, signed messages from any peer.

``--seed N`` (or ``TRELLIS_SEED=N``) makes the simulator tests run that one seed, to replay a failure.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from did_registry.consensus import PBFT, ConsensusConfig, Message, Output, RoundRobin, Solo
from did_registry.consensus.base import Broadcast, Committed, NeedState, Send
from did_registry.identity.crypto import Ed25519PrivateKey
from did_registry.ledger.validators import ValidatorSet
from tests.did_registry.consensus.fake_app import FakeApp
from tests.did_registry.consensus.scenarios import make_validators

M = TypeVar("M", bound=Message)
TESTING = ConsensusConfig.testing()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--seed``: replay one simulator seed."""
    parser.addoption("--seed", type=int, default=None, help="run the simulator tests for this seed only")


def chosen_seed(config: pytest.Config) -> int | None:
    """The seed asked for on the command line (``--seed``) or in ``TRELLIS_SEED``, if any."""
    seed = config.getoption("--seed", default=None)
    if seed is None and os.environ.get("TRELLIS_SEED"):
        return int(os.environ["TRELLIS_SEED"])
    return None if seed is None else int(seed)


@dataclass
class Net:
    """A validator set ``v0``… with its keys, and engines over fake apps."""

    validators: ValidatorSet
    keys: dict[str, Ed25519PrivateKey]
    apps: dict[str, FakeApp] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """The validator ids in set order."""
        return [v.id for v in self.validators.validators]

    def pbft(self, v: str, config: ConsensusConfig = TESTING, **kwargs: Any) -> PBFT:
        """A PBFT engine for ``v`` (its app is ``self.apps[v]``)."""
        return PBFT(v, self.keys[v], self.validators, self.apps.setdefault(v, FakeApp()), config, **kwargs)

    def round_robin(self, v: str, config: ConsensusConfig = TESTING, **kwargs: Any) -> RoundRobin:
        """A round-robin engine for ``v``."""
        return RoundRobin(
            v, self.keys[v], self.validators, self.apps.setdefault(v, FakeApp()), config, **kwargs
        )

    def solo(self, config: ConsensusConfig = TESTING, **kwargs: Any) -> Solo:
        """A solo engine for ``v0``."""
        return Solo(
            "v0", self.keys["v0"], self.validators, self.apps.setdefault("v0", FakeApp()), config, **kwargs
        )

    def sign(self, message: M) -> M:
        """``message`` signed with its sender's key."""
        return message.signed(self.keys[message.sender])


def make_net(n: int, seed: int = 7) -> Net:
    """A fresh set of ``n`` validators."""
    validators, keys = make_validators(random.Random(seed), n)
    return Net(validators, keys)


@pytest.fixture
def net4() -> Net:
    """Four validators: ``f = 1``, quorum 3."""
    return make_net(4)


def sent(outputs: Sequence[Output], kind: type[M]) -> list[M]:
    """The messages of type ``kind`` among the outputs (broadcast or sent)."""
    found: list[M] = []
    for out in outputs:
        if isinstance(out, Broadcast | Send) and isinstance(out.message, kind):
            found.append(out.message)
    return found


def committed(outputs: Sequence[Output]) -> list[Committed]:
    """The ``Committed`` outputs."""
    return [out for out in outputs if isinstance(out, Committed)]


def need_state(outputs: Sequence[Output]) -> list[NeedState]:
    """The ``NeedState`` outputs."""
    return [out for out in outputs if isinstance(out, NeedState)]
