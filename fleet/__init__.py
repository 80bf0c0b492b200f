"""Fleet simulation: the whole platform under a realistic load, with faults (``trellis simulate``).

::

    from fleet import SimulationConfig, simulate, write_report

    figures = simulate(SimulationConfig(devices=300, duration=60, faults="all"))
    write_report(figures, "out/")          # out/report.json and out/report.html

See ``docs/fleet.md``.
"""

from __future__ import annotations

from fleet.errors import FleetError, NetworkFault
from fleet.network import FleetNetwork
from fleet.report import write_report
from fleet.simulation import SimulationConfig, simulate

__all__ = ["SimulationConfig", "simulate", "write_report", "FleetNetwork", "FleetError", "NetworkFault"]
