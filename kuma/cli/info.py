"""``kumactl version`` and ``kumactl inspect dataplane NAME``: what Kuma users type by habit."""

from __future__ import annotations

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
