"""The sha256 of a file: one streaming hash for every caller, and the one in-process memo.

Files are hashed in many places - dataset files against their pinned digest, images in cache keys, GGUF
and model weights in cache identities - and all of them go through `sha256_of`. Two needs remember a
digest, each in one layer:

- `sha256_memo`: within a process, keyed by (path, size, mtime_ns), so an image or a GGUF file asked about
  again costs a `stat`, and a file rewritten in place is hashed anew. Images in cache keys, the `local`
  model's GGUF and the dataset files checked against their pinned digests (a suite, a notebook) use it.
- across processes, for model weights (gigabytes): `harness.models.weights.fingerprint` keeps each file's
  digest in fingerprints.json beside the response cache, keyed the same way, and hashes with `sha256_of`.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

_BLOCK = 1 << 22  # 4 MiB reads: the hash, not the reads, is the cost on large files


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's content, read in blocks (never the whole file at once)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=65536)
def _memoised(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def sha256_memo(path: str | Path, stat: os.stat_result | None = None) -> str:
    """`sha256_of`, computed once per process for a given path, size and modification time (pass `stat`
    when the caller already has it)."""
    stat = stat if stat is not None else os.stat(path)
    return _memoised(str(path), stat.st_size, stat.st_mtime_ns)
