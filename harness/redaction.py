"""What may be recorded or printed of a model's arguments, and what an error line must blank.

Secrets are decided by a closed list of argument NAMES and by VALUES that look like keys, never by a
substring of a name (max_tokens is no secret); URLs keep scheme and host but lose their credentials.
`redact` (what is recorded or printed), `secrets_of` (what an error line blanks), `is_redacted` (what
--resume asks for again) and `error_line` are the one place that decides.
"""
from __future__ import annotations

import re
from typing import Any, Sequence
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from .errors import HarnessError, first_line

REDACTED = "<redacted>"


def _norm_name(name: Any) -> str:
    """Names compare lower-cased with '-' and '_' dropped: API-Key, api_key and apiKey are one name."""
    return str(name).lower().replace("-", "").replace("_", "")


_SECRET_NAMES = frozenset(_norm_name(n) for n in (
    "api_key", "apikey", "key", "secret", "secret_key", "client_secret", "password", "passwd", "pwd", "token",
    "access_token", "auth_token", "bearer_token", "hf_token", "huggingface_token", "authorization", "auth",
    "api_token", "openai_api_key", "anthropic_api_key", "azure_api_key", "x_api_key", "api_secret",
    "private_key", "refresh_token", "session_token", "id_token", "github_token", "proxy_authorization"))
_KEY_LIKE = re.compile(  # anywhere in a value or an error line
    r"(?<![A-Za-z0-9_-])(?:sk-[A-Za-z0-9_-]{16,}"  # OpenAI-style (sk-..., sk-proj-...)
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}"  # GitHub
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)")  # a JWT
_BEARER = re.compile(r"(?i:\bbearer)\s+[A-Za-z0-9._~+/=-]{8,}")  # an Authorization header's value (a whole value, or in an error line)
# (a URL ends before '|' or ',' that starts another: base_url=http://a/v1|http://u:pw@b/v1 is two URLs)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:<redacted>|(?![|,][A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>])+")


def is_secret_name(name: Any) -> bool:
    return _norm_name(name) in _SECRET_NAMES


def _split_url(url: str) -> tuple[str, str, str, str, str] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return (parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment) if parts.scheme and parts.netloc else None


def _params(text: str, found: list[str] | None) -> str:
    """`a=1&api_key=K` with the values of secret-named parameters REDACTED (K noted in `found`)."""
    out = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if eq and is_secret_name(unquote_plus(name)) and value != REDACTED:
            if found is not None and value:
                found += [value, unquote_plus(value)]
            value = REDACTED
        out.append(f"{name}{eq}{value}")
    return "&".join(out)


def _redact_url(url: str, found: list[str] | None = None) -> str:
    parts = _split_url(url)
    if parts is None:
        return url
    scheme, netloc, path, query, fragment = parts
    userinfo, at, host = netloc.rpartition("@")
    if at and userinfo != REDACTED:
        user, colon, password = userinfo.partition(":")
        if found is not None:  # a password is secret; a user alone is a token (https://TOKEN@host)
            found += [p for p in ((password, unquote(password)) if colon else (user, unquote(user))) if p]
        netloc = f"{REDACTED}@{host}"
    return urlunsplit((scheme, netloc, path, _params(query, found) if query else "", _params(fragment, found) if "=" in fragment else fragment))


def _redact_text(text: str, found: list[str] | None = None) -> str:
    """Every URL in `text` without its credentials."""
    return _URL.sub(lambda m: _redact_url(m.group(0), found), text) if "://" in text else text


def _redact_value(value: Any, found: list[str] | None = None) -> Any:
    if isinstance(value, str):
        keys = _KEY_LIKE.findall(value) + ([value.strip()] if _BEARER.fullmatch(value.strip()) else [])
        if keys:
            if found is not None:
                found += [value, *keys]
            return REDACTED
        return _redact_text(value, found)
    if isinstance(value, dict):
        return {k: _redact_item(k, v, found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v, found) for v in value)
    return value


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _leaves(v)]
    return [] if value is None or is_redacted(value) or str(value) == "" else [str(value)]


def _redact_item(name: Any, value: Any, found: list[str] | None) -> Any:
    if is_secret_name(name):
        if found is not None:
            found += _leaves(value)
        return REDACTED
    return _redact_value(value, found)


def redact(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as they may be recorded or printed: secret-named ones (at any depth, e.g. in
    extra_body) and key-looking values REDACTED, URLs without credentials. Redacting twice changes nothing."""
    return {k: _redact_item(k, v, None) for k, v in args.items()}


def secrets_of(args: dict[str, Any]) -> list[str]:
    """Every secret value `redact` removes (the values of secret names, key-looking values, URL passwords and
    secret query parameters), longest first, for error lines to blank."""
    found: list[str] = []
    for k, v in args.items():
        _redact_item(k, v, found)
    return sorted({s for s in found if s and not is_redacted(s)}, key=lambda s: (-len(s), s))


def is_redacted(value: Any) -> bool:
    """Whether a recorded value lost a secret (REDACTED, a string holding it, e.g. a URL without its
    password, or a dict/list holding such a value): --resume must be given it again."""
    if isinstance(value, str):
        return REDACTED in value
    if isinstance(value, dict):
        return any(is_redacted(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_redacted(v) for v in value)
    return False


def error_line(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """One line for the record: a HarnessError's own text, else the exception's type and first line;
    any secret value that slipped into it (`secrets`: what `secrets_of` gives of the run's arguments),
    any URL's credentials and anything that looks like a key are blanked."""
    if isinstance(exc, HarnessError):
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
    else:
        text = first_line(exc)
    text = _BEARER.sub(REDACTED, _KEY_LIKE.sub(REDACTED, _redact_text(text)))  # URLs' credentials, key-looking words
    for secret in sorted(secrets, key=len, reverse=True):  # (longest first: a key holding another is blanked whole)
        if secret:
            text = text.replace(secret, REDACTED)
    return text
