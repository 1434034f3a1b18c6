"""``kumactl version`` and ``kumactl inspect dataplane NAME``: what Kuma users type by habit."""

from __future__ import annotations

from typing import Any

import orjson

import kuma

from . import table, views
from .client import item_path
from .commands import Session, print_document
from .errors import ApiCallError, CliError

#: Kuma's product name, as ``kumactl version`` prints it for the client.
PRODUCT = "Kuma"


def version(session: Session) -> None:
    """``Client: Kuma X`` and, when kuma-cp answers, ``Server: Kuma Y`` (as Kuma prints)."""
    session.stdout.write(f"Client: {PRODUCT} {kuma.__version__}\n")
    try:
        index = session.client.get_json("/")
    except CliError as exc:
        session.stderr.write(f"Unable to connect to the control plane: {exc}\n")
        return
    session.stdout.write(f"Server: {index.get('product', PRODUCT)} {index.get('version', '?')}\n")


def inspect_policies(session: Session, name: str, mesh: str, output: str) -> None:
    """``kumactl inspect dataplane NAME`` (``--type=policies``, the default): the policies
    that apply to the proxy, kind by kind in Kuma's plugin order, from Kuma's ``_rules``
    endpoint: each ``to`` rule (the outbound subset it covers) and each inbound's ``from``
    rules, with the policies they come from and the merged configuration. ``-o json|yaml``
    prints the endpoint's document."""
    try:
        document = session.client.get_json(item_path("dataplanes", name, mesh) + "/_rules")
    except ApiCallError as exc:
        raise CliError(f"failed to get the policies: {exc.message}", exc.causes) from None
    if output != "table":
        print_document(session, document, output)
        return
    lines = [f"Dataplane {name} (mesh {mesh})"]
    kinds = document.get("rules") or []
    if not kinds:
        lines.append("  no policy applies")
    for kind in kinds:
        lines.append(str(kind.get("type")))
        if kind.get("toRules"):
            lines.append("  to:")
            lines.extend(_rule_lines(kind["toRules"]))
        for inbound in kind.get("fromRules") or []:
            where = inbound.get("inbound") or {}
            lines.append(f"  from, inbound port {where.get('port')} ({_tags(where.get('tags'))}):")
            lines.extend(_rule_lines(inbound.get("rules") or []))
    session.stdout.write("\n".join(lines) + "\n")


def _tags(tags: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((tags or {}).items())) or "no tags"


def _rule_lines(rules: list[dict[str, Any]]) -> list[str]:
    if not rules:
        return ["    (no rule)"]
    lines = []
    for rule in rules:
        matchers = rule.get("matchers") or []
        subset = (
            ", ".join(f"{m['key']}{'!=' if m.get('not') else '='}{m['value']}" for m in matchers)
            or "everything"
        )
        origins = ", ".join(str(o.get("name")) for o in rule.get("origin") or [])
        conf = orjson.dumps(rule.get("conf"), option=orjson.OPT_SORT_KEYS).decode()
        lines.append(f"    {subset}: {origins}")
        lines.append(f"      {conf}")
    return lines


def inspect_dataplane(session: Session, name: str, mesh: str, output: str) -> None:
    """The Dataplane with its status (``dataplanes+insights``): one row, or the document."""
    try:
        overview = session.client.get_json(item_path("dataplanes+insights", name, mesh))
    except ApiCallError as exc:
        raise CliError(f"failed to get DataplaneOverview: {exc.message}", exc.causes) from None
    if output != "table":
        print_document(session, overview, output)
        return
    rows = views.rows(views.overview_row, [overview], session.now())
    session.stdout.write(table.render(views.OVERVIEW_HEADERS, rows))
