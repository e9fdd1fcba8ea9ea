"""Does I/O: videos in an object store (S3, GCS, Azure) or a local folder, through obstore.

A store's configuration comes only from its standard environment (AWS_ACCESS_KEY_ID, AWS_REGION,
AWS_ENDPOINT_URL, ...; obstore reads it itself), so no credential passes through our code, our
logs or our ledger. An object is written create-only (`mode="create"`): a retried upload can never
overwrite a video, and a video already there with our bytes is ours from an earlier try.
Every failure is an ObjectFault, a StorageFault of one line naming the object and the next step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator, Callable, TypeVar

import obstore
from obstore import exceptions as ox
from obstore.store import LocalStore, from_url

from pipeline.redact import redact
from pipeline.store.faults import StorageFault
from pipeline.store.location import Location, parse

SIGNABLE = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "azure")
MAX_SIGN = timedelta(days=7)  # S3's longest presigned URL (SigV4)
_CHUNK = 1024 * 1024
T = TypeVar("T")
# obstore raises a missing object as its NotFoundError or, on some paths, Python's FileNotFoundError.
_MISSING = (ox.NotFoundError, FileNotFoundError)


class ObjectFault(StorageFault):
    """An object of our videos cannot be read or written as asked: one line, the object and what to do."""


class ObjectTaken(ObjectFault):
    """Another object (other bytes) already holds the name: it is never overwritten."""


@dataclass(frozen=True)
class StoredVideo:
    url: str  # the object's URL (or local path), as the ledger's output_path records it
    bytes: int
    sha256: str


def _fault(exc: Exception, url: str, doing: str) -> ObjectFault:
    """An obstore error as our one line (its own text redacted and cut to its first line)."""
    if isinstance(exc, _MISSING):
        what, step = "not found", "check the URL (or that the bucket exists)"
    elif isinstance(exc, (ox.PermissionDeniedError, ox.UnauthenticatedError)):
        what, step = "access denied", "check the store's credentials in the environment (AWS_ACCESS_KEY_ID, ...)"
    elif isinstance(exc, ox.UnknownConfigurationKeyError):
        what, step = "bad store configuration", "check the store's environment variables"
    else:
        what, step = "storage error", "check the store and the network, then run the same command again"
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:200]
    return ObjectFault(f"cannot {doing} {url}: {what} ({detail}); everything durable is kept: {step}")


def _call(fn: Callable[[], T], url: str, doing: str) -> T:
    try:
        return fn()
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, url, doing) from None


def open_store(loc: Location | str):
    """The store at a Location: a LocalStore on a local folder (made if missing), or from its URL."""
    loc = parse(loc, "--out")
    if not loc.remote:
        return _call(lambda: LocalStore(loc.path.absolute(), mkdir=True), loc.url, "open")
    return _call(lambda: from_url(loc.url), loc.url, "open")


def _split(url: str) -> tuple[object, str]:
    """An object's URL (or local path) as (the store of its bucket or folder, its path in it)."""
    loc = parse(url, "a video")
    if not loc.remote:
        return _call(lambda: LocalStore(loc.path.absolute().parent), url, "open"), loc.path.name
    scheme, rest = loc.url.split("://", 1)
    bucket, _, key = rest.partition("/")
    return _call(lambda: from_url(f"{scheme}://{bucket}"), url, "open"), key


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def put_file(out: Location | str, name: str, local_file: Path, sha256: str | None = None) -> StoredVideo:
    """`local_file` stored create-only as `<out>/<name>`.

    An object already there with the same size and sha256 is ours from an earlier try (a crash
    after the upload, before the ledger said so): accepted. One with other bytes is never
    overwritten: ObjectTaken, and the row stays to retry once someone has looked.
    """
    out = parse(out, "--out")
    url = out.child(name).url
    size = local_file.stat().st_size
    digest = sha256 or sha256_of(local_file)
    store = open_store(out)
    try:
        obstore.put(store, name, Path(local_file), mode="create")
    except ox.AlreadyExistsError:
        there = _digest_of(store, name, url)
        if there != (size, digest):
            raise ObjectTaken(f"cannot store {url}: another object is already there ({there[0]} bytes, not "
                              f"this video's {size}); it was not overwritten: move or delete it, then run "
                              f"the same command again (no new video will be paid for)") from None
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, url, "store") from None
    return StoredVideo(url, size, digest)


def _digest_of(store, name: str, url: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in obstore.get(store, name).stream(min_chunk_size=_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, url, "read") from None
    return size, digest.hexdigest()


def head(url: str) -> int | None:
    """The object's size, or None when there is none (any other failure is an ObjectFault)."""
    store, key = _split(url)
    try:
        return int(obstore.head(store, key)["size"])
    except _MISSING:
        return None
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, url, "read") from None


exists = head


def sizes_under(prefix: Location | str) -> dict[str, int]:
    """Every object under a prefix, its URL -> size: one listing (a page per 1,000 objects), not a
    request per object: how a plan checks 100,000 finished rows."""
    prefix = parse(prefix, "--out")
    store = open_store(prefix)
    found: dict[str, int] = {}
    try:
        for batch in obstore.list(store, chunk_size=1000):
            for meta in batch:
                found[prefix.child(meta["path"]).url] = int(meta["size"])
    except _MISSING:
        return found
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, prefix.url, "list") from None
    return found


def move_object(source: str, dest: str) -> None:
    """An object moved within its bucket: written create-only under the new name (S3 has no
    copy-if-not-exists), then the old one deleted. A crash between the two leaves both; the next
    move finds the same bytes there and only deletes."""
    store, key = _split(source)
    _, target = _split(dest)
    data = _call(lambda: obstore.get(store, key).bytes(), source, "read")
    try:
        obstore.put(store, target, data, mode="create")
    except ox.AlreadyExistsError:
        if _digest_of(store, target, dest) != (len(data), hashlib.sha256(data).hexdigest()):
            raise ObjectTaken(f"cannot move {source} to {dest}: another object is already there; it was not "
                              "overwritten: move or delete it, then run the same command again") from None
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, dest, "store") from None
    _call(lambda: obstore.delete(store, key), source, "delete")


def read_range(url: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of an object."""
    store, key = _split(url)
    return bytes(_call(lambda: obstore.get_range(store, key, start=start, end=end), url, "read"))


async def stream(url: str, start: int = 0, end: int | None = None) -> tuple[int, AsyncIterator[bytes]]:
    """(the object's size, its bytes [start, end) as they come): what the review page's proxy serves."""
    store, key = _split(url)
    options = {} if start == 0 and end is None else {"range": (start, end) if end is not None else {"offset": start}}
    try:
        result = await obstore.get_async(store, key, options=options)
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, url, "read") from None
    return int(result.meta["size"]), _chunks(result.stream(min_chunk_size=256 * 1024), url)


async def _chunks(source, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in source:
            yield bytes(chunk)
    except (ox.BaseError, OSError) as exc:
        raise _fault(exc, url, "read") from None


def sign(url: str, expires: timedelta = MAX_SIGN) -> str | None:
    """A presigned GET URL for a remote object (it carries a signature, never the secret); None for
    a local file. At most S3's seven days."""
    loc = parse(url, "a video")
    if not loc.remote or loc.scheme not in SIGNABLE:
        return None
    store, key = _split(url)
    return _call(lambda: obstore.sign(store, "GET", key, min(expires, MAX_SIGN)), url, "sign")


def fetch(url: str, dest: Path) -> Path:
    """The object copied to `dest` (through a `.part` file renamed into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.part")
    store, key = _split(url)
    try:
        with open(partial, "wb") as out:
            for chunk in obstore.get(store, key).stream(min_chunk_size=_CHUNK):
                out.write(chunk)
        partial.replace(dest)
    except (ox.BaseError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise _fault(exc, url, "fetch") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return dest

