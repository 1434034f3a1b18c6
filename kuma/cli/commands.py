"""kumactl's commands: apply, get, inspect dataplanes, delete."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from kuma.resources import (
    DecodeError,
    Resource,
    ResourceKey,
    decode,
    encode_json,
    encode_yaml,
    validate,
)
from kuma.resources.policy import POLICY_KINDS

from . import table, views
from .client import Client, collection_path, item_path, offset_of
from .errors import ApiCallError, CliError
from .settings import resolve
from .template import parse_assignments, render

URL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Kind:
    type: str
    plural: str
    #: Names kumactl accepts for one resource (``get mesh NAME``, ``delete mesh NAME``).
    singular_args: tuple[str, ...]
    plural_args: tuple[str, ...]
    mesh_scoped: bool
    headers: list[str]
    row: views.RowFn


KINDS: tuple[Kind, ...] = (
    Kind("Mesh", "meshes", ("mesh",), ("meshes",), False, views.MESH_HEADERS, views.mesh_row),
    Kind(
        "Dataplane",
        "dataplanes",
        ("dataplane",),
        ("dataplanes",),
        True,
        views.DATAPLANE_HEADERS,
        views.dataplane_row,
    ),
    Kind(
        "ZoneIngress",
        "zoneingresses",
        ("zoneingress", "zone-ingress"),
        ("zoneingresses", "zone-ingresses"),
        False,
        views.GLOBAL_HEADERS,
        views.global_row,
    ),
    Kind(
        "ZoneEgress",
        "zoneegresses",
        ("zoneegress", "zone-egress"),
        ("zoneegresses", "zone-egresses"),
        False,
        views.GLOBAL_HEADERS,
        views.global_row,
    ),
    # Kuma's columns: a secret's value is never in a table (``-o yaml`` shows it, to admins).
    Kind(
        "Secret", "secrets", ("secret",), ("secrets",), True, views.SECRET_HEADERS, views.secret_row
    ),
    Kind(
        "GlobalSecret",
        "global-secrets",
        ("global-secret",),
        ("global-secrets",),
        False,
        views.GLOBAL_HEADERS,
        views.global_row,
    ),
    Kind(
        "ExternalService",
        "external-services",
        ("external-service",),
        ("external-services",),
        True,
        views.DATAPLANE_HEADERS,
        views.external_service_row,
    ),
    # Global's zones (kuma/kds/zone_status.py); Kuma's generic columns, status in ``inspect``.
    Kind("Zone", "zones", ("zone",), ("zones",), False, views.GLOBAL_HEADERS, views.global_row),
    # Kuma's basic mesh-scoped table (no custom printer for MeshGateway).
    Kind(
        "MeshGateway",
        "meshgateways",
        ("meshgateway",),
        ("meshgateways",),
        True,
        views.SECRET_HEADERS,
        views.secret_row,
    ),
)
# Every registered policy kind: ``kumactl get meshtimeouts``, ``get meshtimeout NAME``,
# ``delete meshtimeout NAME`` (Kuma's KumactlArg / KumactlListArg).
KINDS += tuple(
    Kind(
        policy.name,
        policy.plural,
        (policy.singular,),
        (policy.plural,),
        True,
        views.POLICY_HEADERS,
        views.policy_row,
    )
    for policy in sorted(POLICY_KINDS.values(), key=lambda p: p.name)
)
BY_TYPE = {kind.type: kind for kind in KINDS}


@dataclass
class Session:
    """What a command needs from outside: the options, the streams, the API (lazily: a dry
    run never resolves or contacts a server)."""

    api_server: str | None
    config_file: Path | None
    environ: dict[str, str]
    stdin: IO[str]
    stdout: IO[str]
    stderr: IO[str]
    now: Callable[[], datetime]
    #: ``--ca-cert-file`` (else ``$KUMACTL_CA_CERT_FILE``): what an https:// API must chain to.
    ca_cert_file: str | None = None
    _client: Client | None = field(default=None, init=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            target = resolve(self.api_server, self.config_file, self.environ)
            self._client = Client(target.url, target.token, ca_cert_file=self.ca_cert_file)
        return self._client


def _mesh_arg(kind: Kind, mesh: str) -> str | None:
    return mesh if kind.mesh_scoped else None


def print_document(session: Session, document: Any, output: str) -> None:
    if output == "json":
        session.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        session.stdout.write(
            yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)
        )


# --- apply -----------------------------------------------------------------------------------


def _read_source(session: Session, source: str) -> str:
    if source == "-":
        return session.stdin.read()
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=URL_TIMEOUT) as response:
                return str(response.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
            raise CliError(f"error while retrieving {source}: {exc}") from None
    try:
        return Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise CliError(f"error while reading provided file {source}: {reason}") from None


def apply(session: Session, source: str, variables: Sequence[str], dry_run: bool) -> None:
    """Decode every document, check every resource locally, then PUT them in file order:
    a file with one bad document writes nothing."""
    text = render(_read_source(session, source), parse_assignments(variables))
    try:
        resources = decode(text, source="<stdin>" if source == "-" else source)
    except DecodeError as exc:
        raise CliError(f"YAML contains invalid resource: {exc}") from None
    if not resources:
        raise CliError("no resource(s) passed to apply")
    for resource in resources:
        if resource.TYPE not in BY_TYPE:
            # MeshVips: kuma-cp's VIP allocator owns it and the REST API does not serve it.
            raise CliError(f"{resource.TYPE} is managed by kuma-cp and cannot be applied")
        violations = validate(resource)
        if violations:
            raise CliError(
                f"Could not process a resource (Resource is not valid: {ResourceKey.of(resource)})",
                [(v.field, v.message) for v in violations],
            )
    if dry_run:
        session.stdout.write(encode_yaml(resources))
        return
    for resource in resources:
        _put(session.client, resource)


def _put(client: Client, resource: Resource) -> None:
    kind = BY_TYPE[resource.TYPE]
    path = item_path(kind.plural, resource.name, _mesh_arg(kind, resource.mesh_name))
    client.call("PUT", path, body=encode_json(resource))


# --- get -------------------------------------------------------------------------------------


def get_list(
    session: Session, kind: Kind, mesh: str, output: str, size: int | None, offset: str | None
) -> None:
    query = [("size", str(size))] if size else []
    if offset:
        query.append(("offset", offset))
    try:
        document = session.client.get_json(
            collection_path(kind.plural, _mesh_arg(kind, mesh)), query
        )
    except ApiCallError as exc:
        raise CliError(f"failed to list {kind.type}: {exc.message}", exc.causes) from None
    if output != "table":
        print_document(session, document, output)
        return
    next_offset = offset_of(document.get("next"))
    footer = (
        f"Rerun command with --offset={next_offset} argument to retrieve more resources"
        if next_offset
        else ""
    )
    rows = views.rows(kind.row, document.get("items") or [], session.now())
    session.stdout.write(table.render(kind.headers, rows, footer))


def get_one(session: Session, kind: Kind, name: str, mesh: str, output: str) -> None:
    try:
        document = session.client.get_json(item_path(kind.plural, name, _mesh_arg(kind, mesh)))
    except ApiCallError as exc:
        if exc.status == 404:
            where = f" in {mesh} mesh" if kind.mesh_scoped else ""
            raise CliError(f"No resources found{where}") from None
        raise
    if output != "table":
        print_document(session, document, output)
        return
    session.stdout.write(table.render(kind.headers, [kind.row(document, session.now())]))


# --- inspect dataplanes ------------------------------------------------------------------------


def _tag_selectors(values: Sequence[str]) -> list[tuple[str, str]]:
    """``--tag k=v`` (repeatable, or comma separated as Kuma's ``k=v,k2=v2``) as ``tag=k:v``."""
    query: list[tuple[str, str]] = []
    for value in values:
        for pair in value.split(","):
            key, sep, tag_value = pair.partition("=")
            if not sep or not key:
                raise CliError(f"invalid --tag {pair!r}: expected KEY=VALUE")
            query.append(("tag", f"{key}:{tag_value}"))
    return query


def list_all(
    session: Session, path: str, query: list[tuple[str, str]], what: str
) -> tuple[Any, list[Any]]:
    """Every page of a list (following ``next``): its ``total`` and all its items."""
    client = session.client
    try:
        first = client.get_json(path, query)
        items = list(first.get("items") or [])
        next_url = first.get("next")
        while next_url:
            page = client.get_url_json(next_url)
            items.extend(page.get("items") or [])
            next_url = page.get("next")
    except ApiCallError as exc:
        raise CliError(f"failed to list {what}: {exc.message}", exc.causes) from None
    return first.get("total"), items


def inspect_dataplanes(
    session: Session, mesh: str, tags: Sequence[str], gateway: bool, output: str
) -> None:
    query = _tag_selectors(tags)
    if gateway:
        query.append(("gateway", "true"))
    path = collection_path("dataplanes+insights", mesh)
    total, items = list_all(session, path, query, "DataplaneOverview")
    if output != "table":
        print_document(session, {"total": total, "items": items, "next": None}, output)
        return
    rows = views.rows(views.overview_row, items, session.now())
    session.stdout.write(table.render(views.OVERVIEW_HEADERS, rows))


def inspect_dataplane(session: Session, name: str, mesh: str, inspection: str) -> None:
    """``kumactl inspect dataplane NAME --type=config-dump``: the config the control plane
    serves the proxy (private keys redacted), as Envoy's config dump JSON."""
    if inspection != "config-dump":
        raise CliError(f"inspection type {inspection!r} is not supported (only config-dump)")
    try:
        document = session.client.get_json(item_path("dataplanes", name, mesh) + "/xds")
    except ApiCallError as exc:
        raise CliError(f"failed to get the config dump: {exc.message}", exc.causes) from None
    session.stdout.write(json.dumps(document, indent=2) + "\n")


# --- delete ----------------------------------------------------------------------------------


def kind_for_delete(argument: str) -> Kind:
    for kind in KINDS:
        if argument in kind.singular_args:
            return kind
    allowed = ", ".join(sorted(arg for kind in KINDS for arg in kind.singular_args))
    raise CliError(f"unknown TYPE: {argument}. Allowed values: {allowed}")


def delete(session: Session, type_argument: str, name: str, mesh: str) -> None:
    kind = kind_for_delete(type_argument)
    try:
        session.client.call("DELETE", item_path(kind.plural, name, _mesh_arg(kind, mesh)))
    except ApiCallError as exc:
        if exc.status == 404:
            raise CliError(f'there is no {kind.type} with name "{name}"') from None
        raise
    session.stdout.write(f'deleted {kind.type} "{name}"\n')
