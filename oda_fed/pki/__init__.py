"""The partnership PKI: its CA, party certificates for mutual TLS, and the linkage secret file.

Every party holds a certificate whose SAN URI ``urn:oda-fed:<role>:<name>`` says who it is; servers
derive the caller's role and name from the verified certificate with :func:`identity_from_pem`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "ROLES",
    "Identity",
    "Role",
    "create_request",
    "identity_from_cert",
    "identity_from_pem",
    "init_ca",
    "is_valid_name",
    "issue",
    "load_ca_bundle",
    "load_certificate",
    "load_key_pair",
    "new_secret",
    "read_secret",
    "secret_fingerprints",
    "sign_request",
    "verify_issued_by",
]

# Names load on first use (PEP 562): reading the linkage secret, which every encode and link
# does, then costs no X.509 machinery from cryptography.
_HOME = {
    **dict.fromkeys(
        ("CA_CERT_FILE", "CA_KEY_FILE", "create_request", "init_ca", "issue", "sign_request"),
        "oda_fed.pki.ca",
    ),
    **dict.fromkeys(
        (
            "ROLES",
            "Identity",
            "Role",
            "identity_from_cert",
            "identity_from_pem",
            "is_valid_name",
        ),
        "oda_fed.pki.identity",
    ),
    **dict.fromkeys(("new_secret", "read_secret", "secret_fingerprints"), "oda_fed.pki.secret"),
    **dict.fromkeys(
        ("load_ca_bundle", "load_certificate", "load_key_pair", "verify_issued_by"),
        "oda_fed.pki.trust",
    ),
}

if TYPE_CHECKING:
    from oda_fed.pki.ca import (
        CA_CERT_FILE,
        CA_KEY_FILE,
        create_request,
        init_ca,
        issue,
        sign_request,
    )
    from oda_fed.pki.identity import (
        ROLES,
        Identity,
        Role,
        identity_from_cert,
        identity_from_pem,
        is_valid_name,
    )
    from oda_fed.pki.secret import new_secret, read_secret, secret_fingerprints
    from oda_fed.pki.trust import (
        load_ca_bundle,
        load_certificate,
        load_key_pair,
        verify_issued_by,
    )


def __getattr__(name: str) -> object:
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'oda_fed.pki' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
