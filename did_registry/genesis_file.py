"""Reading a network's ``genesis.json`` from a local file, with an error that names the file.

The commands and the portal take a genesis file as their trust anchor (``--genesis``,
``TRELLIS_WEB_GENESIS``); a file that is missing, no JSON or no genesis is the operator's mistake,
and must not be mistaken for a node that cannot be reached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from did_registry.errors import DidRegistryError
from did_registry.ledger.genesis import Genesis

__all__ = ["GenesisFileError", "read_genesis_file"]


class GenesisFileError(DidRegistryError, ValueError):
    """A genesis file cannot be read, is not JSON, or holds no valid genesis; ``path`` names the file
    and ``problem`` says what is wrong with it."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"bad genesis file {path}: {problem}")


def read_genesis_file(path: Path) -> Genesis:
    """The checked genesis in ``path``; raises :class:`GenesisFileError` naming the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenesisFileError(path, "not UTF-8 text") from None
    except OSError as exc:
        raise GenesisFileError(path, f"cannot read it: {exc.strerror or exc}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisFileError(path, f"not JSON: {exc}") from None
    except RecursionError:
        raise GenesisFileError(path, "JSON nested too deeply") from None
    try:
        return Genesis.from_json(data)
    except (DidRegistryError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise GenesisFileError(path, f"not a valid genesis: {exc}") from None
