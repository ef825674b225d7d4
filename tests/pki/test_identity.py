"""Deriving who a peer is from its certificate, including certificates made to lie."""

from __future__ import annotations

import pytest
from cryptography import x509

from oda_fed.errors import AuthError, ConfigError
from oda_fed.pki import Identity, identity_from_cert, identity_from_pem, is_valid_name
from oda_fed.pki.identity import parse_identity_uri


def _uri(value: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(value)


def test_identity_uri_and_str() -> None:
    identity = Identity(name="social_care", role="node")
    assert identity.uri == "urn:oda-fed:node:social_care"
    assert str(identity) == "node:social_care"
    assert parse_identity_uri(identity.uri) == identity


@pytest.mark.parametrize(
    "uri",
    [
        "urn:oda-fed:admin:council",
        "urn:oda-fed:node:Council",
        "urn:oda-fed:node:council:extra",
        "urn:oda-fed:node",
        "urn:oda-fed:node:",
        "urn:other:node:council",
        "URN:ODA-FED:node:council",
    ],
)
def test_malformed_identity_uris_are_not_identities(uri: str) -> None:
    assert parse_identity_uri(uri) is None


def test_identity_rejects_invalid_values() -> None:
    with pytest.raises(ConfigError):
        Identity(name="Council", role="node")
    with pytest.raises(ConfigError):
        Identity(name="council", role="root")  # type: ignore[arg-type]
    assert is_valid_name("a" * 63) and not is_valid_name("a" * 64)
    assert not is_valid_name("council\n")


def test_identity_from_a_well_formed_certificate(forge_cert, pem) -> None:
    cert = forge_cert(
        cn="police", sans=[_uri("urn:oda-fed:node:police"), x509.DNSName("x.example")]
    )
    assert identity_from_cert(cert) == Identity(name="police", role="node")
    assert identity_from_pem(pem(cert)) == Identity(name="police", role="node")
    assert identity_from_pem(pem(cert).decode()) == Identity(name="police", role="node")


@pytest.mark.parametrize(
    ("cn", "sans", "message"),
    [
        ("police", None, "no subjectAltName"),
        ("police", [x509.DNSName("police.example")], "exactly one"),
        (
            "police",
            [_uri("urn:oda-fed:node:police"), _uri("urn:oda-fed:operator:police")],
            "exactly one",
        ),
        ("police", [_uri("urn:oda-fed:root:police")], "malformed identity URI"),
        # The CN is what a human reads; the URI must not be allowed to say something else.
        ("police", [_uri("urn:oda-fed:node:council")], "disagrees"),
        ("coordinator", [_uri("urn:oda-fed:operator:coordinator2")], "disagrees"),
    ],
)
def test_identity_from_a_lying_certificate_is_refused(
    forge_cert, pem, cn: str, sans: list | None, message: str
) -> None:
    with pytest.raises(AuthError, match=message):
        identity_from_pem(pem(forge_cert(cn=cn, sans=sans)))


@pytest.mark.filterwarnings("ignore:Attribute's length must be")
def test_error_messages_quote_hostile_text_safely(forge_cert, pem) -> None:
    cn = "police\nINFO forged log line" + "x" * 500
    with pytest.raises(AuthError) as info:
        identity_from_pem(pem(forge_cert(cn=cn, sans=None)))
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 300


@pytest.mark.parametrize(
    "data", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
)
def test_identity_from_non_certificates(data: bytes) -> None:
    with pytest.raises(AuthError, match="not a PEM certificate"):
        identity_from_pem(data)
