"""What one load run measured, whichever generator produced it."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Load generators print their result on one line that starts with this marker.
RESULT_MARKER = "BENCH_RESULT "


@dataclass(frozen=True)
class LoadResult:
    requests: int  # completed requests, whatever their status
    errors: int  # non-2xx responses plus connection errors and timeouts
    duration_s: float
    p50_ms: float
    p99_ms: float
    # What the errors were: "404": 3, "timeout": 1, ...
    error_kinds: dict[str, int] = field(default_factory=dict)
    # Every answer by status, 2xx included ("200": 950, "429": 40); no socket errors here.
    statuses: dict[str, int] = field(default_factory=dict)
    # Latency percentiles of the answers of each status. Only the Python generator fills them:
    # wrk's Lua hooks see a response, not which request it answers nor when that was sent.
    status_p50_ms: dict[str, float] = field(default_factory=dict)
    status_p99_ms: dict[str, float] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def to_line(self) -> str:
        return RESULT_MARKER + json.dumps(asdict(self))

    @classmethod
    def from_output(cls, output: str) -> LoadResult:
        for line in output.splitlines():
            if line.startswith(RESULT_MARKER):
                data = json.loads(line.removeprefix(RESULT_MARKER))
                return cls(
                    requests=int(data["requests"]),
                    errors=int(data["errors"]),
                    duration_s=float(data["duration_s"]),
                    p50_ms=float(data["p50_ms"]),
                    p99_ms=float(data["p99_ms"]),
                    error_kinds=_counts(data.get("error_kinds", {})),
                    statuses=_counts(data.get("statuses", {})),
                    status_p50_ms=_floats(data.get("status_p50_ms", {})),
                    status_p99_ms=_floats(data.get("status_p99_ms", {})),
                )
        raise ValueError(f"no {RESULT_MARKER.strip()} line in the load generator's output")


def _counts(data: dict[str, Any]) -> dict[str, int]:
    counts = {str(kind): int(count) for kind, count in data.items()}
    return {kind: count for kind, count in counts.items() if count > 0}


def _floats(data: dict[str, Any]) -> dict[str, float]:
    return {str(kind): float(value) for kind, value in data.items()}


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values sorted in ascending order (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]
