"""The table, the roster/floor ratios, the login flood's tables and the targets, printed and
written to RESULTS.md."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psutil

from bench.dataset import PAGE_SIZE
from bench.load import LoadResult
from bench.scenarios import Kind

MIB = 1024 * 1024
RSS_TARGET_MB = 150
# Issue 11: roster against the stack-ceiling app (FastAPI + SQLAlchemy async Core).
CEILING_RPS_RATIO_TARGET = 0.9
CEILING_P99_RATIO_TARGET = 1.5
# Issue 11: statements per request, the user row plus everything else.
LISTING_STATEMENTS_TARGET = 2
ME_JWT_STATEMENTS_TARGET = 1
SIZE_P50_RATIO_TARGET = 1.3
OFFSET_DEEP_PAGE = "members-deep"
# Issue 10: reads beside the login flood keep their p99 within this factor of their p99 without
# it, and the logins it refuses are refused within this long (p99).
FLOOD_P99_RATIO_TARGET = 3.0
FLOOD_REFUSAL_P99_TARGET_MS = 1000.0
# The part of a login-flood measurement that is the flood itself (the others are its reads).
FLOOD_LOGINS = "logins"
# The login answers the flood report counts one by one; any other status is "other".
FLOOD_STATUSES = ("200", "400", "429", "503")
REFUSALS = ("429", "503")


READING_GUIDE = (
    "p50/p99: latency percentiles at the load generator. Errors: non-2xx answers, socket "
    "errors and timeouts. SQL/req: statements the app sent per request (SQLAlchemy cursor "
    "executes for roster, queries for the floor); round trips/req adds BEGIN, COMMIT, ROLLBACK "
    "and the pool's pre-ping. RSS: resident memory of the server's worker after the scenario. "
    "roster/ceiling, roster/floor: roster's req/s divided by the other app's, and roster's p99 "
    "divided by the other app's, for the scenarios both answer (the ceiling: FastAPI + "
    "SQLAlchemy async Core, one statement per request; the floor: Starlette + asyncpg)."
)

FLOOD_GUIDE = (
    "Each read is measured twice in the same run by the same closed loop: on its own, then "
    "beside the flood (the loads are described above). Answers: responses received, whatever "
    "their status. Errors: non-2xx answers, socket errors and timeouts. p99 beside / without: "
    "the read's p99 beside the flood divided by its p99 on its own. Logins: the answers of "
    "each status (400: an unknown email, refused after hashing its password; 429: throttled; "
    "503: a full hashing queue, an exhausted connection pool or uvicorn's concurrency limit), "
    "the requests left unanswered (the generator gives up after 10 s), the p99 latency of the "
    "answers of each status, and how long the server was still serving requests once the "
    "flood's generator had stopped (logins whose client gave up still run to the end)."
)


@dataclass(frozen=True)
class Measurement:
    key: str
    title: str
    kind: Kind
    app: str  # "roster", "ceiling" or "floor"
    load: LoadResult
    statements_per_request: float
    round_trips_per_request: float
    rss_mb: float
    # A flood measures several loads at once: which one this is (FLOOD_LOGINS, or the key of the
    # read beside it), and whether the flood was running.
    part: str = ""
    beside_flood: bool = False
    # For the flood's logins: seconds the server still had requests in flight after the flood's
    # generator stopped (logins whose client gave up still run); inf when it had not finished.
    drain_s: float = math.nan


@dataclass(frozen=True)
class FloodRead:
    """One read of a flood scenario, measured on its own and beside the flood."""

    title: str
    without: LoadResult
    beside: LoadResult

    @property
    def p99_ratio(self) -> float:
        return _ratio(self.beside.p99_ms, self.without.p99_ms)


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

    def flood_keys(self) -> list[str]:
        return list(dict.fromkeys(m.key for m in self.measurements if m.kind is Kind.FLOOD))

    def flood_logins(self, key: str) -> Measurement | None:
        for m in self.measurements:
            if m.key == key and m.kind is Kind.FLOOD and m.part == FLOOD_LOGINS:
                return m
        return None

    def flood_reads(self, key: str) -> dict[str, FloodRead]:
        """The reads of flood `key` by part, in the order they were measured."""
        reads = [m for m in self.measurements if m.key == key and m.kind is Kind.FLOOD]
        pairs: dict[str, FloodRead] = {}
        for part in dict.fromkeys(m.part for m in reads if m.part != FLOOD_LOGINS):
            without = [m for m in reads if m.part == part and not m.beside_flood]
            beside = [m for m in reads if m.part == part and m.beside_flood]
            if without and beside:
                pairs[part] = FloodRead(without[0].title, without[0].load, beside[0].load)
        return pairs

    def flood_read(self, key: str, part: str) -> FloodRead | None:
        return self.flood_reads(key).get(part)

    # -- the table ---------------------------------------------------------------------------

    def ratio_to(self, measurement: Measurement, app: str) -> str:
        other = self.find(measurement.key, app)
        if measurement.app != "roster" or other is None:
            return ""
        rps = _ratio(measurement.load.requests_per_s, other.load.requests_per_s)
        p99 = _ratio(measurement.load.p99_ms, other.load.p99_ms)
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
                self.ratio_to(m, "ceiling"),
                self.ratio_to(m, "floor"),
            ]
            for m in self.measurements
            # A flood's figures need columns of their own (see flood_tables).
            if m.kind is not Kind.FLOOD
        ]

    HEADER = (
        "scenario", "app", "req/s", "p50 ms", "p99 ms", "errors", "SQL/req",
        "round trips/req", "RSS MB", "roster/ceiling", "roster/floor",
    )  # fmt: skip

    def markdown_table(self) -> str:
        return _markdown_table(self.HEADER, self.rows(), right=range(2, 9))

    def text_table(self) -> str:
        return _text_table(self.HEADER, self.rows())

    # -- the login flood ---------------------------------------------------------------------

    READS_HEADER = (
        "read", "answers without / beside the flood", "errors without / beside",
        "p50 ms without / beside", "p99 ms without / beside", "p99 beside / without",
    )  # fmt: skip
    LOGINS_HEADER = (
        "logins", *FLOOD_STATUSES, "other", "timeouts, socket errors",
        *(f"p99 ms of {status}" for status in ("400", *REFUSALS)), "server busy after",
    )  # fmt: skip

    def flood_tables(self, key: str) -> list[tuple[tuple[str, ...], list[list[str]]]]:
        reads = [
            [
                read.title,
                f"{read.without.requests:,} / {read.beside.requests:,}",
                f"{_errors(read.without)} / {_errors(read.beside)}",
                f"{_ms(read.without.p50_ms)} / {_ms(read.beside.p50_ms)}",
                f"{_ms(read.without.p99_ms)} / {_ms(read.beside.p99_ms)}",
                _times(read.p99_ratio),
            ]
            for read in self.flood_reads(key).values()
        ]
        tables: list[tuple[tuple[str, ...], list[list[str]]]] = [(self.READS_HEADER, reads)]
        logins = self.flood_logins(key)
        if logins is not None:
            counts = _login_counts(logins.load)
            tables.append(
                (
                    self.LOGINS_HEADER,
                    [
                        [
                            logins.title,
                            *(f"{counts[status]:,}" for status in FLOOD_STATUSES),
                            _kinds(counts["other"], _other_statuses(logins.load)),
                            _kinds(counts["failed"], _socket_errors(logins.load)),
                            *(_status_p99(logins.load, status) for status in ("400", *REFUSALS)),
                            _seconds(logins.drain_s),
                        ]
                    ],
                )
            )
        return tables

    def flood_markdown(self) -> list[str]:
        lines: list[str] = []
        for key in self.flood_keys():
            lines += [f"## Login flood (`{key}`)", "", FLOOD_GUIDE, ""]
            for header, rows in self.flood_tables(key):
                lines += [_markdown_table(header, rows, right=range(1, len(header))), ""]
        return lines

    def flood_text(self) -> list[str]:
        lines: list[str] = []
        for key in self.flood_keys():
            lines += [f"{key}:"]
            for header, rows in self.flood_tables(key):
                lines += [_text_table(header, rows), ""]
        return lines

    # -- the targets -------------------------------------------------------------------------

    def verdicts(self) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for roster in self.measurements:
            ceiling = self.find(roster.key, "ceiling")
            if roster.app != "roster" or ceiling is None:
                continue
            rps = _ratio(roster.load.requests_per_s, ceiling.load.requests_per_s)
            p99 = _ratio(roster.load.p99_ms, ceiling.load.p99_ms)
            verdicts.append(
                Verdict(
                    f"{roster.title}: >= {CEILING_RPS_RATIO_TARGET}x the ceiling's req/s, p99 "
                    f"<= {CEILING_P99_RATIO_TARGET}x the ceiling's, zero errors",
                    f"{rps:.2f}x req/s ({roster.load.requests_per_s:,.0f} vs "
                    f"{ceiling.load.requests_per_s:,.0f}), {p99:.2f}x p99 "
                    f"({_ms(roster.load.p99_ms)} vs {_ms(ceiling.load.p99_ms)} ms), "
                    f"{roster.load.errors} errors",
                    rps >= CEILING_RPS_RATIO_TARGET
                    and p99 <= CEILING_P99_RATIO_TARGET
                    and roster.load.errors == 0
                    and ceiling.load.errors == 0,
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
        # The offset's deep page is not among them: an offset walks every member it skips, in
        # any database; the deep page by cursor is the one that must be flat (bench/NOTES.md).
        members = sorted(
            (
                m
                for m in self.measurements
                if m.key.startswith("members-") and m.key != OFFSET_DEEP_PAGE and m.app == "roster"
            ),
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
                        f"full page's ({smallest.title}): {m.title}",
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
            listings = [m for m in reads if m.key.startswith(("members-", "group-users"))]
            me_jwt = [m for m in reads if m.key.startswith("me-jwt")]
            verdicts.append(
                Verdict(
                    f"SQL statements per request: at most {LISTING_STATEMENTS_TARGET} for the "
                    f"listings, {ME_JWT_STATEMENTS_TARGET} for /users/me with a JWT",
                    f"listings: {', '.join(sorted(listing)) or '-'}; /users/me (JWT): "
                    f"{', '.join(sorted({_count(m.statements_per_request) for m in me_jwt}))}",
                    all(m.statements_per_request <= LISTING_STATEMENTS_TARGET for m in listings)
                    and all(m.statements_per_request <= ME_JWT_STATEMENTS_TARGET for m in me_jwt),
                )
            )
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
        for key in self.flood_keys():
            verdicts += self._flood_verdicts(key)
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

    def _flood_verdicts(self, key: str) -> list[Verdict]:
        verdicts = [
            Verdict(
                f"{read.title} beside the login flood: zero errors, p99 within "
                f"{FLOOD_P99_RATIO_TARGET:g}x its p99 without the flood",
                f"{_errors(read.beside)} errors beside it ({_errors(read.without)} without); "
                f"p99 {_ms(read.beside.p99_ms)} vs {_ms(read.without.p99_ms)} ms "
                f"({_times(read.p99_ratio)})",
                read.beside.requests > 0
                and read.without.requests > 0
                and read.beside.errors == 0
                and read.without.errors == 0
                and read.p99_ratio <= FLOOD_P99_RATIO_TARGET,
            )
            for read in self.flood_reads(key).values()
        ]
        logins = self.flood_logins(key)
        if logins is None:
            return verdicts
        load = logins.load
        counts = _login_counts(load)
        refused = [status for status in REFUSALS if counts[status]]
        timed = all(status in load.status_p99_ms for status in refused)
        verdicts.append(
            Verdict(
                "the flood's logins are answered 400, 429 or 503 and none times out; those "
                "beyond capacity (the flood keeps more logins waiting than there are hashing "
                "slots, so some must be) are refused with 429 or 503 within "
                f"{FLOOD_REFUSAL_P99_TARGET_MS / 1000:g} s (p99 of each)",
                "; ".join(
                    [
                        ", ".join(
                            f"{status}: {counts[status]:,}"
                            + (f" (p99 {_status_p99(load, status)} ms)" if counts[status] else "")
                            for status in ("400", *REFUSALS)
                        ),
                        f"timeouts and socket errors: {counts['failed']:,}",
                        f"any other answer: {counts['200'] + counts['other']:,}",
                    ]
                ),
                bool(refused)
                and timed
                and all(
                    load.status_p99_ms[status] <= FLOOD_REFUSAL_P99_TARGET_MS for status in refused
                )
                and counts["failed"] == 0
                and counts["200"] == 0
                and counts["other"] == 0,
            )
        )
        return verdicts

    def _smallest_group_listing(self) -> Measurement | None:
        """The first page of the smallest group that fills a page: a smaller group's page has
        fewer members to read and write, which is not the group's size costing less."""
        sized = [
            m
            for m in self.measurements
            if m.app == "roster" and m.key.startswith("members-") and m.key[8:].isdigit()
        ]
        full = [m for m in sized if int(m.key[8:]) >= PAGE_SIZE]
        return min(full or sized, key=lambda m: int(m.key[8:]), default=None)

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
        table = [self.text_table(), ""] if self.rows() else []
        return "\n".join([*table, *self.flood_text(), *self.verdict_lines(markdown=False)])

    def markdown(self, title: str, notes: Sequence[str] = ()) -> str:
        context = [f"- **{name}**: {value}" for name, value in self.context]
        return (
            "\n".join(
                [
                    f"# {title}",
                    "",
                    *context,
                    "",
                    *([self.markdown_table(), "", READING_GUIDE, ""] if self.rows() else []),
                    *self.flood_markdown(),
                    "## Targets",
                    "",
                    *self.verdict_lines(markdown=True),
                    "",
                    *notes,
                ]
            ).rstrip()
            + "\n"
        )


def _markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int]
) -> str:
    aligned = set(right)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in aligned else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [list(header), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _login_counts(load: LoadResult) -> dict[str, int]:
    """The flood's answers: FLOOD_STATUSES one by one, every other status as "other", and
    "failed": requests that got no answer (timeouts, socket errors)."""
    counts = {status: load.statuses.get(status, 0) for status in FLOOD_STATUSES}
    counts["other"] = sum(_other_statuses(load).values())
    counts["failed"] = sum(_socket_errors(load).values())
    return counts


def _other_statuses(load: LoadResult) -> dict[str, int]:
    return {s: n for s, n in load.statuses.items() if s not in FLOOD_STATUSES}


def _socket_errors(load: LoadResult) -> dict[str, int]:
    return {kind: n for kind, n in load.error_kinds.items() if not kind.isdigit()}


def _kinds(total: int, kinds: dict[str, int]) -> str:
    if not total:
        return "0"
    return f"{total:,} (" + ", ".join(f"{k}: {n:,}" for k, n in sorted(kinds.items())) + ")"


def _status_p99(load: LoadResult, status: str) -> str:
    if status not in load.statuses:
        return "-"
    if status not in load.status_p99_ms:
        return "not timed"
    return _ms(load.status_p99_ms[status])


def _errors(load: LoadResult) -> str:
    if not load.errors:
        return "0"
    kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(load.error_kinds.items()))
    return f"{load.errors:,} ({kinds})" if kinds else f"{load.errors:,}"


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else math.inf


def _times(value: float) -> str:
    return f"{value:.2f}x" if math.isfinite(value) else "-"


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "unfinished" if math.isinf(value) else f"{value:.1f} s"


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
