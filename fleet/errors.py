"""Errors raised by :mod:`fleet`.

Every error names what failed (the relay, the node or nodes) and why::

    FleetError
    ├── NetworkFault      a fault could not be injected, or the network did not behave as asked
    ├── UnusableInput     a file the options name (the genesis, the trustee keystore) cannot be used
    ├── InvalidFaultSpec  ``--faults`` does not parse (fleet.faults)
    ├── SetupFailed       the organisation or the reporter could not be set up (fleet.operator)
    ├── ServiceFailed     an example service did not start or answer (fleet.service_process)
    └── InvalidFigures    figures that do not make a report (fleet.report)
"""

from __future__ import annotations

__all__ = ["FleetError", "NetworkFault", "UnusableInput"]


class FleetError(Exception):
    """Base of every error the fleet simulation raises."""


class NetworkFault(FleetError):
    """Injecting a fault or observing the simulated network failed: a relay, a node, or convergence
    (the message names the relay or nodes involved and why)."""


class UnusableInput(FleetError):
    """A file the options name cannot be used: the genesis is no genesis, or the trustee keystore does
    not open (a wrong pass phrase, no keystore); the message names the file and why."""
