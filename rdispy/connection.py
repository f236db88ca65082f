"""Connecting to Redis: URLs (redis://, rediss://, unix://), passwords, ACL users, and waiting
with a capped backoff for a server that is not up yet."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis

from rdispy import defaults
from rdispy.errors import BrokerError, ConfigError

log = logging.getLogger(__name__)

#: Errors that mean "the server is not there (yet)", worth retrying.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for logs and messages (in the user-info part
    and in a ``?password=`` query, which redis-py also accepts)."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name.lower() == "password" for name, _ in pairs):
        query = urlencode(
            [(name, "***" if name.lower() == "password" else value) for name, value in pairs],
            safe="*",
        )
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or any(
        name.lower() == "password" for name, _ in parse_qsl(parts.query)
    )


def connect(url: str, **options: object) -> redis.Redis:
    """A client for ``url``; raises ConfigError for a malformed URL (no I/O happens here)."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"unsupported Redis URL {redact(url)!r}: use redis://HOST:PORT, rediss://HOST:PORT "
            "or unix:///path/to/socket"
        )
    try:
        settings: dict[str, object] = {
            "socket_timeout": defaults.SOCKET_TIMEOUT,
            "socket_connect_timeout": defaults.SOCKET_CONNECT_TIMEOUT,
        }
        if scheme != "unix":
            settings["socket_keepalive"] = True
        settings.update(options)
        return redis.Redis.from_url(url, **settings)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from exc


def wait_for(
    client: redis.Redis,
    url: str,
    timeout: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_backoff: float = defaults.MAX_BACKOFF,
) -> None:
    """PING until the server answers, backing off 0.05 s doubling to ``max_backoff``.

    Logs a warning at the first retry and then every WAIT_WARNING_EVERY seconds (the other
    attempts at debug level); raises BrokerError after ``timeout`` seconds (None waits forever,
    or until ``should_stop()``), never sleeping past it.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay, attempt, warned = 0.05, 0, -float("inf")
    while True:
        attempt += 1
        try:
            client.ping()
            if attempt > 1:
                log.info("connected to Redis at %s after %d attempts", redact(url), attempt)
            return
        except redis.AuthenticationError as exc:
            if not _has_password(url):
                raise BrokerError(
                    f"Redis at {redact(url)} needs a password: put it in the URL "
                    f"(redis://[USER]:PASSWORD@HOST:PORT) ({exc})"
                ) from exc
            raise BrokerError(f"Redis at {redact(url)} refused the credentials: {exc}") from exc
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise BrokerError(f"Redis at {redact(url)} needs a password: {exc}") from exc
            raise BrokerError(f"Redis at {redact(url)} answered PING with {exc}") from exc
        except TRANSIENT as exc:
            refused = _tls_refusal(exc)
            if refused is not None:  # a wrong CA or host name will not fix itself: stop now
                raise BrokerError(
                    f"TLS connection to Redis at {redact(url)} refused: {refused} (check the "
                    "host name and the CA: rediss://HOST:PORT/0?ssl_ca_certs=/path/to/ca.pem)"
                ) from exc
            if should_stop() or (deadline is not None and time.monotonic() >= deadline):
                raise BrokerError(
                    f"cannot reach Redis at {redact(url)} ({exc}); is the server running "
                    "and the URL right?"
                ) from exc
            # a first miss is the normal race of a node started beside its server
            now = time.monotonic()
            loud = attempt > 1 and now - warned >= defaults.WAIT_WARNING_EVERY
            warned = now if loud else warned
            log.log(
                logging.WARNING if loud else logging.DEBUG,
                "waiting for Redis at %s (attempt %d failed: %s); retrying%s",
                redact(url),
                attempt,
                exc,
                "" if deadline is None else f" for {max(0.0, deadline - now):.0f}s more",
            )
            time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - now)))
            delay = min(delay * 2, max_backoff)


def _tls_refusal(exc: BaseException) -> str | None:
    """The reason a TLS handshake failed on certificate checks, if that is what ``exc`` is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message or seen}"
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, ssl.SSLZeroReturnError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def eviction_policy(client: redis.Redis, url: str) -> str:
    """The server's maxmemory-policy ("unknown" where CONFIG is forbidden); warns loudly when
    it could evict keys, because an evicted job, result or blob is lost silently."""
    try:
        reply: Any = client.config_get("maxmemory-policy")
        policy = str(reply.get("maxmemory-policy", "unknown"))
    except redis.ResponseError:
        return "unknown"
    if policy not in ("noeviction", "unknown"):
        log.warning(
            "Redis at %s has maxmemory-policy %s: it may silently evict queued jobs, results and "
            "function blobs; set it to noeviction (CONFIG SET maxmemory-policy noeviction)",
            redact(url),
            policy,
        )
    return policy


def error_text(exc: BaseException) -> str:
    """A Redis error with its code (NOPERM, OOM, ...), which redis-py keeps out of the text."""
    code = getattr(exc, "status_code", None)
    text = str(exc)
    return f"{code} {text}" if code and not text.startswith(str(code)) else text
