"""A dial attempt that fails in any way is a dial failure: counted, backed off and retried."""

from __future__ import annotations

import asyncio

import pytest

from did_registry.errors import InvalidTransportConfig
from did_registry.ledger.validators import Validator, ValidatorSet
from did_registry.transport.stream import split_address
from tests.did_registry.transport.helpers import Net, all_connected, eventually, run, started


def _with_address(net: Net, peer: str, address: str) -> ValidatorSet:
    """The set with ``peer``'s address replaced, bypassing the ledger's checks (as a relay map might)."""
    good = net.validators()
    return ValidatorSet(
        tuple(Validator(v.id, v.public_key, address if v.id == peer else v.address) for v in good.validators)
    )


def test_a_port_above_65535_counts_dial_failures_and_the_dialer_keeps_going() -> None:
    net = Net.of(["a", "b"])

    async def main() -> None:
        a = net.transport("a", validators=_with_address(net, "b", "127.0.0.1:70000"))
        async with started(a):
            await eventually(lambda: a.stats().counters.dial_failures >= 3, timeout=5, what="3 dial failures")
            dialer = a._peers["b"].dialer
            assert dialer is not None and not dialer.done()

    run(main(), 10)


def test_an_unexpected_error_while_dialing_is_a_dial_failure_then_the_dial_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = Net.of(["a", "b"])
    real = asyncio.open_connection
    failures = [2]

    async def flaky(*args: object, **kwargs: object) -> object:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("the resolver fell over")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    async def main() -> None:
        a, b = net.transport("a"), net.transport("b")
        async with started(b, a):
            await eventually(all_connected(a, b), timeout=5, what="a connected to b")
        assert a.stats().counters.dial_failures == 2

    monkeypatch.setattr(asyncio, "open_connection", flaky)
    run(main(), 10)


@pytest.mark.parametrize("address", ["127.0.0.1:70000", "127.0.0.1:0", "127.0.0.1:", ":7703", "127.0.0.1:x"])
def test_split_address_refuses_an_undialable_address_naming_it(address: str) -> None:
    with pytest.raises(InvalidTransportConfig, match=f"'{address}'"):
        split_address(address)
