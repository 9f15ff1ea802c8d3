"""A bounded queue for password hashing, and the rule that nobody waits in it holding a
database connection.

Argon2id costs a core and 64 MiB for 100 ms and more, so a process hashes only a few passwords
at once (`max_concurrent_password_hashes`). Requests beyond that wait, at most
`max_waiting_password_hashes` of them: one more is refused at once with 503
`PASSWORD_HASHING_BUSY` and `Retry-After`, instead of queueing for seconds behind a flood.

A route that will hash (a login) takes its place in the queue first (`reserve`), before any
database work, so that the requests beyond capacity are refused without touching the pool;
anything else takes its place when it hashes (`run`).

The hashes run in the queue's own threads, at a lower scheduling priority than the event loop
(`niceness`, Linux): a worker's loop shares its core with them, and a memory-hard hash that
runs whenever it is runnable takes the core, and the caches, from every other request of the
worker. Niced, a hash takes the time the loop leaves; under a flood the loop is kept free by
`roster_auth.guard`.
"""

import asyncio
import functools
import logging
import os
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Final, TypeVar, TypeVarTuple

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from roster_auth.errors import PasswordHashingBusyError

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

logger = logging.getLogger(__name__)

# A place frees up every few tenths of a second at the default cost.
BUSY_RETRY_AFTER_SECONDS: Final = 1
# The nice value of the hashing threads: 15 gives a runnable event loop about 28 times a hash
# thread's share of the core (Linux's weights: 1024 at 0, 36 at 15), and one Argon2id hash
# runs 4 lane threads.
DEFAULT_HASHING_NICENESS: Final = 15

# The queue whose place the current request holds (`reserve`).
_reserved_in: ContextVar["PasswordHashingQueue | None"] = ContextVar(
    "roster_auth_hashing_reservation", default=None
)


class PasswordHashingQueue:
    """At most `capacity` hashes at once, each in a worker thread (argon2-cffi releases the
    GIL) niced by `niceness`, and at most `max_waiting` callers waiting for one. One per
    process (`RosterAuth`): workers and replicas each have their own cores to hash on."""

    def __init__(
        self, capacity: int, max_waiting: int, niceness: int = DEFAULT_HASHING_NICENESS
    ) -> None:
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.niceness = niceness
        self._executor: ThreadPoolExecutor | None = None
        self._admitted = 0

    @property
    def admitted(self) -> int:
        """Callers hashing, waiting to, or holding a place to."""
        return self._admitted

    @property
    def is_full(self) -> bool:
        return self._admitted >= self.capacity + self.max_waiting

    @asynccontextmanager
    async def reserve(self) -> AsyncIterator[None]:
        """Hold a place in the queue for the block (a request that will hash): raises
        `PasswordHashingBusyError` at once when there is none; the hashes in the block use
        the place instead of taking another."""
        if _reserved_in.get() is self:
            yield
            return
        async with self._admission():
            token = _reserved_in.set(self)
            try:
                yield
            finally:
                _reserved_in.reset(token)

    async def run(
        self,
        func: Callable[[*Ts], T],
        *args: *Ts,
        session: AsyncSession | None = None,
    ) -> T:
        """`func(*args)` in a worker thread once a slot is free. Given the caller's `session`,
        its read-only transaction ends first, so that the pooled connection goes back to the
        pool while the caller waits and hashes (see `release_connection`)."""
        async with self.reserve():
            if session is not None:
                await release_connection(session)
            hashed = asyncio.wrap_future(self._threads().submit(func, *args))
            # As anyio's worker threads: a cancelled caller still waits for its hash, so that
            # the place it holds is given back only once its thread is free.
            with anyio.CancelScope(shield=True):
                await asyncio.wait([hashed])
            return hashed.result()

    def _threads(self) -> ThreadPoolExecutor:
        # Its own threads, so that hashes never take the thread pool FastAPI shares with
        # plain `def` dependencies, and may run at their own priority; admission keeps more
        # than `max_waiting` hashes from ever queueing for them. Started at the first hash,
        # and stopped with the queue.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.capacity,
                thread_name_prefix="roster-password-hashing",
                initializer=functools.partial(lower_thread_priority, self.niceness),
            )
            weakref.finalize(self, self._executor.shutdown, wait=False)
        return self._executor

    @asynccontextmanager
    async def _admission(self) -> AsyncIterator[None]:
        # Checked and counted before the first await, so that concurrent callers each see
        # the others.
        if self.is_full:
            raise PasswordHashingBusyError(BUSY_RETRY_AFTER_SECONDS)
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1


def lower_thread_priority(niceness: int) -> None:
    """Give the calling thread this nice value (Linux schedules threads one by one; elsewhere
    the whole process would change, so nothing is done). Raising it needs no privilege."""
    if niceness <= 0 or sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError as error:  # a sandbox that forbids it: hash at the loop's priority
        logger.warning("password hashing threads keep their priority: %s", error)


async def release_connection(session: AsyncSession) -> None:
    """End the session's transaction so that its connection returns to the pool, when the
    transaction holds nothing to write.

    Where roster-auth hashes, the transaction has only read (the user, a stored token):
    FastAPI Users' adapter commits each of its writes at once, and so do ours. Committing a
    read-only transaction changes nothing, and under READ COMMITTED the statements after it
    see what they would have seen anyway. ORM changes not yet flushed are the exception:
    committing would write them early, so that transaction is kept, connection and all."""
    if not session.in_transaction():
        return
    if session.new or session.dirty or session.deleted:
        return
    await session.commit()


__all__ = [
    "BUSY_RETRY_AFTER_SECONDS",
    "DEFAULT_HASHING_NICENESS",
    "PasswordHashingQueue",
    "lower_thread_priority",
    "release_connection",
]
