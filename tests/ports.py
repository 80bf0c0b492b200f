"""Free loopback ports for servers the tests start, chosen below the kernel's ephemeral range.

A port picked by binding port 0 comes from the ephemeral range, where any outbound connection made
meanwhile (a transport dialing, an HTTP client) can take it before the test binds it. Ports here
come from 20000-32767, which the kernel never hands out for outbound connections, in a sequence
that differs per process (several test processes may run at once) and never repeats in a run.
"""

from __future__ import annotations

import itertools
import os
import socket

__all__ = ["free_port", "free_ports"]

_LOW, _HIGH = 20000, 32767
_next = itertools.count(_LOW + (os.getpid() * 7919) % (_HIGH - _LOW))


def _candidate() -> int:
    return _LOW + (next(_next) - _LOW) % (_HIGH - _LOW)


def free_port() -> int:
    """A loopback TCP port that is free now and outside the ephemeral range."""
    for _ in range(_HIGH - _LOW):
        port = _candidate()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port between 20000 and 32767")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports."""
    return [free_port() for _ in range(count)]
