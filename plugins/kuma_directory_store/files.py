"""What the directory store does with one file: read it whole, parse it, name it, rewrite it.

Everything here is plain blocking code without shared state, so the store can run it in a
worker thread. Reading and parsing a file gives a :class:`Parsed`: the digest of its bytes and
either its resources (decoded *and* validated) or the reason it cannot be served. A bad file is
a value, never an exception: nothing a user writes into the folder can stop the store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import uuid
from collections.abc import Container, Sequence

import msgspec
import orjson

from kuma.resources import (
    SECRET_TYPES,
    DecodeError,
    ExternalService,
    Resource,
    ResourceKey,
    ValidationError,
    Violation,
    decode,
    encode_yaml,
    to_document,
)
from kuma.resources.codec import LineLocator
from kuma.resources.validation import check

log = logging.getLogger("kuma.store.directory")

RESOURCE_SUFFIXES = (".yaml", ".yml", ".json")
#: ``store.directory.maxFileBytes`` by default: a bigger file is reported, not read. 10,000
#: Dataplanes in one file take some 4 MB.
DEFAULT_MAX_FILE_BYTES = 8 * 1024 * 1024
#: Reading a file at least this big is logged (it may take a while to parse).
LARGE_FILE_BYTES = 1024 * 1024
#: Files the store writes for secrets: owner read/write only.
SECRET_FILE_MODE = 0o600
#: Permission bits that let someone other than the owner read (or change) a file.
_SHARED_BITS = 0o077
# Our temporary files start with a dot: the watcher ignores dot-files, so a half-written temp
# file is never read, and only the final ``os.replace`` is seen.
TEMP_SUFFIX = ".kuma-tmp"


class Parsed(msgspec.Struct, frozen=True):
    """A file's content as the store understands it."""

    digest: bytes
    #: Every resource of the file, in document order; empty when ``error`` is set.
    resources: tuple[Resource, ...] = ()
    #: Why the file cannot be served: the line or field and the reason. None when it is valid.
    error: str | None = None
    #: The file holds a Secret or GlobalSecret and others than its owner may read it: its
    #: permission bits, to be warned about (the content is served all the same).
    exposed_mode: int | None = None
    #: The file's modification time (Unix seconds) when read: the creation time of the
    #: resources it brings, so that a restart does not make them look new.
    mtime: float | None = None


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def is_resource_file(name: str) -> bool:
    return not is_hidden(name) and name.endswith(RESOURCE_SUFFIXES)


def digest_of(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class TooLargeError(OSError):
    """The file is bigger than the store reads."""


def read_whole(path: str, limit: int | None = None) -> bytes | None:
    """The file's bytes, or None when it does not exist (any more).

    A writer may still be appending while we read: if the size changed under us, read again,
    so a file is parsed as one consistent content whenever the file system lets us see one.
    A file larger than ``limit`` bytes raises :class:`TooLargeError` without being read.
    """
    for _ in range(3):
        try:
            # Non-blocking open: a FIFO named like a resource file must not hang the store.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                return None  # a folder named like a file: its files are read as files
            if not stat.S_ISREG(mode):
                raise OSError(errno.EINVAL, "not a regular file")
            size = os.fstat(fd).st_size
            if limit is not None and size > limit:
                raise TooLargeError(
                    errno.EFBIG,
                    f"{size} bytes, more than store.directory.maxFileBytes ({limit}): not read",
                )
            if size >= LARGE_FILE_BYTES:
                log.info("reading a large file", extra={"fields": {"path": path, "bytes": size}})
            with open(fd, "rb", closefd=False) as file:
                data = file.read()
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size == len(data):
            break
    return data


def _describe_decode_error(exc: DecodeError) -> str:
    parts = []
    if exc.document is not None:
        parts.append(f"document {exc.document + 1}")
    if exc.line is not None:
        parts.append(f"line {exc.line}")
    where = ", ".join(parts)
    what = f"{exc.field}: {exc.reason}" if exc.field else exc.reason
    return f"{where}: {what}" if where else what


#: Violations reported per resource; the rest are counted ("... and N more").
MAX_VIOLATIONS_SHOWN = 20


def _located(lines: LineLocator, document: int, violation: Violation) -> str:
    """A violation with the line of its field, when the file is YAML (error path only)."""
    line = lines.line(document, violation.field)
    return f"line {line}: {violation}" if line is not None else str(violation)


def _details(data: bytes, document: int, violations: Sequence[Violation]) -> str:
    """The first :data:`MAX_VIOLATIONS_SHOWN` violations with their lines (one YAML parse
    for all of them), and how many more there are."""
    lines = LineLocator(data.decode("utf-8", errors="replace"))
    shown = [_located(lines, document, v) for v in violations[:MAX_VIOLATIONS_SHOWN]]
    more = len(violations) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more" if more > 0 else "")


def parse(data: bytes, source: str) -> Parsed:
    """Decode and validate every document of a file; a file is valid only if all of them are."""
    digest = digest_of(data)
    try:
        resources = decode(data, source=source)
    except DecodeError as exc:
        return Parsed(digest, error=_describe_decode_error(exc))
    except UnicodeDecodeError as exc:
        return Parsed(digest, error=f"not UTF-8 text: {exc.reason} at byte {exc.start}")
    except Exception as exc:  # a file must never crash the store, whatever it holds
        return Parsed(digest, error=f"cannot be decoded: {exc!r}")
    seen: dict[ResourceKey, int] = {}
    for index, resource in enumerate(resources):
        where = f"document {index + 1}, " if len(resources) > 1 else ""
        try:
            check(resource)
        except ValidationError as exc:
            details = _details(data, index, exc.violations)
            return Parsed(digest, error=f"{where}{ResourceKey.of(resource)}: {details}")
        key = ResourceKey.of(resource)
        if key in seen:
            return Parsed(
                digest,
                error=f"{where}{key} is defined twice in this file (first in document "
                f"{seen[key] + 1}); remove one of them",
            )
        seen[key] = index
    return Parsed(digest, resources=tuple(resources))


def read_and_parse(
    path: str, known: bytes | None, limit: int = DEFAULT_MAX_FILE_BYTES
) -> Parsed | None:
    """Read and parse ``path``; None when it is gone. When its digest is ``known`` (the content
    the store already holds) the parse is skipped: the result then carries no resources and
    must be read as "unchanged". A file over ``limit`` bytes is an error, never read."""
    try:
        data = read_whole(path, limit)
    except TooLargeError as exc:
        return Parsed(b"", error=str(exc.strerror))
    except OSError as exc:
        return Parsed(b"", error=f"cannot be read: {exc.strerror or exc}")
    if data is None:
        return None
    digest = digest_of(data)
    if digest == known:
        return Parsed(digest)
    parsed = parse(data, path)
    if parsed.resources:
        with contextlib.suppress(OSError):
            parsed = msgspec.structs.replace(parsed, mtime=os.stat(path).st_mtime)
    if holds_secrets(parsed.resources):
        with contextlib.suppress(OSError):
            mode = os.stat(path).st_mode & 0o7777
            if mode & _SHARED_BITS:
                return msgspec.structs.replace(parsed, exposed_mode=mode)
    return parsed


def holds_secrets(resources: Sequence[Resource]) -> bool:
    """Secrets, or an ExternalService with an inline private key."""
    return any(
        r.TYPE in SECRET_TYPES or (isinstance(r, ExternalService) and r.holds_private_key)
        for r in resources
    )


def walk(top: str) -> tuple[list[str], list[str]]:
    """Every resource file (sorted) and every directory under ``top``, dot-entries skipped."""
    files: list[str] = []
    dirs: list[str] = []
    if not os.path.isdir(top):
        return files, dirs
    for here, subdirs, names in os.walk(top):
        dirs.append(here)
        subdirs[:] = [d for d in subdirs if not is_hidden(d)]
        files.extend(os.path.join(here, n) for n in names if is_resource_file(n))
    files.sort()
    return files, dirs


# --- writing ------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


#: File systems limit a name to 255 bytes; a stem longer than this is cut and given a hash
#: suffix (room is left for ``-<counter>`` and ``.yaml`` or ``.json``, and for the ``.`` + 8
#: hex + temp suffix of the temporary file written beside it).
_MAX_STEM = 200


#: Kinds whose new files the store writes as JSON, not YAML: the control plane maintains them
#: itself and rewrites them on every change, and their body grows with the mesh (a
#: ZoneIngress lists every service of its zone). Encoding and reading back a ZoneIngress of
#: 500 services takes some 200 ms of CPU through PyYAML and 5 ms through orjson
#: (benchmarks/RESULTS.md), and that write is on the path of every cross-zone change three
#: times (the zone's list, global's copy, the other zone's copy). JSON is YAML too: a person
#: reads and edits it as any other file; a file that exists keeps its format.
JSON_KINDS = frozenset({"ZoneIngress"})


def suffix_for(key: ResourceKey) -> str:
    return ".json" if key.type in JSON_KINDS else ".yaml"


def encode_new(resource: Resource) -> bytes:
    """The content of a new file holding ``resource`` alone (its format: :data:`JSON_KINDS`)."""
    if resource.TYPE in JSON_KINDS:
        return _encode_json([resource]).encode()
    return encode_yaml([resource]).encode()


def file_name_for(key: ResourceKey) -> str:
    """``dataplane-<mesh>-<name>.yaml``, ``mesh-<name>.yaml``: a file name a person recognises
    (``.json`` for :data:`JSON_KINDS`).

    Kuma allows names of 253 characters, more than a file name may hold once the type and
    mesh are added: a long stem keeps its first characters and ends with a hash of the whole,
    so two long names that differ only at the end still get different files."""
    parts = [key.type.lower(), key.mesh, key.name] if key.mesh else [key.type.lower(), key.name]
    stem = _UNSAFE.sub("_", "-".join(parts))
    if len(stem) > _MAX_STEM:
        digest = hashlib.blake2b(stem.encode(), digest_size=8).hexdigest()
        stem = f"{stem[: _MAX_STEM - len(digest) - 1]}-{digest}"
    return stem + suffix_for(key)


def fresh_path(directory: str, key: ResourceKey, taken: Container[str]) -> str:
    """A path for a new file holding ``key`` that no file, present or known, uses."""
    suffix = suffix_for(key)
    stem = file_name_for(key).removesuffix(suffix)
    candidate = os.path.join(directory, f"{stem}{suffix}")
    counter = 1
    while candidate in taken or os.path.lexists(candidate):
        counter += 1
        candidate = os.path.join(directory, f"{stem}-{counter}{suffix}")
    return candidate


def write_atomically(path: str, data: bytes, *, new_mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old or the new file, never
    a mix. The temporary file is a dot-file next to it (same file system, ignored by the
    watcher); an existing file's permissions are kept, a new file gets ``new_mode`` (less the
    umask), from its creation on: a secret is never readable by others, not even briefly."""
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, new_mode)
        with open(fd, "wb") as file:
            file.write(data)
            # On disk before it takes the name: a crash never leaves an empty or torn file.
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- rewriting a file with one document replaced or removed -----------------------------------

# A line starting with ``---`` at column 0 always starts a YAML document (YAML forbids that line
# inside any content), so documents can be cut out of the text without re-emitting the others:
# their comments and formatting survive an update through the API. The result is parsed again
# before it is written, and anything unexpected falls back to encoding the whole file.
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)
_HEADER_LINE = re.compile(r"(---)?[ \t]*(#.*)?\r?\n?")


def _segments(text: str) -> list[str]:
    starts = [m.start() for m in _DOCUMENT_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def _header(segment: str) -> str:
    """The ``---`` line and the comment lines that open a document: kept when it is replaced."""
    kept: list[str] = []
    for line in segment.splitlines(keepends=True):
        if not _HEADER_LINE.fullmatch(line):
            break
        kept.append(line)
    header = "".join(kept)
    return header if not header or header.endswith("\n") else header + "\n"


def _document_segments(segments: Sequence[str]) -> list[int] | None:
    """For each resource of the text, the index of the segment that holds it; None if a segment
    does not hold exactly zero or one resource (then the text cannot be cut safely)."""
    owners: list[int] = []
    for index, segment in enumerate(segments):
        try:
            found = decode(segment)
        except (DecodeError, UnicodeDecodeError):
            return None
        if len(found) > 1:
            return None
        owners.extend([index] * len(found))
    return owners


def replaced(resources: Sequence[Resource], position: int, new: Resource | None) -> list[Resource]:
    """``resources`` with the one at ``position`` replaced by ``new``, or removed (None)."""
    return [*resources[:position], *([new] if new is not None else []), *resources[position + 1 :]]


def rewrite(text: str, resources: Sequence[Resource], position: int, new: Resource | None) -> str:
    """``text`` (which holds ``resources``) with the document at ``position`` replaced by
    ``new``, or removed when ``new`` is None. Other documents are kept as written where the
    text allows it; otherwise the whole file is encoded again."""
    wanted = replaced(resources, position, new)
    if text.lstrip().startswith(("{", "[")):
        return _encode_json(wanted)
    segments = _segments(text)
    owners = _document_segments(segments)
    if owners is None or len(owners) != len(resources):
        return encode_yaml(wanted)
    index = owners[position]
    if new is None:
        del segments[index]
    else:
        header = _header(segments[index])
        if index > 0 and not header.startswith("---"):
            header = "---\n" + header
        body = encode_yaml([new])
        if index + 1 < len(segments) and not body.endswith("\n"):
            body += "\n"
        segments[index] = header + body
    if index > 0 and not segments[index - 1].endswith("\n"):
        segments[index - 1] += "\n"
    return "".join(segments)


def _encode_json(resources: Sequence[Resource]) -> str:
    docs = [to_document(r) for r in resources]
    body = docs[0] if len(docs) == 1 else docs
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"
