"""Small programs the VM tests start inside network namespaces (``python -m
tests.tproxy.programs ...``): an upstream DNS server, an HTTP server that names itself, and a
resolver loop that reports when a name first resolves through the system's resolver."""

from __future__ import annotations

import argparse
import http.server
import signal
import socket
import sys
import time
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def serve_dns(port: int, records: dict[str, str]) -> None:
    """Authoritative for ``records`` (A only, NODATA for other types), NXDOMAIN for the rest."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print(f"dns ready on {port}", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            continue
        reply = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        if name not in records:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(name + ".", 5, "IN", "A", records[name]))
        print(f"query {name} {dns.rdatatype.to_text(question.rdtype)} from {peer[0]}", flush=True)
        sock.sendto(reply.to_wire(), peer)


def serve_http(bind: str, port: int, identity: str) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = identity.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        # "::" takes IPv6 and (IPv4-mapped) IPv4 connections alike.
        address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET

    server = Server((bind, port), Handler)
    print(f"http ready on {bind}:{port}", flush=True)
    server.serve_forever(poll_interval=0.05)


def resolve(name: str, timeout: float) -> int:
    """Ask the system resolver for ``name`` (IPv4) until it answers; print the monotonic time
    of the first answer and the address."""
    deadline = time.monotonic() + timeout
    print("resolving", flush=True)
    while time.monotonic() < deadline:
        try:
            found = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        except socket.gaierror:
            time.sleep(0.005)
            continue
        print(f"resolved {time.monotonic():.6f} {found[0][4][0]}", flush=True)
        return 0
    print("unresolved", flush=True)
    return 1


def hammer(name: str, server: str, seconds: float) -> int:
    """Ask ``server``:53 for ``name`` (A) back to back until SIGINT (or ``seconds``), one query
    in flight, 0.5 s timeout each; print how many were asked, answered and lost, and the
    rcode of any reply without an answer."""
    asked = answered = lost = 0
    stop = False

    def interrupted(signum: int, frame: object) -> None:
        # A flag, not an exception: a query is always counted whole, never half.
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, interrupted)
    deadline = time.monotonic() + seconds
    print("hammering", flush=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        while not stop and time.monotonic() < deadline:
            query = dns.message.make_query(name, "A")
            sock.sendto(query.to_wire(), (server, 53))
            asked += 1
            try:
                while True:
                    reply = dns.message.from_wire(sock.recv(4096))
                    if reply.id == query.id:
                        break
            except TimeoutError:
                lost += 1
                continue
            if reply.answer:
                answered += 1
            else:
                print(f"empty reply: {dns.rcode.to_text(reply.rcode())}", flush=True)
    print(f"asked {asked} answered {answered} lost {lost}", flush=True)
    return 0


def query(name: str, server: str) -> int:
    """One A query for ``name`` to ``server``:53 (IPv4 or IPv6); print the addresses."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(dns.message.make_query(name, "A").to_wire(), (server, 53))
        reply = dns.message.from_wire(sock.recv(4096))
    addresses = [item.to_text() for rrset in reply.answer for item in rrset]
    print(f"answer {dns.rcode.to_text(reply.rcode())} {' '.join(addresses)}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    dns_cmd = sub.add_parser("dns")
    dns_cmd.add_argument("--port", type=int, default=53)
    dns_cmd.add_argument("records", nargs="*", metavar="NAME=IP")
    http_cmd = sub.add_parser("http")
    http_cmd.add_argument("--bind", default="::")
    http_cmd.add_argument("--port", type=int, required=True)
    http_cmd.add_argument("--identity", required=True)
    resolve_cmd = sub.add_parser("resolve")
    resolve_cmd.add_argument("name")
    resolve_cmd.add_argument("--timeout", type=float, default=30.0)
    hammer_cmd = sub.add_parser("hammer")
    hammer_cmd.add_argument("name")
    hammer_cmd.add_argument("--server", required=True)
    hammer_cmd.add_argument("--seconds", type=float, default=5.0)
    query_cmd = sub.add_parser("query")
    query_cmd.add_argument("name")
    query_cmd.add_argument("--server", required=True)
    args = parser.parse_args()
    if args.what == "dns":
        serve_dns(args.port, dict(r.split("=", 1) for r in args.records))
    elif args.what == "http":
        serve_http(args.bind, args.port, args.identity)
    elif args.what == "query":
        return query(args.name, args.server)
    elif args.what == "hammer":
        return hammer(args.name, args.server, args.seconds)
    else:
        return resolve(args.name, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
