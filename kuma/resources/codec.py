"""Decoding and encoding of resources in Kuma's universal YAML/JSON form.

Input may hold one document or several (YAML ``---`` separated, or a JSON array). Shape errors
(unknown keys, wrong types, missing ``type``) name the field path in Kuma's notation
(``networking.inbound[0].port``) and, for YAML, the line of the offending node.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import orjson
import yaml

from .errors import DecodeError
from .model import RESOURCE_TYPES, CoreResource, Resource, ResourceMeta, StoredResource
from .policy import POLICY_KINDS

_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Keys of the resource meta that Kuma prints (``kumactl get -o yaml``); accepted on input so that
# what we print can be applied back, and ignored: the store owns them.
META_KEYS = ("creationTime", "modificationTime")

_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


def _kuma_path(msgspec_path: str) -> str:
    """``$.networking.inbound[0]`` (msgspec) -> ``networking.inbound[0]`` (Kuma)."""
    return msgspec_path.removeprefix(".")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _explain(exc: msgspec.ValidationError) -> tuple[str, str]:
    """Split a msgspec error into (Kuma field path, reason)."""
    text = str(exc)
    path = ""
    match = _MSGSPEC_PATH.search(text)
    if match:
        path = _kuma_path(match.group("path"))
        text = text[: match.start()]
    if m := _UNKNOWN_FIELD.match(text):
        return _join(path, m.group("field")), "unknown field"
    if m := _MISSING_FIELD.match(text):
        field = m.group("field")
        if field == "type" and not path:
            return "type", f"must be one of {', '.join(sorted(RESOURCE_TYPES))}"
        return _join(path, field), "required field is missing"
    if path == "type" and text.startswith("Invalid value"):
        return "type", f"{text}; must be one of {', '.join(sorted(RESOURCE_TYPES))}"
    return path, text


def from_document(doc: object) -> Resource:
    """Build a typed resource from one decoded document (a mapping)."""
    if not isinstance(doc, Mapping):
        raise DecodeError(f"a resource must be a mapping, got {type(doc).__name__}")
    if any(k in doc for k in META_KEYS):
        doc = {k: v for k, v in doc.items() if k not in META_KEYS}
    type_name = doc.get("type")
    kind = POLICY_KINDS.get(type_name) if isinstance(type_name, str) else None
    source: object = doc
    copied: dict[str, Any] | None = None
    for _ in range(_MAX_NULLS):
        try:
            if kind is not None:
                return msgspec.convert(source, kind.cls, strict=True)
            resource: CoreResource = msgspec.convert(source, CoreResource, strict=True)
            return resource
        except msgspec.ValidationError as exc:
            if copied is None:
                source = copied = copy.deepcopy(dict(doc))
            if not _null_as_default(copied, str(exc)):
                field, reason = _explain(exc)
                raise DecodeError(reason, field=field) from None
    raise DecodeError(f"more than {_MAX_NULLS} null values")


# Kuma decodes resources through protobuf's JSON mapping, where a null scalar is the field's
# default: ``version:`` (YAML null) in a tag map is the empty string and fails as "tag value
# must be non-empty", ``inboundPath:`` fails as an invalid path. msgspec refuses null for a
# non-optional field; on that error path the null is replaced by the default and the
# document converted again, so validation reports Kuma's message rather than a type error.
_MAX_NULLS = 256
_NULL_FOR = re.compile(
    r"^Expected `(?P<type>str|int|float|bool)`, got `null` - at `\$(?P<path>[^`]*)`$"
)
_DEFAULTS: dict[str, object] = {"str": "", "int": 0, "float": 0.0, "bool": False}
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


def _null_as_default(doc: dict[str, Any], error: str) -> bool:
    """Replace the null ``error`` complains about with its type's default; False if the error
    is not about a null or its place cannot be found."""
    match = _NULL_FOR.match(error)
    if match is None:
        return False
    default = _DEFAULTS[match.group("type")]
    parts = list(_PATH_PART.finditer(match.group("path")))
    node: Any = doc
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        key, index = part.group(1), part.group(2)
        if key is None and index is None:  # "[...]": a value of this mapping, key unknown
            if not last or not isinstance(node, dict):
                return False
            for name, value in node.items():
                if value is None:
                    node[name] = default
            return True
        container, slot = node, (key if key is not None else int(index))
        try:
            node = container[slot]
        except (KeyError, IndexError, TypeError):
            return False
        if last:
            if node is not None:
                return False
            container[slot] = default
            return True
    return False


def _is_json(text: str) -> bool:
    stripped = text.lstrip()
    return stripped.startswith(("{", "["))


def _load_documents(text: str, source: str) -> list[object]:
    if _is_json(text):
        try:
            loaded = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            # ``{type: Mesh}`` is YAML flow style, not JSON: let YAML have a go before failing.
            try:
                return [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
            except yaml.YAMLError:
                raise DecodeError(
                    f"invalid JSON: {exc.msg}", source=source, line=exc.lineno
                ) from None
        return list(loaded) if isinstance(loaded, list) else [loaded]
    try:
        return [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        reason = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
        line = mark.line + 1 if mark is not None else None
        raise DecodeError(reason, source=source, line=line) from None


def decode(data: str | bytes, *, source: str = "") -> list[Resource]:
    """Decode every resource in ``data`` (YAML or JSON, one or several documents).

    Raises :class:`DecodeError` for the first document that is malformed, naming the source,
    the document, the line (YAML) and the field path.
    """
    text = data.decode("utf-8", errors="strict") if isinstance(data, bytes) else data
    docs = _load_documents(text, source)
    resources: list[Resource] = []
    for index, doc in enumerate(docs):
        try:
            resources.append(from_document(doc))
        except DecodeError as exc:
            line = None if _is_json(text) else line_of(text, index, exc.field)
            raise DecodeError(
                exc.reason,
                source=source,
                document=index if len(docs) > 1 else None,
                line=line,
                field=exc.field,
            ) from None
    return resources


def load_one(data: str | bytes, *, source: str = "") -> object:
    """Exactly one document of ``data``, parsed but not yet typed (a REST body whose ``type``
    the caller checks against its URL before :func:`from_document`)."""
    text = data.decode("utf-8", errors="strict") if isinstance(data, bytes) else data
    docs = _load_documents(text, source)
    if len(docs) != 1:
        raise DecodeError(f"expected exactly one resource, found {len(docs)}", source=source)
    return docs[0]


def decode_one(data: str | bytes, *, source: str = "") -> Resource:
    """Decode exactly one resource (a REST body, an etcd value)."""
    resources = decode(data, source=source)
    if len(resources) != 1:
        raise DecodeError(f"expected exactly one resource, found {len(resources)}", source=source)
    return resources[0]


# --- line numbers: only computed on the error path, by composing the YAML node tree -----------

_SEGMENT = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|([^.\[\]]+)')
#: Kuma's paths that do not spell the document's key (validation reports Kuma's spelling).
_DOCUMENT_KEYS = {"availableService": "availableServices", "config": "conf"}


def line_of(text: str, document: int, field: str) -> int | None:
    """The 1-based line of ``field`` (Kuma's path notation, e.g.
    ``networking.inbound[0].tags["kuma.io/service"]``) in YAML document ``document`` of
    ``text``: the deepest node of the path that exists. None for JSON or unparsable text.
    For several fields of one text use a :class:`LineLocator`: it composes the text once."""
    return LineLocator(text).line(document, field)


class LineLocator:
    """Lines of fields in one YAML text, composed once on the first question (never for
    JSON): locating N violations costs one parse plus N walks, not N parses."""

    __slots__ = ("_nodes", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._nodes: list[yaml.Node] | None = None

    def _documents(self) -> list[yaml.Node]:
        if self._nodes is None:
            self._nodes = []
            if not _is_json(self._text):
                try:
                    composed = list(yaml.compose_all(self._text, Loader=_LOADER))
                except yaml.YAMLError:
                    composed = []
                self._nodes = [n for n in composed if n is not None]
        return self._nodes

    def line(self, document: int, field: str) -> int | None:
        nodes = self._documents()
        if document >= len(nodes):
            return None
        node: yaml.Node = nodes[document]
        line = node.start_mark.line + 1
        for quoted, index, plain in _SEGMENT.findall(field):
            name = quoted or plain
            child: yaml.Node | None = None
            if name and isinstance(node, yaml.MappingNode):
                spellings = (name, _DOCUMENT_KEYS.get(name))
                for key, value in node.value:
                    if getattr(key, "value", None) in spellings:
                        # An unknown or mistyped key: point at the key itself.
                        child = value
                        line = key.start_mark.line + 1
                        break
            elif index and isinstance(node, yaml.SequenceNode):
                position = int(index)
                if position < len(node.value):
                    child = node.value[position]
            if child is None:
                break
            node = child
            line = node.start_mark.line + 1
        return line


# --- encoding ------------------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_document(resource: Resource, meta: ResourceMeta | None = None) -> dict[str, Any]:
    """The resource as Kuma prints it: type, mesh, name first, then the meta times, then spec."""
    body = cast(dict[str, Any], msgspec.to_builtins(resource))
    doc: dict[str, Any] = {"type": body.pop("type")}
    if resource.MESH_SCOPED:
        doc["mesh"] = resource.mesh_name
        body.pop("mesh", None)
    doc["name"] = body.pop("name")
    if meta is not None:
        doc["creationTime"] = _rfc3339(meta.creation_time)
        doc["modificationTime"] = _rfc3339(meta.modification_time)
    doc.update(body)
    return doc


def encode_json(resource: Resource, meta: ResourceMeta | None = None) -> bytes:
    return orjson.dumps(to_document(resource, meta))


def encode_yaml(resources: Iterable[Resource | StoredResource]) -> str:
    """Encode one or several resources as a multi-document YAML stream."""
    docs = [
        to_document(r.resource, r.meta) if isinstance(r, StoredResource) else to_document(r)
        for r in resources
    ]
    return yaml.dump_all(docs, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
