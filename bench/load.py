"""What one load run measured, whichever generator produced it."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

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
                    error_kinds={
                        str(kind): int(count)
                        for kind, count in data.get("error_kinds", {}).items()
                        if int(count) > 0
                    },
                )
        raise ValueError(f"no {RESULT_MARKER.strip()} line in the load generator's output")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values sorted in ascending order (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]
