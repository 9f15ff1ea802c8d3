"""The table, the roster/floor ratios and the targets, printed and written to RESULTS.md."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from bench.load import LoadResult
from bench.scenarios import Kind

MIB = 1024 * 1024
RSS_TARGET_MB = 150
FLOOR_RPS_RATIO_TARGET = 0.5
FLOOR_P99_RATIO_TARGET = 2.0
SIZE_P50_RATIO_TARGET = 1.3


READING_GUIDE = (
    "p50/p99: latency percentiles at the load generator. Errors: non-2xx answers, socket "
    "errors and timeouts. SQL/req: statements the app sent per request (SQLAlchemy cursor "
    "executes for roster, queries for the floor); round trips/req adds BEGIN, COMMIT, ROLLBACK "
    "and the pool's pre-ping. RSS: resident memory of the server's worker after the scenario. "
    "roster/floor: roster's req/s divided by the floor's, and roster's p99 divided by the "
    "floor's, for the scenarios both answer."
)


@dataclass(frozen=True)
class Measurement:
    key: str
    title: str
    kind: Kind
    app: str  # "roster" or "floor"
    load: LoadResult
    statements_per_request: float
    round_trips_per_request: float
    rss_mb: float


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool


@dataclass
class Report:
    measurements: list[Measurement]
    context: list[tuple[str, str]] = field(default_factory=list)

    def find(self, key: str, app: str = "roster") -> Measurement | None:
        for measurement in self.measurements:
            if measurement.key == key and measurement.app == app:
                return measurement
        return None

    # -- the table ---------------------------------------------------------------------------

    def floor_ratio(self, measurement: Measurement) -> str:
        floor = self.find(measurement.key, "floor")
        if measurement.app != "roster" or floor is None:
            return ""
        rps = _ratio(measurement.load.requests_per_s, floor.load.requests_per_s)
        p99 = _ratio(measurement.load.p99_ms, floor.load.p99_ms)
        return f"{rps:.2f}x req/s, {p99:.2f}x p99"

    def rows(self) -> list[list[str]]:
        return [
            [
                m.title,
                m.app,
                f"{m.load.requests_per_s:,.0f}",
                _ms(m.load.p50_ms),
                _ms(m.load.p99_ms),
                _errors(m.load),
                _count(m.statements_per_request),
                _count(m.round_trips_per_request),
                f"{m.rss_mb:.0f}",
                self.floor_ratio(m),
            ]
            for m in self.measurements
        ]

    HEADER = (
        "scenario", "app", "req/s", "p50 ms", "p99 ms", "errors", "SQL/req",
        "round trips/req", "RSS MB", "roster/floor",
    )  # fmt: skip

    def markdown_table(self) -> str:
        right = {2, 3, 4, 5, 6, 7, 8}
        lines = [
            "| " + " | ".join(self.HEADER) + " |",
            "|" + "|".join("---:" if i in right else "---" for i in range(len(self.HEADER))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join(lines)

    def text_table(self) -> str:
        rows = [list(self.HEADER), *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )

    # -- the targets -------------------------------------------------------------------------

    def verdicts(self) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for key, label in (("group-users", "group-users page of 50"), ("me-jwt", "/users/me")):
            roster, floor = self.find(key), self.find(key, "floor")
            if roster is None or floor is None:
                continue
            rps = _ratio(roster.load.requests_per_s, floor.load.requests_per_s)
            p99 = _ratio(roster.load.p99_ms, floor.load.p99_ms)
            verdicts.append(
                Verdict(
                    f"{label}: >= {FLOOR_RPS_RATIO_TARGET}x the floor's req/s, p99 <= "
                    f"{FLOOR_P99_RATIO_TARGET}x the floor's, zero errors",
                    f"{rps:.2f}x req/s ({roster.load.requests_per_s:,.0f} vs "
                    f"{floor.load.requests_per_s:,.0f}), {p99:.2f}x p99 "
                    f"({_ms(roster.load.p99_ms)} vs {_ms(floor.load.p99_ms)} ms), "
                    f"{roster.load.errors} errors",
                    rps >= FLOOR_RPS_RATIO_TARGET
                    and p99 <= FLOOR_P99_RATIO_TARGET
                    and roster.load.errors == 0
                    and floor.load.errors == 0,
                )
            )
        member, loner = self.find("me-jwt"), self.find("me-jwt-loner")
        if member is not None and loner is not None:
            p50 = _ratio(member.load.p50_ms, loner.load.p50_ms)
            # One-sided: the question is whether belonging to groups adds cost; a loner that
            # comes out slower is the machine's noise (the counts show the same work).
            verdicts.append(
                Verdict(
                    "/users/me costs the same whatever groups the user is in: the same SQL/req "
                    "and round trips/req, p50 no more than "
                    f"{SIZE_P50_RATIO_TARGET}x the loner's",
                    f"member of every group vs of none: {_count(member.statements_per_request)}"
                    f" vs {_count(loner.statements_per_request)} SQL/req, "
                    f"{_count(member.round_trips_per_request)} vs "
                    f"{_count(loner.round_trips_per_request)} round trips/req, p50 "
                    f"{_ms(member.load.p50_ms)} vs {_ms(loner.load.p50_ms)} ms ({p50:.2f}x)",
                    math.isclose(
                        member.statements_per_request, loner.statements_per_request, abs_tol=0.05
                    )
                    # A new pool connection skips the pre-ping: round trips are not whole.
                    and math.isclose(
                        member.round_trips_per_request, loner.round_trips_per_request, rel_tol=0.05
                    )
                    and p50 <= SIZE_P50_RATIO_TARGET,
                )
            )
        members = sorted(
            (m for m in self.measurements if m.key.startswith("members-") and m.app == "roster"),
            key=lambda m: m.load.p50_ms,
        )
        smallest = self._smallest_group_listing()
        if smallest is not None:
            for m in members:
                if m is smallest:
                    continue
                p50 = _ratio(m.load.p50_ms, smallest.load.p50_ms)
                verdicts.append(
                    Verdict(
                        f"members listing p50 within {SIZE_P50_RATIO_TARGET}x of the smallest "
                        f"group's: {m.title}",
                        f"{_ms(m.load.p50_ms)} vs {_ms(smallest.load.p50_ms)} ms ({p50:.2f}x)",
                        p50 <= SIZE_P50_RATIO_TARGET,
                    )
                )
        reads = [m for m in self.measurements if m.kind is Kind.READ and m.app == "roster"]
        if reads:
            listing = {
                _count(m.statements_per_request)
                for m in reads
                if m.key.startswith(("members-", "group-users"))
            }
            me = {_count(m.statements_per_request) for m in reads if m.key.startswith("me-")}
            worst = max(m.statements_per_request for m in reads)
            verdicts.append(
                Verdict(
                    "SQL statements per request: a small constant for every read, whatever the "
                    "group size",
                    f"listings: {', '.join(sorted(listing)) or '-'}; /users/me: "
                    f"{', '.join(sorted(me)) or '-'}; most: {_count(worst)}",
                    all(_is_whole(m.statements_per_request) for m in reads)
                    and len(listing) <= 1
                    and len({m.statements_per_request for m in reads if m.key == "me-jwt"
                             or m.key == "me-jwt-loner"}) <= 1
                    and worst <= 5,
                )
            )  # fmt: skip
        roster_rss = [m.rss_mb for m in self.measurements if m.app == "roster"]
        if roster_rss:
            verdicts.append(
                Verdict(
                    f"resident memory of one roster worker after the run < {RSS_TARGET_MB} MB",
                    f"{roster_rss[-1]:.0f} MB (highest seen after a scenario: "
                    f"{max(roster_rss):.0f} MB)",
                    max(roster_rss) < RSS_TARGET_MB,
                )
            )
        return verdicts

    def _smallest_group_listing(self) -> Measurement | None:
        sized = [
            m
            for m in self.measurements
            if m.app == "roster" and m.key.startswith("members-") and m.key[8:].isdigit()
        ]
        return min(sized, key=lambda m: int(m.key[8:]), default=None)

    def verdict_lines(self, markdown: bool) -> list[str]:
        lines: list[str] = []
        for verdict in self.verdicts():
            mark = "met" if verdict.met else "MISSED"
            if markdown:
                lines.append(f"| {verdict.target} | {verdict.measured} | {mark} |")
            else:
                lines.append(f"[{mark}] {verdict.target}: {verdict.measured}")
        if markdown and lines:
            lines = ["| target | measured | verdict |", "|---|---|---|", *lines]
        return lines

    def text(self) -> str:
        return "\n".join([self.text_table(), "", *self.verdict_lines(markdown=False)])

    def markdown(self, title: str, notes: Sequence[str] = ()) -> str:
        context = [f"- **{name}**: {value}" for name, value in self.context]
        return (
            "\n".join(
                [
                    f"# {title}",
                    "",
                    *context,
                    "",
                    self.markdown_table(),
                    "",
                    READING_GUIDE,
                    "",
                    "## Targets",
                    "",
                    *self.verdict_lines(markdown=True),
                    "",
                    *notes,
                ]
            ).rstrip()
            + "\n"
        )


def _errors(load: LoadResult) -> str:
    if not load.errors:
        return "0"
    kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(load.error_kinds.items()))
    return f"{load.errors:,} ({kinds})" if kinds else f"{load.errors:,}"


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else math.inf


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _count(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.0f}" if _is_whole(value) else f"{value:.2f}"


def _is_whole(value: float) -> bool:
    return not math.isnan(value) and abs(value - round(value)) < 0.02


def machine_description() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / (1024**3)
    return (
        f"{model or platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores, "
        f"{memory:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
