"""CPU to issue workload identities: 10,000 proxies with a P-256 CA and with Kuma's RSA-2048
CA (ECDSA P-256 workload keys, this project's default), beside RSA-2048 workload keys (what
Kuma generates per proxy), the latter on a sample and extrapolated (a full run is ~10 minutes
of CPU on a shared machine).

Each identity is what the control plane does per proxy: a key, a certificate with Kuma's SANs
(2 services' worth of tags), PEM encoding of both, and the SDS Secret serialized once.

    python benchmarks/bench_identities.py [--count 10000] [--rsa-sample 200]
"""

from __future__ import annotations

import argparse
import os
import time

from kuma.mtls.ca import CertificateAuthority, generate_root
from kuma.mtls.issuer import WorkloadKeyType, issue, tag_set
from kuma.resources.mtls import BuiltinConf
from kuma.xds.generate import types
from kuma.xds.generate.tls import identity_secret
from kuma.xds.snapshot import versioned


def run(ca: CertificateAuthority, count: int, key_type: WorkloadKeyType) -> float:
    """CPU seconds to issue ``count`` identities."""
    started = time.process_time()
    now = time.time()
    for i in range(count):
        tags = tag_set([{"kuma.io/service": f"svc-{i % 500}", "version": "v1", "zone": "a"}])
        identity = issue(ca, "default", tags, 86400, now=now, key_type=key_type)
        message = identity_secret("default", identity.cert_pem, identity.key_pem)
        versioned(types.SECRET, message.name, message)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rsa-sample", type=int, default=200)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    p256 = generate_root("default", BuiltinConf(key_type="ECDSA"))
    rsa_ca = generate_root("default", BuiltinConf(rsa_bits=2048))
    for label, ca in (("P-256 CA", p256), ("RSA-2048 CA", rsa_ca)):
        seconds = run(ca, args.count, "ECDSA")
        print(
            f"{args.count} identities, P-256 keys, {label}: {seconds:.2f} s CPU"
            f" ({seconds / args.count * 1e3:.3f} ms each)"
        )
    sample = args.rsa_sample
    seconds = run(rsa_ca, sample, "RSA")
    each = seconds / sample
    print(
        f"RSA-2048 keys (Kuma's), RSA-2048 CA: {each * 1e3:.1f} ms each over {sample};"
        f" {args.count} would take ~{each * args.count:.0f} s CPU"
    )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
