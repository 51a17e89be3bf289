"""`openai`: any OpenAI-compatible chat endpoint (OpenAI, DeepSeek, vLLM, llama.cpp servers...).

    --model-args model=gpt-4o-mini                     required: the model name the endpoint knows
                 base_url=http://127.0.0.1:8000/v1     default $OPENAI_BASE_URL, else OpenAI's
                 api_key=...                           default $OPENAI_API_KEY; a loopback server needs none
                 max_connections=16                    requests in flight at once, per endpoint
                 base_url=http://a:8000/v1|http://b:8000/v1   several servers of the same model ('|', a JSON
                                                       list, or base_url=@urls.txt: one URL a line)
                 down_after=3 down_for=30              failures in a row that take an endpoint out of
                                                       rotation; for how long (s, doubling if it fails again)
                 timeout=120 max_retries=5 backoff=1   seconds per attempt; retries; first backoff (s)
                 temperature= top_p= max_tokens= seed= override the task's generation settings
                 max_tokens_cap=128                    at most this many tokens, whatever the task asks
                 extra_body={"top_k": 20}              passed through in the request body
                 max_tokens_field=max_completion_tokens  for endpoints that reject `max_tokens`

Requests run concurrently on an asyncio loop in a background thread (one per adapter, bounded by a
semaphore of max_connections); `stream` hands each answer to the runner the moment it arrives. The
harness does the retries itself (the client's own are off): exponential backoff with jitter, `Retry-After`
honoured on 429/503, 408/409/429/5xx, connection errors and timeouts retried, other 4xx fail at once.
With several endpoints each request goes to the least-loaded one in rotation; a connection error, timeout
or 5xx moves it to another at once (a 429 first waits its retries on the same one); an endpoint failing
`down_after` times in a row leaves the rotation for `down_for` s, then comes back on one probe request; when
every endpoint has failed a request `max_retries` rounds, the run stops with one line naming them all. The
cache identity is the model's, never an address: a run on one server resumes on several, from the cache.
The API key never leaves the client: not in the cache identity, a log line, an error message or repr();
URLs are shown without credentials or query.
"""
from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import json
import logging
import os
import queue
import random
import re
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from ..contract import ChatRequest, Message, ModelContext, ModelOutput, StreamingChatModel
from ..errors import HarnessError
from .images import data_url, resolve_image

log = logging.getLogger("harness.models.openai")

OPENAI_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "no-key"  # what a loopback server without auth is sent
MAX_RETRY_AFTER = 300.0  # seconds: a longer Retry-After is waited this long
MAX_BACKOFF = 60.0
_RETRYABLE_STATUS = {408, 409, 429}  # and every 5xx
_NOT_AN_API = ("check that base_url is an OpenAI-compatible endpoint (it usually ends in /v1) and that nothing between "
               "(a proxy, a login page) rewrites its answers")


class _Secret:
    """Holds the API key so that repr() and vars() of the adapter show no key."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


def normalise_base_url(url: str) -> str:
    """Scheme and host lower-cased, no trailing slash, no credentials, query or fragment."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        raise HarnessError(f"openai: base_url '{url}' is not a URL; give e.g. base_url=http://127.0.0.1:8000/v1.")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sampling_overrides(temperature: Any, top_p: Any, max_tokens: Any, seed: Any, max_tokens_cap: Any) -> dict[str, Any]:
    """The adapter options that override a request's sampling (checked, None left out): part of the cache identity."""
    return {k: v for k, v in {
        "temperature": _number("temperature", temperature, float, 0),
        "top_p": _number("top_p", top_p, float, 0),
        "max_tokens": _number("max_tokens", max_tokens, int, 1),
        "seed": _number("seed", seed, int),
        "max_tokens_cap": _number("max_tokens_cap", max_tokens_cap, int, 1),
    }.items() if v is not None}


def _number(name: str, value: Any, kind: type, minimum: float | None = None) -> Any:
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise HarnessError(f"openai: {name} must be a number, got '{value}'.") from None
    if minimum is not None and number < minimum:
        raise HarnessError(f"openai: {name} must be >= {minimum}, got {value}.")
    return number


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP-date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def message_payload(message: Message, data_dir: Path | None = None) -> dict[str, Any]:
    """An OpenAI chat message; one with images becomes content parts: each image as a base64 data URL
    (paths relative to the dataset folder), then the text - as the other back-ends build them."""
    if not message.images:
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": data_url(resolve_image(p, data_dir))}} for p in message.images]
    if message.content:
        parts.append({"type": "text", "text": message.content})
    return {"role": message.role, "content": parts}


@dataclass
class _Attempt:
    """A failed attempt that may be retried: what went wrong, in words, the server's Retry-After, and whether
    it is the endpoint's fault (connection, timeout, 5xx: try another one) or a rate limit (wait, same one)."""

    what: str
    retry_after: float | None = None
    endpoint_fault: bool = True


def endpoint_urls(value: Any, where: str = "base_url") -> list[str]:
    """The endpoints of `base_url`: one URL, several separated by '|' (or ',' or spaces), a list, or
    @FILE with one URL a line (# comments). Duplicates are refused (they would double one server's load)."""
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        text = str(value).strip()
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise HarnessError(f"openai: {where}=@{path}: cannot read the file of endpoints ({getattr(exc, 'strerror', None) or exc}); "
                                   f"give a text file with one URL a line.") from None
            text = " ".join(line.split("#", 1)[0] for line in lines)
        items = re.split(r"[|,\s]+", text)
    urls = [u.rstrip("/") for u in items if u]
    if not urls:
        raise HarnessError(f"openai: {where} names no endpoint; give e.g. base_url=http://127.0.0.1:8000/v1 (several: a|b).")
    seen: set[str] = set()
    for url in urls:
        name = normalise_base_url(url)
        if name in seen:
            raise HarnessError(f"openai: {where} lists {name} twice; name each server once (raise max_connections for more requests to it).")
        seen.add(name)
    return urls


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


def _make_client(key: _Secret, url: str, timeout: float):
    import openai

    extra: dict[str, Any] = {}
    if urlsplit(url).scheme == "http" and not any(os.environ.get(v) or os.environ.get(v.upper()) for v in _PROXY_VARIABLES):
        # a plain-HTTP server (vLLM, llama.cpp) never uses TLS, but the client loads the CA bundle anyway: ~25 ms
        # per endpoint, on the run's path to its first request. Its TLS context here holds no CA and still
        # verifies: a redirect to https fails closed (certificate refused), never unverified.
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # (check_hostname and CERT_REQUIRED by default)
        extra["http_client"] = openai.DefaultAsyncHttpxClient(verify=context, timeout=timeout)
    # retries are the adapter's own (explicit, testable), so the client's are off
    return openai.AsyncOpenAI(api_key=key.get(), base_url=url, timeout=timeout, max_retries=0, **extra)


@dataclass(eq=False)
class _Endpoint:
    """One server and its standing: requests in flight, failures in a row, out of rotation until when."""

    index: int
    name: str  # normalised: no credentials or query, for messages and logs
    url: str  # what the client is pointed at
    client: Any = None
    in_flight: int = 0
    failures: int = 0  # in a row; a success resets it
    downs: int = 0  # times taken out of rotation since its last success
    down_until: float = 0.0
    last_error: str = ""
    answered: int = 0

    def up(self, now: float) -> bool:
        return self.down_until <= now


class _Loop:
    """An asyncio loop in a daemon thread, holding the endpoints' clients and their slots (bound to it).

    A request takes a slot of the least-loaded endpoint in rotation that it has not just failed on; with
    none free it waits in line and is handed the next slot that frees (FIFO, no polling)."""

    def __init__(self, make_client, urls: Sequence[str], max_connections: int):
        self.loop = asyncio.new_event_loop()
        self._make_client = make_client
        self.max_connections = max_connections
        self.endpoints = [_Endpoint(i, normalise_base_url(u), u) for i, u in enumerate(urls)]
        self.waiters: list[tuple[asyncio.Future, frozenset[int]]] = []
        self._ready = False
        self.thread = threading.Thread(target=self._run, name="openai-adapter-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def ready(self) -> None:  # called on the loop
        if not self._ready:
            for endpoint in self.endpoints:
                endpoint.client = self._make_client(endpoint.url)
            self._ready = True

    # ---- slots

    def _cap(self, endpoint: _Endpoint, limit: int) -> int:
        return limit if endpoint.downs == 0 else 1  # back from out of rotation: one probe at a time until it answers

    def _eligible(self, avoid: frozenset[int]) -> list[_Endpoint]:
        if len(self.endpoints) == 1:
            return self.endpoints
        now = time.monotonic()
        up = [e for e in self.endpoints if e.up(now)] or self.endpoints  # all out: try them anyway, the backoff paces
        return [e for e in up if e.index not in avoid] or up

    async def acquire(self, avoid: frozenset[int] = frozenset()) -> _Endpoint:
        while True:
            eligible = self._eligible(avoid)
            best = None
            for e in eligible:
                if e.in_flight < self._cap(e, self.max_connections) and (best is None or e.in_flight < best.in_flight):
                    best = e
            if best is not None:
                best.in_flight += 1
                return best
            waiter = self.loop.create_future()
            self.waiters.append((waiter, frozenset(e.index for e in eligible)))
            try:
                got = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())
                raise
            if got is not None:  # handed a slot (in_flight already counts it)
                return got
            # None: the endpoints' standing changed, choose again

    def release(self, endpoint: _Endpoint) -> None:
        if endpoint.up(time.monotonic()) and endpoint.in_flight <= self._cap(endpoint, self.max_connections):
            for i, (waiter, wants) in enumerate(self.waiters):
                if not waiter.done() and endpoint.index in wants:
                    del self.waiters[i]
                    waiter.set_result(endpoint)  # the slot passes on
                    self.waiters = [w for w in self.waiters if not w[0].done()] if i > 32 else self.waiters
                    return
        endpoint.in_flight -= 1
        if endpoint.in_flight == 0 and len(self.endpoints) > 1:
            self.wake_all()  # (a waiter may have been waiting for any endpoint to free)

    def wake_all(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter, _ in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint in self.endpoints:
            if endpoint.client is not None:
                try:
                    await endpoint.client.close()
                except Exception:  # closing is best effort
                    pass

    async def _shutdown_then_stop(self) -> None:
        await self._shutdown()
        self.loop.stop()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        if threading.current_thread() is self.thread:  # collected on the loop itself: wind down from inside
            self.loop.create_task(self._shutdown_then_stop())
            return
        if self.thread.is_alive():
            try:
                self.submit(self._shutdown()).result(timeout=10)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()
class OpenAIModel(StreamingChatModel):
    """Any OpenAI-compatible chat endpoint: concurrent, retried, streamed as answers finish."""

    name = "openai"
    batch_size = 64
    parallel_calls = 64  # requests go to a server concurrently (bounded by its connections)

    def __init__(
        self,
        context: ModelContext | None = None,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        max_connections: int = 16,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        extra_body: dict[str, Any] | str | None = None,
        max_tokens_field: str = "max_tokens",
        max_tokens_cap: int | None = None,
        down_after: int = 3,
        down_for: float = 30.0,
    ):
        if not model:
            raise HarnessError("openai: name the model, e.g. --model-args model=gpt-4o-mini,base_url=http://127.0.0.1:8000/v1.")
        self.model = str(model)
        if base_url:
            self._urls = endpoint_urls(base_url)
        else:
            self._urls = endpoint_urls(os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL, "$OPENAI_BASE_URL")
        self.endpoints = [normalise_base_url(u) for u in self._urls]  # for messages and logs: no credentials or query
        self.base_url = " | ".join(self.endpoints)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not key:
            remote = [e for e in self.endpoints if not _is_loopback(e)]
            if remote:
                raise HarnessError(f"openai: no API key for {remote[0]}; set OPENAI_API_KEY or pass --model-args api_key=... (api_key=EMPTY for a server without auth).")
            key = NO_KEY
        self._key = _Secret(str(key))
        self.max_connections = _number("max_connections", max_connections, int, 1)
        self.timeout = _number("timeout", timeout, float, 0.001)
        self.max_retries = _number("max_retries", max_retries, int, 0)
        self.backoff = _number("backoff", backoff, float, 0)
        self.down_after = _number("down_after", down_after, int, 1)
        self.down_for = _number("down_for", down_for, float, 0)
        self.overrides = sampling_overrides(temperature, top_p, max_tokens, seed, max_tokens_cap)
        if isinstance(extra_body, str):
            try:
                extra_body = json.loads(extra_body)
            except json.JSONDecodeError:
                raise HarnessError("openai: extra_body must be a JSON object, e.g. extra_body={\"top_k\": 20}.") from None
        if extra_body is not None and not isinstance(extra_body, dict):
            raise HarnessError("openai: extra_body must be a JSON object, e.g. extra_body={\"top_k\": 20}.")
        self.extra_body = extra_body or None
        if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise HarnessError(f"openai: max_tokens_field must be max_tokens or max_completion_tokens, got '{max_tokens_field}'.")
        self.max_tokens_field = max_tokens_field
        self.data_dir = context.data_dir if context is not None else None
        self.n_supported: bool | None = None  # does the server honour n > 1? learnt from the first answer
        self.attempts = 0  # HTTP requests sent, retries included
        try:
            import openai  # noqa: F401
        except ImportError:
            raise HarnessError("openai: the `openai` package is missing; pip install 'openai>=1.40' (it is a dependency of esc-harness).") from None
        self._loop: _Loop | None = None
        self._lock = threading.Lock()
        self._closed = False
        rt = self._runtime()
        rt.loop.call_soon_threadsafe(rt.ready)  # build the client (TLS context...) while the caller gets ready

    # ------------------------------------------------------------------ identity and plumbing

    def cache_identity(self) -> dict[str, Any]:
        # the model, not where it is served: a run on one server resumes on several and hits the same cache
        identity: dict[str, Any] = {"model": self.model, **self.overrides}
        if self.extra_body:
            identity["extra_body"] = self.extra_body
        if self.max_tokens_field != "max_tokens":
            identity["max_tokens_field"] = self.max_tokens_field
        return identity

    def __repr__(self) -> str:
        return f"OpenAIModel(model={self.model!r}, base_url={self.base_url!r}, max_connections={self.max_connections})"


    def _runtime(self) -> _Loop:
        with self._lock:
            if self._closed:
                raise HarnessError("openai: the model was closed; open a new one.")
            if self._loop is None:
                # the factory holds the settings, not the model, so an unclosed model can still be collected
                self._loop = _Loop(functools.partial(_make_client, self._key, timeout=self.timeout), self._urls, self.max_connections)
                self._finalizer = weakref.finalize(self, self._loop.stop)
            return self._loop

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
        if loop is not None:
            self._finalizer.detach()
            loop.stop()
            if len(loop.endpoints) > 1:
                log.info("openai: answers per endpoint: %s", ", ".join(f"{e.name} {e.answered}" for e in loop.endpoints))

    def _scrub(self, text: str) -> str:
        """One line, the key (and any bearer token) removed, at most 300 characters."""
        key = self._key.get()
        if len(key) >= 6 and key != NO_KEY:  # (a one-letter placeholder is no secret, and would garble the text)
            text = text.replace(key, "<redacted>")
        text = re.sub(r"(?i)(bearer\s+)\S+", r"\1<redacted>", text)
        text = " ".join(text.split())
        return text if len(text) <= 300 else text[:297] + "..."

    # ------------------------------------------------------------------ one HTTP call, retried

    async def _call(self, body: dict[str, Any], rt: _Loop):
        """One completion, retried: a rate limit waits on the same endpoint; a connection error, timeout or 5xx
        moves to another endpoint at once; once every endpoint has failed it (one endpoint: each failure) the
        request backs off and tries again, at most max_retries times."""
        import openai

        several = len(rt.endpoints) > 1
        rounds = 0  # back-offs after every endpoint failed this request
        attempts = 0
        tried: set[int] = set()  # endpoints that failed this request since its last back-off
        limited: dict[int, int] = {}  # rate-limit retries per endpoint
        pinned: _Endpoint | None = None  # a rate-limited request waits for the same endpoint
        while True:
            attempts += 1
            failure: _Attempt | None = None
            fatal: HarnessError | None = None
            if pinned is not None:  # only that endpoint (while it is in rotation)
                endpoint = await rt.acquire(frozenset(e.index for e in rt.endpoints if e is not pinned))
                pinned = None
            else:
                endpoint = await rt.acquire(frozenset(tried))
            try:
                self.attempts += 1
                answer = await endpoint.client.chat.completions.create(**body)
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status in _RETRYABLE_STATUS or status >= 500:
                    failure = _Attempt(f"HTTP {status}{self._server_says(exc)}", parse_retry_after(exc.response.headers), status >= 500)
                else:
                    fatal = self._fatal(exc, endpoint.name)
            except openai.APITimeoutError:
                failure = _Attempt(f"no answer within timeout={self.timeout:g} s")
            except openai.APIConnectionError as exc:
                cause = exc.__cause__
                failure = _Attempt(f"connection error ({type(cause).__name__ if cause else 'unknown'})")
            except openai.OpenAIError as exc:  # e.g. an answer that is not a chat completion
                fatal = HarnessError(f"openai: {endpoint.name}: {type(exc).__name__}: {self._scrub(str(exc))}")
            except json.JSONDecodeError as exc:  # a 200 whose body is not JSON (a proxy's page, a cut answer)
                fatal = HarnessError(f"openai: {endpoint.name} answered with a body that is not JSON ({exc.msg} at character {exc.pos}); "
                                     f"{_NOT_AN_API}.")
            except BaseException:
                rt.release(endpoint)
                raise
            else:
                if several:
                    self._answered(endpoint)
                endpoint.answered += 1
                rt.release(endpoint)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("openai: %s answered", endpoint.name)
                return answer
            # raised here, outside the except blocks, so that no error chains back to the client's request (and its headers)
            rt.release(endpoint)
            if fatal is not None:
                raise fatal
            assert failure is not None
            endpoint.last_error = failure.what
            if several:
                if not failure.endpoint_fault and limited.get(endpoint.index, 0) < self.max_retries:
                    limited[endpoint.index] = limited.get(endpoint.index, 0) + 1
                    delay = self._delay(limited[endpoint.index], failure.retry_after)
                    log.warning("openai: %s from %s; retry there in %.1f s", failure.what, endpoint.name, delay)
                    await asyncio.sleep(delay)
                    pinned = endpoint
                    continue
                self._strike(endpoint, rt)
                tried.add(endpoint.index)
                now = time.monotonic()
                if any(e.index not in tried and e.up(now) for e in rt.endpoints):
                    log.warning("openai: %s from %s; trying another endpoint", failure.what, endpoint.name)
                    continue
            rounds += 1
            if rounds > self.max_retries:
                raise HarnessError(self._gave_up(rt, endpoint, failure, attempts))
            delay = self._delay(rounds, failure.retry_after)
            log.warning("openai: %s from %s; retry %d of %d in %.1f s", failure.what, endpoint.name if not several else "all endpoints",
                        rounds, self.max_retries, delay)
            tried.clear()
            await asyncio.sleep(delay)

    def _gave_up(self, rt: _Loop, endpoint: _Endpoint, failure: _Attempt, attempts: int) -> str:
        advice = "Finished samples are saved: resume the run."
        if len(rt.endpoints) == 1:
            return (f"openai: {endpoint.name}: {failure.what}; gave up after {attempts} attempts "
                    f"(raise max_retries/timeout, or check the server). {advice}")
        now = time.monotonic()
        state = "is down" if not any(e.up(now) for e in rt.endpoints) else "failed this request"
        named = "; ".join(f"{e.name} ({e.last_error or 'no failure'})" for e in rt.endpoints)
        return (f"openai: every endpoint {state}: {named}; gave up after {attempts} attempts "
                f"(check the servers, or raise max_retries/timeout). {advice}")

    def _strike(self, endpoint: _Endpoint, rt: _Loop) -> None:
        """A failure in a row; `down_after` of them take the endpoint out of rotation for `down_for` s (doubling
        each time it fails again on its return, at most 10 minutes); then one probe request at a time."""
        endpoint.failures += 1
        now = time.monotonic()
        if endpoint.failures >= self.down_after and endpoint.up(now):
            wait = min(self.down_for * 2 ** endpoint.downs, 600.0)
            endpoint.downs += 1
            endpoint.down_until = now + wait
            log.warning("openai: %s is out of rotation for %.0f s after %d failures in a row (last: %s)",
                        endpoint.name, wait, endpoint.failures, endpoint.last_error)
            rt.wake_all()  # those waiting for it choose again
            rt.loop.call_later(wait, rt.wake_all)

    def _answered(self, endpoint: _Endpoint) -> None:
        if endpoint.downs:
            log.warning("openai: %s answers again; back in rotation", endpoint.name)
        endpoint.failures = endpoint.downs = 0

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        ceiling = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)
        return ceiling * (0.5 + random.random() / 2)  # jitter: 50-100% of the exponential step

    def _server_says(self, exc) -> str:
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else body if isinstance(body, str) else None
        return f": {self._scrub(str(message))}" if message else ""

    def _fatal(self, exc, where: str) -> HarnessError:
        status = exc.status_code
        says = self._server_says(exc)
        if status in (401, 403):
            hint = "check the key (OPENAI_API_KEY or --model-args api_key=...) and that it may use this model"
        elif status == 404:
            hint = f"check model={self.model} and base_url (it usually ends in /v1)"
        elif status in (400, 413, 422):
            hint = "the server rejected the request; check the model args (max_tokens, sampling) and the prompt length"
        else:
            hint = "not retried"
        return HarnessError(f"openai: {where}: HTTP {status}{says}; {hint}.")

    # ------------------------------------------------------------------ one request (n choices)

    def _body(self, request: ChatRequest, n: int, seed: int | None) -> dict[str, Any]:
        gen = request.generation
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [message_payload(m, self.data_dir) for m in request.messages],
            "temperature": self.overrides.get("temperature", gen.temperature),
            "top_p": self.overrides.get("top_p", gen.top_p),
            self.max_tokens_field: min(self.overrides.get("max_tokens", gen.max_tokens), self.overrides.get("max_tokens_cap", gen.max_tokens)),
        }
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if gen.stop:
            body["stop"] = list(gen.stop)
        if self.extra_body:
            body["extra_body"] = self.extra_body
        return body

    async def _answer(self, request: ChatRequest, rt: _Loop) -> ModelOutput:
        n = request.generation.n
        seed = self.overrides.get("seed", request.generation.seed)

        def seeded(i: int) -> int | None:  # separate requests for the choices need distinct seeds
            return None if seed is None else seed + i

        if n == 1 or self.n_supported is False:
            completions = list(await asyncio.gather(*(self._call(self._body(request, 1, seeded(i)), rt) for i in range(n))))
        else:
            first = await self._call(self._body(request, n, seed), rt)
            choices = getattr(first, "choices", None)
            got = len(choices) if isinstance(choices, list) else 0  # (not a completion: reported below)
            completions = [first]
            if got < n:  # the server ignores n (llama-cpp-python...): ask for the rest one by one
                if self.n_supported is None and got <= 1:
                    log.info("openai: %s returned %d of %d choices; asking for each choice separately", self.base_url, got, n)
                    self.n_supported = False
                completions += await asyncio.gather(*(self._call(self._body(request, 1, seeded(i)), rt) for i in range(max(got, 1), n)))
            else:
                self.n_supported = True
        texts: list[str] = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        try:
            for completion in completions:
                for choice in sorted(completion.choices or [], key=lambda c: c.index or 0):
                    text = (choice.message.content if choice.message else None) or ""
                    if not isinstance(text, str):
                        raise TypeError(f"message content is {type(text).__name__}")
                    texts.append(text)
                if completion.usage is not None:
                    usage["prompt_tokens"] += int(completion.usage.prompt_tokens or 0)
                    usage["completion_tokens"] += int(completion.usage.completion_tokens or 0)
        except (AttributeError, TypeError, ValueError) as exc:  # JSON, but not a chat completion (the client does not check)
            problem = f"openai: {self.base_url} answered JSON that is not a chat completion ({self._scrub(str(exc))}); {_NOT_AN_API}."
        else:
            problem = None
        if problem is not None:
            raise HarnessError(problem)
        if len(texts) < n:
            raise HarnessError(f"openai: {self.base_url} returned {len(texts)} choices where {n} were asked; check the server.")
        return ModelOutput(choices=texts[:n], usage=usage if any(usage.values()) else {})

    # ------------------------------------------------------------------ the ChatModel interface

    async def _feed(self, requests: Sequence[ChatRequest], out: queue.Queue, rt: _Loop) -> None:
        rt.ready()
        # each answer is collected by its own done-callback (no asyncio.wait over every pending task per answer);
        # the answers that finish in one turn of the loop cross to the caller's thread as one batch: one wakeup
        # of that thread (and one hand-over of the GIL) per batch rather than per answer
        tasks: list[asyncio.Task] = []
        remaining = [len(requests)]
        failed = asyncio.Event()
        all_done = asyncio.Event()
        batch: list[tuple[int, ModelOutput]] = []

        def hand_over() -> None:
            if batch:
                out.put(("ok", None, batch[:]))
                batch.clear()

        def done(position: int, task: asyncio.Task) -> None:
            remaining[0] -= 1
            if not task.cancelled():
                exc = task.exception()
                if exc is None:
                    if not failed.is_set():
                        if not batch:
                            rt.loop.call_soon(hand_over)
                        batch.append((position, task.result()))
                elif not failed.is_set():  # what finished before is handed over first, then the first failure
                    failed.set()
                    hand_over()
                    out.put(("error", None, exc))
            if remaining[0] == 0:
                all_done.set()

        try:
            for position, request in enumerate(requests):
                task = asyncio.ensure_future(self._answer(request, rt))
                task.add_done_callback(functools.partial(done, position))
                tasks.append(task)
            finished = asyncio.ensure_future(all_done.wait())
            stopped = asyncio.ensure_future(failed.wait())
            await asyncio.wait((finished, stopped), return_when=asyncio.FIRST_COMPLETED)
            for waiting in (finished, stopped):
                waiting.cancel()
            if not failed.is_set():
                hand_over()
                out.put(("end", None, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug: hand it to the caller rather than hang
            out.put(("error", None, exc))
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def stream(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ModelOutput]]:
        """(position, output) as each request finishes; the first failure stops the rest and is raised."""
        if not requests:
            return
        for request in requests:  # a missing image fails before anything is sent
            for message in request.messages:
                for path in message.images:
                    resolve_image(path, self.data_dir)
        rt = self._runtime()
        out: queue.Queue = queue.Queue()
        finished = threading.Event()
        holder: dict[str, asyncio.Task] = {}

        def start() -> None:  # on the loop
            task = rt.loop.create_task(self._feed(list(requests), out, rt))
            task.add_done_callback(lambda _: finished.set())
            holder["task"] = task

        rt.loop.call_soon_threadsafe(start)
        try:
            while True:
                try:
                    kind, position, payload = out.get(timeout=0.25)
                except queue.Empty:
                    if finished.is_set() and out.empty():
                        raise HarnessError("openai: the request loop stopped without an answer; rerun (finished samples are saved).") from None
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                yield from payload  # a batch of (position, output)
        finally:
            if not finished.is_set():  # the caller stopped early (Ctrl-C, an error while saving): cancel what is in flight
                try:
                    rt.loop.call_soon_threadsafe(lambda: holder["task"].cancel())
                except RuntimeError:  # the loop is already gone (closed meanwhile)
                    pass
                else:
                    finished.wait(timeout=10)

