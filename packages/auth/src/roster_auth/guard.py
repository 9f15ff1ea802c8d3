"""Password traffic refused cheaply and slowly: the ASGI layer in front of the routes that hash
or are throttled.

A flood of anonymous logins is refused by the hashing queue (503) and the throttles (429). Each
refusal is still a full request for the worker's one event loop, and a client that retries at
once, ignoring `Retry-After`, sends as many as the loop can answer: every connection of the
flood then takes as much of the loop as a connection of any other route. So the guard

- answers a login, registration or reset with 503 `PASSWORD_HASHING_BUSY` before routing,
  form parsing or any database work when the hashing queue is full (the route would refuse it
  anyway, later and at several times the cost), and
- sends every refusal of these routes (429, 503) only after `refusal_pause_seconds`, spent
  asleep: a flooding connection gets at most a few refusals a second, whatever it does, and
  the loop stays free for everyone else. The pause is shorter than `Retry-After`, so a client
  that waits as it is told never notices it.
"""

from typing import TYPE_CHECKING, Final

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roster_auth.errors import PasswordHashingBusyError
from roster_auth.hashing import BUSY_RETRY_AFTER_SECONDS

if TYPE_CHECKING:
    from roster_auth.auth import RosterAuth

# The statuses of a refusal: throttled, or no capacity (the hashing queue, the database).
REFUSAL_STATUSES: Final = frozenset({429, 503})


class PasswordTrafficGuard:
    def __init__(self, app: ASGIApp, auth: "RosterAuth") -> None:
        self.app = app
        self.hashing_queue = auth.hashing_queue
        self.pause_seconds = auth.config.refusal_pause_seconds
        self.hashing_routes = auth.hashing_routes()
        self.refusing_routes = auth.refusing_routes()
        # The answer the hashing queue's own refusal gets (FastAPI's `{"detail": code}`).
        busy = PasswordHashingBusyError(BUSY_RETRY_AFTER_SECONDS)
        self.busy = JSONResponse(
            {"detail": busy.detail}, status_code=busy.status_code, headers=busy.headers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = (scope["method"], scope["path"])
        if route not in self.refusing_routes:
            await self.app(scope, receive, send)
            return
        if route in self.hashing_routes and self.hashing_queue.is_full:
            await anyio.sleep(self.pause_seconds)
            await self.busy(scope, receive, send)
            return

        async def pausing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in REFUSAL_STATUSES:
                await anyio.sleep(self.pause_seconds)
            await send(message)

        await self.app(scope, receive, pausing_send)


__all__ = ["REFUSAL_STATUSES", "PasswordTrafficGuard"]
