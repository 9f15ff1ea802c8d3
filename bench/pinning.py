"""Which cores the server and the load generator run on.

On a machine with at least two cores the server gets core 0 and the load generator core 1
(`taskset`), so that they do not take turns on one core. Postgres is left unpinned: the
scheduler places its backends wherever there is room, the same for roster and for the floor.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class CorePlan:
    server: tuple[int, ...] | None
    load: tuple[int, ...] | None

    def describe(self) -> str:
        if self.server is None or self.load is None:
            return "not pinned (fewer than 2 cores or no taskset)"
        return (
            f"server on core {_cores(self.server)} and load generator on core "
            f"{_cores(self.load)} (taskset); Postgres unpinned"
        )


def _cores(cores: tuple[int, ...]) -> str:
    return ",".join(str(core) for core in cores)


def plan_cores() -> CorePlan:
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) < 2 or shutil.which("taskset") is None:
        return CorePlan(server=None, load=None)
    return CorePlan(server=(available[0],), load=(available[1],))


def pinned(command: list[str], cores: tuple[int, ...] | None) -> list[str]:
    """`command`, run on `cores` when given."""
    if cores is None:
        return command
    return ["taskset", "-c", _cores(cores), *command]
