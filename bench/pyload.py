"""The Python load generator, for machines without wrk (CI, the smoke test).

`python -m bench.pyload --port P --connections N --duration S --plan FILE` keeps N HTTP/1.1
keep-alive connections to 127.0.0.1, each with one request outstanding, until S seconds have
passed or `--max-requests` were issued; it waits for the requests still outstanding then (each
until it times out, an error), and prints one result line (see `bench.load`), with the count
and latencies of each status. HTTP is parsed by h11; latencies are measured per request with
`perf_counter`. A request body's `bench.plan.RANDOM_TOKEN`s get fresh values on every send.

It is slower than wrk: a single Python process saturates at a few thousand requests per second,
so its figures are a floor on what the server can do, good for the smoke test, not for a report.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11

from bench.load import LoadResult, percentile
from bench.plan import HttpRequest, RequestPlan

HOST = "127.0.0.1"
READ_SIZE = 65536


@dataclass
class Tally:
    """Shared by every connection: the next request to issue and what came back."""

    plan: RequestPlan
    deadline: float
    max_requests: int
    issued: int = 0
    error_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    # The latencies of the answers, by status.
    latencies: dict[int, list[float]] = field(default_factory=lambda: collections.defaultdict(list))

    def next_request(self) -> HttpRequest | None:
        if self.issued >= self.max_requests or time.monotonic() >= self.deadline:
            return None
        request = self.plan.cycle[self.issued % len(self.plan.cycle)]
        self.issued += 1
        return request


class ClosedAfterAnswerError(Exception):
    """A complete answer after which the server closes the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _h11_request(request: HttpRequest, body: bytes, port: int) -> h11.Request:
    headers = [("Host", f"{HOST}:{port}"), *request.headers.items()]
    if body:
        headers.append(("Content-Length", str(len(body))))
    return h11.Request(method=request.method, target=request.path, headers=headers)


async def _exchange(
    connection: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: HttpRequest,
    port: int,
) -> int:
    """Send one request, read the whole response, return its status."""
    body = request.body_to_send()
    data = connection.send(_h11_request(request, body, port)) or b""
    if body:
        data += connection.send(h11.Data(data=body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    writer.write(data)
    status = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            chunk = await reader.read(READ_SIZE)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            connection.receive_data(chunk)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            if connection.our_state is h11.MUST_CLOSE:
                # The server answered `Connection: close` (uvicorn's limit_concurrency 503
                # does): the answer counts, and the next request opens a new connection.
                writer.close()
                raise ClosedAfterAnswerError(status)
            connection.start_next_cycle()
            return status


async def _connection_loop(tally: Tally, port: int, request_timeout_s: float) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    connection = h11.Connection(h11.CLIENT)
    try:
        while (request := tally.next_request()) is not None:
            started = time.perf_counter()
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                    connection = h11.Connection(h11.CLIENT)
                status = await asyncio.wait_for(
                    _exchange(connection, reader, writer, request, port), request_timeout_s
                )
            except ClosedAfterAnswerError as closed:
                status = closed.status
                reader = writer = None
            except (OSError, TimeoutError, h11.ProtocolError) as error:
                tally.error_kinds["timeout" if isinstance(error, TimeoutError) else "socket"] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            tally.latencies[status].append(time.perf_counter() - started)
            if not 200 <= status < 300:
                tally.error_kinds[str(status)] += 1
    finally:
        if writer is not None:
            writer.close()


async def drive(
    plan: RequestPlan,
    port: int,
    *,
    connections: int,
    duration_s: float,
    max_requests: int,
    timeout_s: float = 10.0,
) -> LoadResult:
    started = time.monotonic()
    tally = Tally(plan=plan, deadline=started + duration_s, max_requests=max_requests)
    await asyncio.gather(*(_connection_loop(tally, port, timeout_s) for _ in range(connections)))
    elapsed = time.monotonic() - started
    by_status = {str(status): sorted(values) for status, values in tally.latencies.items()}
    latencies = sorted(value for values in by_status.values() for value in values)
    return LoadResult(
        requests=len(latencies),
        errors=sum(tally.error_kinds.values()),
        duration_s=elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        error_kinds=dict(tally.error_kinds),
        statuses={status: len(values) for status, values in by_status.items()},
        status_p50_ms={status: percentile(v, 0.50) * 1000 for status, v in by_status.items()},
        status_p99_ms={status: percentile(v, 0.99) * 1000 for status, v in by_status.items()},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--plan", type=Path, required=True, help="a RequestPlan as JSON")
    args = parser.parse_args(argv)
    plan = RequestPlan.loads(args.plan.read_text())
    coroutine = drive(
        plan,
        args.port,
        connections=args.connections,
        duration_s=args.duration,
        max_requests=args.max_requests,
    )
    try:
        import uvloop
    except ImportError:  # the stdlib loop is slower but works
        result = asyncio.run(coroutine)
    else:
        result = uvloop.run(coroutine)
    print(result.to_line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
