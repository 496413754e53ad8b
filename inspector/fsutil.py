"""Atomic file writes and SHA-256 digests, written once for every package.

A file that readers may open at any moment (a bundle, a JSON sidecar, an archived image, a run record) is
written to a temporary file in the same folder, flushed to disk, then renamed over the target with
:func:`os.replace`: a reader, or a board that loses power, sees the old file or the new one, never half of
one. The temporary file lives in the target's folder because a rename is only atomic within one file system.

Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> atomic_write_json(target, {"b": 1}).read_text()
    '{\\n "b": 1\\n}'
    >>> sha256_bytes(b"abc")[:12]
    'ba7816bf8f01'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]
_BLOCK = 1 << 20


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that needs a file name (zip, numpy); on a clean exit
    it is flushed to disk and renamed over ``path``, on an exception it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_create_bytes(path: PathLike, data: bytes) -> Path:
    """Like :func:`atomic_write_bytes`, but never replaces a file: the complete temporary file is hard-linked to
    ``path``, which fails with :class:`FileExistsError` when ``path`` exists (a rename would overwrite it)."""
    target = Path(path)
    staged = target.with_name(f".{target.name}.{os.urandom(4).hex()}.new")
    with atomic_path(staged) as tmp:
        tmp.write_bytes(data)
    try:
        os.link(staged, target)
    finally:
        staged.unlink()
    return target


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: PathLike, data: Any, *, indent: int = 1, **dumps_kwargs: Any) -> Path:
    """JSON (``indent`` 1 by default, as every record in this project) written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps_kwargs))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    """SHA-256 of a file, read in blocks; of a folder (an unpacked bundle), of its files' bytes in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(_BLOCK), b""):
                digest.update(block)
    return digest.hexdigest()
