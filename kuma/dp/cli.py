"""``kuma-dp``: the data plane command (``kuma-dp run``), with Kuma's flags.

Everything that can be checked locally is checked before the control plane is contacted: the
flags, the Dataplane template and its variables, the Dataplane itself (Kuma's validation with
field paths), the Envoy binary. Exit status: 2 for a usage or Dataplane error, 1 when the
control plane refuses the bootstrap or Envoy cannot run, else Envoy's own.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import anyio

import kuma
from kuma.resources.validation import parse_duration_ns

from .client import BootstrapRefused
from .dataplane import DataplaneError, load_dataplane, parse_vars, read_template
from .envoy import EnvoyError
from .run import RunOptions, run

log = logging.getLogger("kuma.dp")

CA_ENV = "KUMA_CONTROL_PLANE_CA_CERT"
CA_FILE_ENV = "KUMA_CONTROL_PLANE_CA_CERT_FILE"
TOKEN_ENV = "KUMA_DATAPLANE_RUNTIME_TOKEN"
TOKEN_PATH_ENV = "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH"
ENVOY_LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "critical", "off")


class UsageError(ValueError):
    """Flags that do not go together; the message says which."""


def _duration(text: str) -> float:
    try:
        nanoseconds = parse_duration_ns(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r} (expected e.g. 30s, 1m, 500ms)"
        ) from None
    if nanoseconds < 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must not be negative")
    return nanoseconds / 1e9


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port_or_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535], got {value}")
    return value


#: Kuma's ``dataplane.readinessPort`` environment variable.
READINESS_PORT_ENV = "KUMA_READINESS_PORT"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kuma-dp", description="Data plane of the Kuma service mesh: runs Envoy."
    )
    top.add_argument("--version", action="version", version=f"kuma-dp {kuma.__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="print the version (as Kuma's kuma-dp version)")
    run_cmd = commands.add_parser("run", help="launch the data plane proxy (Envoy)")
    add = run_cmd.add_argument
    add(
        "--cp-address",
        default="https://localhost:5678",
        help="URL of the control plane's dp server (https://, or http:// when it runs without TLS)",
    )
    add(
        "--ca-cert-file",
        default=os.environ.get(CA_FILE_ENV) or None,
        help="the CA certificate kuma-cp's certificate must chain to (kuma-cp writes its "
        f"generated one to <workDir>/kuma-cp.crt; default ${CA_FILE_ENV}, or ${CA_ENV} with "
        "the PEM itself)",
    )
    add(
        "--skip-verify",
        action="store_true",
        help="connect over TLS without verifying kuma-cp's certificate (anyone on the path "
        "could then impersonate it: for a lab only)",
    )
    add("-d", "--dataplane-file", help="path to a Dataplane template (YAML or JSON; - for stdin)")
    add("--dataplane", help="the Dataplane template inline (YAML or JSON)")
    add(
        "-v",
        "--dataplane-var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a value for {{ KEY }} in the template (repeatable)",
    )
    add("--name", default="", help="name of the Dataplane (when it is defined in the store)")
    add("--mesh", default="", help="mesh of the Dataplane (when it is defined in the store)")
    add(
        "--proxy-type",
        default="dataplane",
        choices=["dataplane", "ingress", "egress"],
        help="type of the proxy: a sidecar (dataplane), or a zone ingress or egress (ingress, "
        "egress: -d gives the ZoneIngress or ZoneEgress, the token is a zone token with that "
        "scope)",
    )
    add(
        "--dataplane-token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"the dataplane token (kumactl generate dataplane-token; default ${TOKEN_ENV}); "
        "prefer --dataplane-token-file: a flag is visible to every user of the host",
    )
    add(
        "--dataplane-token-file",
        type=Path,
        default=os.environ.get(TOKEN_PATH_ENV) or None,
        help=f"path to a file with the dataplane token (default ${TOKEN_PATH_ENV})",
    )
    add("--binary-path", help="Envoy binary (default: the venv's envoy, else envoy on PATH)")
    add("--config-dir", type=Path, help="where the bootstrap is written (default: a temp dir)")
    add("--concurrency", type=_positive, help="number of Envoy worker threads")
    add(
        "--drain-time",
        type=_duration,
        default=30.0,
        help="how long Envoy drains connections on shutdown (default 30s)",
    )
    add("--envoy-log-level", default="info", choices=ENVOY_LOG_LEVELS, help="Envoy's log level")
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add(
        "--dns-enabled",
        nargs="?",
        const="true",
        default="true",
        choices=["true", "false"],
        help="with transparent proxying, Envoy answers <service>.mesh names and forwards the "
        "rest to the host's resolvers on --dns-port (default true)",
    )
    add(
        "--dns-port",
        "--dns-coredns-port",
        dest="dns_port",
        type=_positive,
        default=15053,
        help="the port DNS is redirected to ('kumactl install transparent-proxy "
        "--redirect-dns-port', default 15053)",
    )
    add(
        "--readiness-port",
        type=_port_or_zero,
        default=None,
        help="port (on 127.0.0.1) of kuma-dp's readiness reporter behind the proxy's /ready, "
        f"which turns TERMINATING as soon as a drain starts; 0: Envoy's own /ready "
        f"(env {READINESS_PORT_ENV}; default: a free port)",
    )
    add(
        "--metrics-cert-path",
        default=os.environ.get("KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH") or None,
        help="certificate (PEM file) of the Prometheus endpoint when the mesh's metrics backend "
        "has tls.mode providedTLS; with --metrics-key-path",
    )
    add(
        "--metrics-key-path",
        default=os.environ.get("KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH") or None,
        help="private key (PEM file) for --metrics-cert-path",
    )
    return top


def _readiness_port(given: int | None) -> int | None:
    """The flag, else the environment (Kuma's), else None (a free port)."""
    if given is not None:
        return given
    text = os.environ.get(READINESS_PORT_ENV, "").strip()
    if not text:
        return None
    try:
        return _port_or_zero(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{READINESS_PORT_ENV}={text!r}: {exc}") from None


def options_from(args: argparse.Namespace) -> RunOptions:
    """Check the flags and the Dataplane; raises UsageError or DataplaneError."""
    if not args.cp_address.startswith(("http://", "https://")):
        raise UsageError(
            f"--cp-address {args.cp_address!r}: expected a URL, e.g. https://host:5678"
        )
    template = read_template(args.dataplane_file, args.dataplane)
    dataplane = None
    if template is not None:
        source = args.dataplane_file or "--dataplane"
        dataplane = load_dataplane(
            template, parse_vars(args.dataplane_var), source=source, proxy_type=args.proxy_type
        )
        # Kuma refuses --name/--mesh beside a Dataplane; here they may repeat it, not differ.
        for flag, given, actual in (
            ("--name", args.name, dataplane.name),
            ("--mesh", args.mesh, dataplane.mesh_name),
        ):
            if given and given != actual:
                raise UsageError(f"{flag} {given!r} differs from the Dataplane's ({actual!r})")
    elif args.dataplane_var:
        raise UsageError("--dataplane-var needs a Dataplane template (-d or --dataplane)")
    elif args.proxy_type in ("ingress", "egress") and args.name:
        pass  # a stored ZoneIngress: zone proxies belong to no mesh
    elif not args.name or not args.mesh:
        raise UsageError("give a Dataplane (-d/--dataplane), or --name and --mesh of a stored one")
    readiness_port = _readiness_port(args.readiness_port)
    token = args.dataplane_token
    token_path = ""
    if args.dataplane_token_file is not None:
        token_path = str(Path(args.dataplane_token_file).resolve())
        try:
            token = Path(args.dataplane_token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"--dataplane-token-file: {exc.strerror or exc}") from None
        if not token:
            raise UsageError(f"--dataplane-token-file: {args.dataplane_token_file} is empty")
    if bool(args.metrics_cert_path) != bool(args.metrics_key_path):
        raise UsageError("--metrics-cert-path and --metrics-key-path go together")
    # Absolute: Envoy reads them, from its own working directory.
    metrics_files = [
        str(Path(p).resolve()) if p else "" for p in (args.metrics_cert_path, args.metrics_key_path)
    ]
    ca_cert = _ca_cert(args)
    if args.cp_address.startswith("https://") and not ca_cert and not args.skip_verify:
        raise UsageError(
            f"refusing to connect to {args.cp_address} without verifying its certificate: give "
            "--ca-cert-file (kuma-cp writes its own to <general.workDir>/kuma-cp.crt, "
            "~/.kuma/kuma-cp.crt by default) or, in a lab, --skip-verify"
        )
    return RunOptions(
        cp_address=args.cp_address,
        ca_cert=ca_cert,
        skip_verify=args.skip_verify,
        dataplane=dataplane,
        mesh=args.mesh,
        name=args.name,
        proxy_type=args.proxy_type,
        token=token,
        token_path=token_path,
        binary_path=args.binary_path,
        config_dir=args.config_dir,
        concurrency=args.concurrency,
        drain_time=args.drain_time,
        envoy_log_level=args.envoy_log_level,
        dns_port=args.dns_port if args.dns_enabled == "true" else 0,
        readiness=readiness_port != 0,
        readiness_port=readiness_port or 0,
        metrics_cert_path=metrics_files[0],
        metrics_key_path=metrics_files[1],
    )


def _ca_cert(args: argparse.Namespace) -> str:
    """The PEM of --ca-cert-file, else of $KUMA_CONTROL_PLANE_CA_CERT; empty when neither."""
    if args.ca_cert_file:
        try:
            text = Path(args.ca_cert_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise UsageError(f"--ca-cert-file {args.ca_cert_file}: {reason}") from None
    else:
        text = os.environ.get(CA_ENV, "")
    if text and "-----BEGIN CERTIFICATE-----" not in text:
        raise UsageError(
            f"--ca-cert-file {args.ca_cert_file or '$' + CA_ENV}: not a PEM certificate"
        )
    return text


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s\tkuma-dp\t%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "version":
        print(f"Kuma {kuma.__version__}")
        return 0
    _configure_logging(args.log_level)
    try:
        options = options_from(args)
    except (UsageError, DataplaneError) as exc:
        print(f"kuma-dp: {exc}", file=sys.stderr)
        return 2
    try:
        return anyio.run(run, options)
    except BootstrapRefused as exc:
        log.error("the control plane refused the bootstrap: %s", exc)
    except EnvoyError as exc:
        log.error("%s", exc)
    except OSError as exc:  # the readiness reporter's port is taken, say
        log.error("%s", exc)
    except KeyboardInterrupt:  # a Ctrl-C before the signal handlers were installed
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
