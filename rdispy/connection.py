"""Connecting to Redis: URLs (redis://, rediss://, unix://), passwords, ACL users, and waiting
with a capped backoff for a server that is not up yet."""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
from redis.asyncio.connection import RedisSSLContext
from redis.connection import parse_url
from redis.sentinel import Sentinel

from rdispy import defaults
from rdispy.errors import BrokerError, ConfigError

log = logging.getLogger(__name__)

#: Values of a yes/no environment variable that mean yes.
TRUE_WORDS = ("1", "true", "yes", "on")

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


#: URL schemes of a Sentinel-managed primary (rediss: TLS to the primary and its replicas).
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES)


def connect(url: str, **options: object) -> redis.Redis:
    """A client for ``url``; raises ConfigError for a malformed URL (no I/O happens here).

    ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` gives a client
    of the primary the sentinels name, found again on every new connection, so that a failover
    is followed without a restart (``?sentinel_password=`` if the sentinels ask for one)."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported Redis URL {redact(url)!r}: use redis://HOST:PORT, rediss://HOST:PORT, "
            "unix:///path/to/socket or redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE"
        )
    try:
        settings: dict[str, object] = {
            "socket_timeout": defaults.SOCKET_TIMEOUT,
            "socket_connect_timeout": defaults.SOCKET_CONNECT_TIMEOUT,
        }
        if scheme != "unix":
            settings["socket_keepalive"] = True
        settings.update(options)
        if scheme in SENTINEL_SCHEMES:
            return sentinel_url(url).client(settings)
        return redis.Redis.from_url(url, **settings)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from exc


@dataclass(frozen=True)
class SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    options: tuple[tuple[str, Any], ...] = ()  # the query's other options, typed as redis-py's

    def sentinel(self, settings: Mapping[str, object]) -> Sentinel:
        timeouts = {k: v for k, v in settings.items() if k.startswith("socket_")}
        return Sentinel(
            self.sentinels,
            sentinel_kwargs={**timeouts, "password": self.sentinel_password},
            **self.primary_options(settings),
        )

    def primary_options(self, settings: Mapping[str, object]) -> dict[str, Any]:
        found: dict[str, Any] = {**settings, **dict(self.options), "db": self.db}
        found.update(username=self.username, password=self.password)
        if self.tls:
            found["ssl"] = True
        return found

    def client(self, settings: Mapping[str, object]) -> redis.Redis:
        primary: redis.Redis = self.sentinel(settings).master_for(self.service)
        return primary

    def primary_address(self) -> tuple[str, int]:
        """Where the primary is now (asks the sentinels; redis ConnectionError if none knows)."""
        settings = {"socket_timeout": defaults.SOCKET_CONNECT_TIMEOUT}
        address: Any = self.sentinel(settings).discover_master(self.service)
        return str(address[0]), int(address[1])


def sentinel_url(url: str) -> SentinelUrl:
    """Parse a ``redis+sentinel://`` URL (ValueError if malformed)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"sentinel address {item!r} is not HOST:PORT")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("give the service name the sentinels monitor: /SERVICE or /SERVICE/DB")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "sentinel_password"]
    typed = parse_url("redis://x/?" + urlencode(query)) if query else {}  # type: ignore[no-untyped-call]
    typed.pop("host", None)
    return SentinelUrl(
        sentinels=tuple(sentinels),
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(user) or None,
        password=unquote(password) or None,
        sentinel_password=dict(parse_qsl(parts.query)).get("sentinel_password"),
        tls=parts.scheme == "rediss+sentinel",
        options=tuple(typed.items()),
    )


def tls_context(url: str) -> ssl.SSLContext | None:
    """The TLS context a ``rediss://`` URL asks for, built from every ``ssl_*`` option of its
    query as redis-py reads them (``ssl_ca_certs``, ``ssl_ca_path``, ``ssl_ca_data``,
    ``ssl_certfile``, ``ssl_keyfile``, ``ssl_password``, ``ssl_cert_reqs``,
    ``ssl_check_hostname``, ``ssl_min_version``, ``ssl_ciphers``); None for other schemes.
    For code that opens its own sockets (the relay)."""
    if urlsplit(url).scheme != "rediss":
        return None
    try:
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact(url)!r}: {exc}") from exc
    tls = {k.removeprefix("ssl_"): v for k, v in options.items() if k.startswith("ssl_")}
    tls.setdefault("cert_reqs", "required")
    tls.setdefault("check_hostname", tls["cert_reqs"] in ("required", ssl.CERT_REQUIRED))
    if "min_version" in tls:
        tls["min_version"] = ssl.TLSVersion(tls["min_version"])
    try:
        return RedisSSLContext(**tls).get()
    except (TypeError, ValueError, OSError, redis.RedisError) as exc:
        raise ConfigError(f"TLS options of {redact(url)!r} are not usable: {exc}") from exc


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


def eviction_policy(client: redis.Redis, url: str, allow: bool | None = None) -> str:
    """The server's maxmemory-policy, read from ``INFO memory`` (managed services forbid
    ``CONFIG``; "unknown" where INFO does not say).  A policy that may evict keys loses queued
    jobs, results and function blobs silently, so it is refused with ConfigError unless
    ``allow`` (None: the RDISPY_ALLOW_EVICTION variable; ``rdispy worker --allow-eviction``),
    and then only warned about."""
    try:
        info: Any = client.info("memory")
    except redis.ResponseError:  # INFO forbidden by an ACL
        return "unknown"
    policy = str(info.get("maxmemory_policy", "unknown"))
    if policy in ("noeviction", "unknown"):
        return policy
    if allow is None:
        allow = os.environ.get(defaults.ENV_ALLOW_EVICTION, "").lower() in TRUE_WORDS
    if not allow:
        raise ConfigError(
            f"Redis at {redact(url)} has maxmemory-policy {policy}: it may silently evict "
            "queued jobs, results and function blobs.  Set it to noeviction (CONFIG SET "
            "maxmemory-policy noeviction, or the service's parameter group / configuration), "
            "or accept the risk with rdispy worker --allow-eviction and "
            f"{defaults.ENV_ALLOW_EVICTION}=1 for clients"
        )
    log.warning(
        "Redis at %s has maxmemory-policy %s: it may silently evict queued jobs, results and "
        "function blobs (allowed by --allow-eviction / %s)",
        redact(url),
        policy,
        defaults.ENV_ALLOW_EVICTION,
    )
    return policy


def error_text(exc: BaseException) -> str:
    """A Redis error with its code (NOPERM, OOM, ...), which redis-py keeps out of the text."""
    code = getattr(exc, "status_code", None)
    text = str(exc)
    return f"{code} {text}" if code and not text.startswith(str(code)) else text
