"""Node logs are JSON lines with time, level, logger and event."""

from __future__ import annotations

import io
import json
import logging

from did_registry.node.logs import configure_logging


def test_a_record_is_one_json_line_with_its_fields() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(stream=stream)
        logging.getLogger("did_registry.replica").info("node-%d votes", 3)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("did_registry.replica").exception("input failed")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["level"], first["logger"], first["event"]) == (
        "info",
        "did_registry.replica",
        "node-3 votes",
    )
    assert first["time"].endswith("Z")
    assert second["level"] == "error" and "ValueError: boom" in second["error"]
