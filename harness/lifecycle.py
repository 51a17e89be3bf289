"""The life of a run: the models it opens from their specs, and its folder (created with its header,
locked while worked on, records appended, then finished or failed).

Every command that makes a run folder (`run`, `esc-eval rescore`) or opens models (`ab judge`, the
training recipes) goes through here, so a folder's status means the same everywhere:

    running   being worked on, or killed (kill -9, power loss): `--resume` carries on
    finished  complete; summary.json (or the checkpoint) is final
    failed    stopped by an error, whose one line is in `error`; `--resume` tries again
"""
from __future__ import annotations

import json
import platform
import re
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Generic, Iterator, Sequence, TypeVar
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from pydantic import BaseModel

from . import paths, registry, store
from .cache import CachedModel, ResponseCache
from .contract import ChatModel, ModelContext, SampleRecord, Summary
from .errors import HarnessError

REDACTED = "<redacted>"
_RECORDED_PACKAGES = ("esc-harness", "nltk", "numpy", "pandas", "scikit-learn", "pydantic", "torch", "transformers", "peft", "trl",
                      "accelerate", "vllm", "openai", "xllamacpp", "bert-score")

H = TypeVar("H", bound=BaseModel)


# --------------------------------------------------------------------------- provenance


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# Secrets are decided by a closed list of argument NAMES (compared lower-cased, '-' and '_' dropped: API-Key,
# api_key and apiKey are one name) and by VALUES that look like keys, never by a substring of the name
# (max_tokens is no secret). URLs keep scheme and host: their user:password@ and their secret-named query
# parameters become REDACTED. `redact` (what is recorded or printed), `secrets_of` (what an error line
# blanks) and `is_redacted` (what --resume asks for again) are the one place that decides.
def _norm_name(name: Any) -> str:
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
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:<redacted>|[^\s'\"<>])+")


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


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _RECORDED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def error_line(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """One line for the record: a HarnessError's own text, else the exception's type and first line;
    any secret value that slipped into it (`secrets`: what `secrets_of` gives of the run's arguments),
    any URL's credentials and anything that looks like a key are blanked."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not isinstance(exc, HarnessError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = _BEARER.sub(REDACTED, _KEY_LIKE.sub(REDACTED, _redact_text(text)))  # URLs' credentials, key-looking words
    for secret in sorted(secrets, key=len, reverse=True):  # (longest first: a key holding another is blanked whole)
        if secret:
            text = text.replace(secret, REDACTED)
    return text


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A model as the command line names it: an adapter and its arguments (`openai:gpt-4o` is
    adapter `openai` with model=gpt-4o)."""

    model: str
    model_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, args: dict[str, Any] | None = None) -> "ModelSpec":
        name, sep, model = spec.partition(":")
        kwargs = dict(args or {})
        if sep and model:
            kwargs.setdefault("model", model)
        return cls(name, kwargs)

    def key(self) -> str:
        return json.dumps([self.model, self.model_args], sort_keys=True, default=str)


def open_cache(cache_path: Path | None, use_cache: bool) -> ResponseCache | None:
    return ResponseCache(paths.cache_path(cache_path)) if use_cache else None


def open_models(specs: dict[str, ModelSpec], cache: ResponseCache | None, context: ModelContext | None = None,
                option: dict[str, str] | None = None) -> dict[str, CachedModel]:
    """One adapter per distinct spec, behind the response cache: roles played by the same model share it
    (one server, one GPU copy). `option` names the command-line option of each role for error lines.
    On failure whatever was opened is closed again (the cache too)."""
    opened: dict[str, CachedModel] = {}
    by_role: dict[str, CachedModel] = {}
    try:
        for role, spec in specs.items():
            if spec.key() not in opened:
                adapter = registry.models.get(spec.model)
                try:
                    inner: ChatModel = adapter(context, **spec.model_args)
                except TypeError as exc:
                    where = (option or {}).get(role) or ("--model-args" if role == "model" else f"--role-args {role}=...")
                    raise HarnessError(f"model '{spec.model}' ({role}): bad {where} ({exc}).") from None
                opened[spec.key()] = CachedModel(inner, cache)
            by_role[role] = opened[spec.key()]
    except BaseException:
        for model in opened.values():
            model.close()
        if cache is not None:
            cache.close()
        raise
    return by_role


def unique_models(models: dict[str, CachedModel]) -> list[CachedModel]:
    return list({id(m): m for m in models.values()}.values())


def close_models(models: dict[str, CachedModel]) -> None:
    """Every adapter, then every cache they use (once each)."""
    caches: list[ResponseCache] = []
    try:
        for model in unique_models(models):
            try:
                model.close()
            finally:
                if model.cache is not None and all(model.cache is not c for c in caches):
                    caches.append(model.cache)
    finally:
        for cache in caches:
            cache.close()


# --------------------------------------------------------------------------- folders


def new_folder(parent: Path, slug: str) -> Path:
    """`<parent>/<UTC stamp>-<slug>-<random>`, created (never an existing one)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", slug)
    folder = Path(parent) / f"{stamp}-{clean}-{uuid.uuid4().hex[:6]}"
    try:
        folder.mkdir(parents=True)
    except OSError as exc:  # a file where a folder should be, no permission, a read-only or full disk
        why = exc.strerror or str(exc)
        if isinstance(exc, (NotADirectoryError, FileExistsError)):
            why += ": a file stands where a folder should be"
        raise HarnessError(f"--output-dir {parent}: cannot make a folder there ({why}); give --output-dir a folder you can write to.") from None
    return folder


_WORKING: list["Folder"] = []  # folders whose `working` block runs, or was left by an interrupt (Ctrl-C)


def working_folder() -> "Folder | None":
    """The folder being worked on, or the one an interrupt (Ctrl-C) left: what the CLI's interrupt line names."""
    return _WORKING[-1] if _WORKING else None


class Folder(Generic[H]):
    """A folder whose header file (a pydantic model with status, error, finished_at) tells its state."""

    def __init__(self, path: Path, header_name: str, header: H):
        self.path, self.header_name, self.header = Path(path), header_name, header

    def write_header(self, **update: Any) -> H:
        if update:
            self.header = self.header.model_copy(update=update)
        store.write_json(self.path / self.header_name, self.header)
        return self.header

    @contextmanager
    def working(self, secrets: Sequence[str] = ()) -> Iterator["Folder[H]"]:
        """Locked while the block runs and marked running; an exception marks it failed with its one line
        (and is raised again). An interrupt (Ctrl-C) or a kill leaves it running, to be resumed."""
        with store.locked(self.path):
            if getattr(self.header, "status", None) != "running" or getattr(self.header, "error", None):
                self.write_header(status="running", error=None, finished_at=None)
            _WORKING.append(self)
            interrupted = False
            try:
                yield self
            except Exception as exc:
                try:
                    self.write_header(status="failed", error=error_line(exc, secrets))
                except OSError:  # (a full disk) it stays running, to be resumed; the error to tell is the first one
                    pass
                raise
            except KeyboardInterrupt:  # Ctrl-C: it stays running, and the CLI names it (`working_folder`)
                interrupted = True
                raise
            finally:
                if not interrupted:
                    _WORKING.remove(self)

    def finish(self, **update: Any) -> H:
        return self.write_header(**update, status="finished", error=None, finished_at=now())


class RunFolder(Folder):
    """A run folder: run.json, samples.jsonl (appended as samples finish), summary.json."""

    def __init__(self, path: Path, header):
        super().__init__(path, store.HEADER, header)

    @classmethod
    def create(cls, parent: Path, slug: str, header) -> "RunFolder":
        """A new folder under `parent`, its run.json written with `run_id` = the folder's name."""
        path = new_folder(parent, slug)
        folder = cls(path, header.model_copy(update={"run_id": path.name}))
        folder.write_header()
        return folder

    @classmethod
    def open(cls, path: Path) -> "RunFolder":
        return cls(path, store.read_header(path))

    def records(self, repair: bool = False) -> list[SampleRecord]:
        return store.read_records(self.path, repair=repair)

    def writer(self) -> store.SampleWriter:
        return store.SampleWriter(self.path)

    def finish_with(self, summary: Summary, **update: Any):
        store.write_json(self.path / store.SUMMARY, summary)
        return self.finish(**update)
