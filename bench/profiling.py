"""Where the server's time goes under load: py-spy samples the worker while the load generator
runs a scenario (a separate run from the measured one, since sampling slows the process), and
the stacks are summed per function into a short text report.

    uv run python -m bench --scenarios group-users --profile bench/profiles
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench.generators import LoadSettings
from bench.scenarios import Kind, Scenario
from bench.servers import RunningServer

SAMPLE_RATE_HZ = 250
_LINE_NUMBER = re.compile(r":\d+\)")
# Frames every request passes through (the event loop, uvicorn, the ASGI stack): not news.
_SKIP = ("<frozen runpy>", "click/core.py", "asyncio/", "uvicorn/main.py", "uvicorn/server.py")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def summarize(collapsed: str, top: int = 45) -> str:
    """Per function: the share of samples in which it is on the stack (inclusive) and at the
    top of it (self)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if total == 0:
        return "no samples\n"
    lines = [f"{total} samples", "", "inclusive (on the stack):"]
    lines += [
        f"  {100 * count / total:5.1f}%  {frame}"
        for frame, count in inclusive.most_common()
        if not any(part in frame for part in _SKIP)
    ][:top]
    lines += ["", "self (top of the stack):"]
    lines += [f"  {100 * count / total:5.1f}%  {frame}" for frame, count in own.most_common(20)]
    return "\n".join(lines) + "\n"


def profile(
    server: RunningServer,
    scenario: Scenario,
    load: LoadSettings,
    duration_s: float,
    out_dir: Path,
) -> Path:
    """Sample `server` under `scenario`'s load; return the summary's path."""
    # The write path's plans depend on the group's state, which its measured run changed.
    if scenario.kind is Kind.WRITE:
        raise ValueError("the write path cannot be profiled after it was measured")
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (it is in the bench dependency group)")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"{scenario.key}-{server.name}.collapsed"
    command = [
        spy, "record", "--pid", str(server.process.pid), "--duration", str(round(duration_s)),
        "--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--nonblocking", "-o", str(raw),
    ]  # fmt: skip
    sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    load.run(scenario.plan, server.port, duration_s, f"{scenario.key}-profile")
    _, errors = sampler.communicate(timeout=duration_s + 60)
    if sampler.returncode != 0 or not raw.is_file():
        raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')[-2000:]}")
    summary = out_dir / f"{scenario.key}-{server.name}.txt"
    summary.write_text(f"{scenario.title} ({server.name})\n\n" + summarize(raw.read_text()))
    return summary
