"""What the operator records of its writes (fleet.operator): one write latency sample per write the
simulation waits for, not one per device a batch enrols."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from fleet.metrics import Recorder
from fleet.operator import Operator
from web.enrolment_records import DeviceProfile, EnrolmentError, EnrolmentResult
from web.organisation import PortalError

BATCH_SECONDS = 0.75


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class _Token:
    token: str


class _BulkPath:
    """The portal's bulk path as the operator uses it: each call takes ``BATCH_SECONDS`` of the
    recorder's clock, and the devices at the positions in ``failing`` are refused."""

    def __init__(self, clock: _Clock, failing: frozenset[int] = frozenset()) -> None:
        self.clock = clock
        self.failing = failing
        self.calls = 0

    def create_tokens(self, profile: DeviceProfile, count: int) -> list[_Token]:
        return [_Token(f"token-{self.calls}-{i}") for i in range(count)]

    def enrol_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[EnrolmentResult | PortalError]:
        self.calls += 1
        self.clock.now += BATCH_SECONDS
        return [
            EnrolmentError("refused")
            if position in self.failing
            else EnrolmentResult(
                did=str(txn["submitter"]),
                credential={},
                credential_id=f"urn:uuid:{position}",
                status_index=position,
                enrolled=datetime.now(UTC),
            )
            for position, (_, txn) in enumerate(items)
        ]


def _operator(bulk: _BulkPath, recorder: Recorder) -> Operator:
    """An operator with only what :meth:`Operator.enrol` uses: the bulk path is ``bulk``."""
    operator = Operator.__new__(Operator)
    operator.network = "simnet"
    operator.recorder = recorder
    operator.enrolment = bulk  # type: ignore[assignment]
    operator.acknowledged = []
    operator._lock = threading.Lock()
    return operator


@pytest.mark.parametrize(("devices", "batch", "batches"), [(40, 1000, 1), (25, 10, 3)])
def test_an_enrolment_batch_is_one_write_latency_sample(devices: int, batch: int, batches: int) -> None:
    """A batch of N devices enrolled together is one write the simulation waited for: one sample of
    the batch's duration, not N copies of it (which swamped the other writes: p50 equalled p99)."""
    clock = _Clock()
    recorder = Recorder(clock)
    bulk = _BulkPath(clock)
    enrolled = _operator(bulk, recorder).enrol(devices, batch=batch)
    assert len(enrolled) == devices
    assert recorder.total("enrolled") == devices
    assert bulk.calls == batches
    assert recorder.values("write_latency_ms") == [BATCH_SECONDS * 1000] * batches


def test_a_batch_partly_refused_is_still_one_sample_and_one_wholly_refused_none() -> None:
    """Devices refused within a batch do not change its one sample; a batch that enrolled nobody
    acknowledged no write, so it gives none."""
    clock = _Clock()
    recorder = Recorder(clock)
    operator = _operator(_BulkPath(clock, failing=frozenset({0, 2})), recorder)
    assert len(operator.enrol(5, batch=5)) == 3
    assert recorder.total("enrol_failed") == 2
    assert recorder.values("write_latency_ms") == [BATCH_SECONDS * 1000]

    operator.enrolment = _BulkPath(clock, failing=frozenset(range(2)))  # type: ignore[assignment]
    assert operator.enrol(2, batch=2) == []
    assert recorder.values("write_latency_ms") == [BATCH_SECONDS * 1000]
