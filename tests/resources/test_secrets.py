"""Secret and GlobalSecret: Kuma's universal form, validation that never quotes the value,
and a repr that never shows it."""

from __future__ import annotations

import logging

import pytest

from kuma.resources import (
    GlobalSecret,
    Secret,
    ValidationError,
    decode,
    decode_one,
    encode_json,
    encode_yaml,
)
from kuma.resources.validation import check, validate

SECRET = "type: Secret\nmesh: default\nname: sample\ndata: dGVzdAo=\n"
GLOBAL = "type: GlobalSecret\nname: sample\ndata: dGVzdAo=\n"


def test_kuma_documents_round_trip() -> None:
    secret = decode_one(SECRET)
    assert secret == Secret(mesh="default", name="sample", data="dGVzdAo=")
    assert isinstance(secret, Secret)
    assert secret.value == b"test\n"
    assert encode_yaml([secret]) == SECRET
    assert decode(encode_json(secret)) == [secret]
    shared = decode_one(GLOBAL)
    assert shared == GlobalSecret(name="sample", data="dGVzdAo=")
    assert encode_yaml([shared]) == GLOBAL
    assert not validate(secret)
    assert not validate(shared)


def test_repr_and_logs_never_show_the_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(mesh="default", name="sample", data="c3VwZXItc2VjcmV0")
    shared = GlobalSecret(name="g", data="c3VwZXItc2VjcmV0")
    assert repr(secret) == "Secret(mesh='default', name='sample', data=<redacted>)"
    assert repr(shared) == "GlobalSecret(name='g', data=<redacted>)"
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("stored %s, %r, %s", secret, shared, [secret])
    assert "c3VwZXItc2VjcmV0" not in caplog.text


@pytest.mark.parametrize(
    ("document", "violations"),
    [
        ("type: Secret\nmesh: default\nname: s\n", [("data", "cannot be empty")]),
        (
            "type: Secret\nmesh: default\nname: s\ndata: 'hunter2 is my password'\n",
            [("data", "must be base64 (the value itself is not shown)")],
        ),
        (
            "type: GlobalSecret\nname: Bad_Name\ndata: eA==\n",
            [("name", "invalid characters")],
        ),
        ("type: Secret\nmesh: No_Mesh\nname: s\ndata: eA==\n", [("mesh", "invalid characters")]),
    ],
)
def test_validation(document: str, violations: list[tuple[str, str]]) -> None:
    found = [(v.field, v.message) for v in validate(decode_one(document))]
    assert [
        (f, m[: len(e)]) for (f, m), (_, e) in zip(found, violations, strict=True)
    ] == violations
    with pytest.raises(ValidationError) as refused:
        check(decode_one(document))
    assert "hunter2" not in str(refused.value)


def test_shape_errors_do_not_quote_the_value() -> None:
    with pytest.raises(Exception, match=r"data") as refused:
        decode_one("type: Secret\nmesh: default\nname: s\ndata: [sup3r, s3cret]\n")
    assert "s3cret" not in str(refused.value)
