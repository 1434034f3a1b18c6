"""``kumactl``: Kuma's command line for the control plane's REST API.

Exit codes: 0 success; 1 any error, printed on stderr as ``Error: ...`` followed by
``* field: reason`` lines (as Kuma prints them); 2 a usage error (argparse's message).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import kuma
from kuma.tproxy import cli as tproxy_cli

from . import commands, info, inspect_zones
from . import generate as generate_cmd
from .commands import KINDS, Session
from .errors import CliError

OUTPUTS = ("table", "yaml", "json")


def _now() -> datetime:
    return datetime.now(UTC).astimezone()


def _common() -> argparse.ArgumentParser:
    # Parent of the root and of every command, with SUPPRESS defaults, so that the global
    # options work before or after the command (``kumactl get meshes --api-server ...``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api-server",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="URL of kuma-cp's API (default: $KUMACTL_API_SERVER, the config's current "
        "context, http://127.0.0.1:5681)",
    )
    common.add_argument(
        "--ca-cert-file",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="the CA an https:// API server's certificate must chain to (kuma-cp writes its "
        "own to <general.workDir>/kuma-cp.crt; default: $KUMACTL_CA_CERT_FILE, else the "
        "system's trusted CAs)",
    )
    common.add_argument(
        "--config-file",
        type=Path,
        default=argparse.SUPPRESS,
        help="kumactl config (default: $KUMACTL_CONFIG or ~/.kumactl/config)",
    )
    return common


def _mesh(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--mesh", default="default", help="mesh to use (default: default)")


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="output format")


def _parser() -> argparse.ArgumentParser:
    common = _common()
    root = argparse.ArgumentParser(
        prog="kumactl",
        description="Management tool for the Kuma control plane (universal mode).",
        parents=[common],
    )
    root.add_argument("--version", action="version", version=f"kumactl {kuma.__version__}")
    top = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    apply = top.add_parser("apply", parents=[common], help="create or modify resources")
    apply.add_argument("-f", "--file", required=True, help="file to apply, or - for stdin")
    apply.add_argument(
        "-v",
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of a {{ NAME }} variable in the file (repeatable)",
    )
    apply.add_argument(
        "--dry-run", action="store_true", help="check locally and print, without applying"
    )

    get = top.add_parser("get", parents=[common], help="show resources")
    kinds = get.add_subparsers(dest="what", required=True, metavar="TYPE")
    for kind in KINDS:
        many = kinds.add_parser(
            kind.plural_args[0], aliases=list(kind.plural_args[1:]), parents=[common]
        )
        many.set_defaults(kind=kind, name=None)
        _mesh(many)
        _output(many)
        many.add_argument("--size", type=int, help="page size")
        many.add_argument("--offset", help="the offset of the next page (from a previous list)")
        one = kinds.add_parser(
            kind.singular_args[0], aliases=list(kind.singular_args[1:]), parents=[common]
        )
        one.set_defaults(kind=kind)
        one.add_argument("name", metavar="NAME")
        _mesh(one)
        _output(one)

    inspect = top.add_parser("inspect", parents=[common], help="inspect resources with status")
    inspected = inspect.add_subparsers(dest="what", required=True, metavar="TYPE")
    dataplanes = inspected.add_parser("dataplanes", parents=[common])
    _mesh(dataplanes)
    _output(dataplanes)
    dataplanes.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="filter by tag"
    )
    dataplanes.add_argument("--gateway", action="store_true", help="only gateway dataplanes")
    for what in inspect_zones.INSPECTED:
        parser = inspected.add_parser(
            what, aliases=inspect_zones.ALIASES.get(what, []), parents=[common]
        )
        parser.set_defaults(what=what)
        _output(parser)
    dataplane = inspected.add_parser("dataplane", parents=[common])
    dataplane.add_argument("name", metavar="NAME")
    _mesh(dataplane)
    _output(dataplane)
    dataplane.add_argument(
        "--type",
        default="policies",
        help="inspection type: policies (the default: the policies that apply to the proxy, "
        "their rules and merged configuration), config-dump (what the control plane serves "
        "the proxy), status (the Dataplane with its status)",
    )
    dataplane.add_argument("--config-dump", action="store_true", help="same as --type=config-dump")

    top.add_parser("version", parents=[common], help="print the client and server versions")

    _generate_parsers(top, common)

    delete = top.add_parser("delete", parents=[common], help="delete a resource")
    delete.add_argument("type", metavar="TYPE")
    delete.add_argument("name", metavar="NAME")
    _mesh(delete)

    tproxy_cli.add_commands(top, common)
    return root


def _generate_parsers(top: Any, common: argparse.ArgumentParser) -> None:
    generate = top.add_parser("generate", parents=[common], help="generate tokens and keys")
    what = generate.add_subparsers(dest="what", required=True, metavar="WHAT")

    def offline(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--signing-key-path",
            type=Path,
            help="sign offline with this private key (PEM, or base64 PEM), without kuma-cp",
        )
        parser.add_argument("--kid", help="the key id of --signing-key-path (its serial)")

    dp = what.add_parser("dataplane-token", parents=[common], help="a dataplane token")
    dp.add_argument("--name", default="", help="name of the Dataplane (any when empty)")
    dp.add_argument("-m", "--mesh", default="default", help="mesh (default: default)")
    dp.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=V1[,V2]",
        help="a tag the Dataplane must have, with the values it may have (repeatable)",
    )
    dp.add_argument(
        "--proxy-type",
        default="",
        choices=["", "dataplane", "ingress", "egress"],
        help="the proxy type the token is for (any when empty)",
    )
    dp.add_argument("--valid-for", help="how long it is valid, e.g. 24h (default: 10 years)")
    offline(dp)

    zone = what.add_parser("zone-token", parents=[common], help="a zone token")
    zone.add_argument("--zone", default="", help="the zone (required)")
    zone.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help="ingress and/or egress (repeatable or comma separated; default: both)",
    )
    zone.add_argument("--valid-for", help="how long it is valid, e.g. 720h (required)")
    offline(zone)

    key = what.add_parser("signing-key", parents=[common], help="a private key to sign tokens")
    key.add_argument("--format", choices=generate_cmd.SIGNING_KEY_FORMATS, default="pem-base64")


def _run(args: argparse.Namespace, session: Session) -> None:
    if args.command == "apply":
        commands.apply(session, args.file, args.var, args.dry_run)
    elif args.command == "get" and args.name is None:
        commands.get_list(session, args.kind, args.mesh, args.output, args.size, args.offset)
    elif args.command == "get":
        commands.get_one(session, args.kind, args.name, args.mesh, args.output)
    elif args.command == "version":
        info.version(session)
    elif args.command == "inspect" and args.what == "dataplane":
        kind = "config-dump" if args.config_dump else args.type
        if kind == "config-dump":
            commands.inspect_dataplane(session, args.name, args.mesh, kind)
        elif kind == "policies":
            info.inspect_policies(session, args.name, args.mesh, args.output)
        elif kind == "status":
            info.inspect_dataplane(session, args.name, args.mesh, args.output)
        else:
            raise CliError(
                f"inspection type {kind!r} is not supported (policies, config-dump, status)"
            )
    elif args.command == "inspect" and args.what in inspect_zones.INSPECTED:
        inspect_zones.inspect(session, args.what, args.output)
    elif args.command == "inspect":
        commands.inspect_dataplanes(session, args.mesh, args.tag, args.gateway, args.output)
    elif args.command == "delete":
        commands.delete(session, args.type, args.name, args.mesh)
    elif args.command in ("install", "uninstall"):
        try:
            tproxy_cli.run(args, session.stdout, session.stderr)
        except tproxy_cli.TproxyError as error:
            raise CliError(str(error)) from None
    elif args.command == "generate" and args.what == "dataplane-token":
        generate_cmd.dataplane_token(
            session,
            name=args.name,
            mesh=args.mesh,
            tags=args.tag,
            proxy_type=args.proxy_type,
            valid_for=args.valid_for,
            signing_key_path=args.signing_key_path,
            kid=args.kid,
        )
    elif args.command == "generate" and args.what == "zone-token":
        generate_cmd.zone_token(
            session,
            zone=args.zone,
            scope=args.scope,
            valid_for=args.valid_for,
            signing_key_path=args.signing_key_path,
            kid=args.kid,
        )
    elif args.command == "generate":
        generate_cmd.signing_key(session, args.format)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    environ: dict[str, str] | None = None,
    now: Callable[[], datetime] = _now,
) -> int:
    args = _parser().parse_args(argv)
    session = Session(
        api_server=getattr(args, "api_server", None),
        config_file=getattr(args, "config_file", None),
        ca_cert_file=getattr(args, "ca_cert_file", None)
        or (environ if environ is not None else os.environ).get("KUMACTL_CA_CERT_FILE"),
        environ=dict(os.environ) if environ is None else environ,
        stdin=stdin or sys.stdin,
        stdout=stdout or sys.stdout,
        stderr=stderr or sys.stderr,
        now=now,
    )
    try:
        _run(args, session)
    except CliError as exc:
        session.stderr.write(f"Error: {exc.render()}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
