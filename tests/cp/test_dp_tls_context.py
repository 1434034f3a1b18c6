import ssl

import pytest

from kuma.cp.tls import DP_SESSION_TICKETS, dp_server_context
from kuma.tls.certs import generate_ca_certificate
from kuma.tls.persisted import ServingCertificate


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca, key = generate_ca_certificate(["127.0.0.1"])
    client = ssl.create_default_context(cadata=ca.decode())
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    return dp_server_context(ServingCertificate(ca, key, ca, "test")), client


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> ssl.SSLObject:
    """One TLS connection over memory; the client, once it has read the server's tickets."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(server_in, server_out, server_side=True)
    c = client.wrap_bio(client_in, client_out, server_hostname="127.0.0.1", session=session)
    done = [False, False]
    for _ in range(10):
        for i, side in enumerate((c, s)):
            if not done[i]:
                try:
                    side.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    assert all(done)
    with pytest.raises(ssl.SSLWantReadError):
        c.read(1)  # takes the session tickets sent after the handshake
    return c


def test_the_dp_server_issues_one_session_ticket(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, _ = contexts
    assert DP_SESSION_TICKETS == 1
    assert server.num_tickets == 1


def test_a_proxy_can_resume_its_session_with_it(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = contexts
    first = handshake(server, client)
    assert first.version() == "TLSv1.3"
    assert first.session is not None
    assert first.session.has_ticket
    resumed = handshake(server, client, first.session)
    assert resumed.session_reused
