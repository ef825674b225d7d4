"""The partnership PKI: its CA, party certificates for mutual TLS, and the linkage secret file.

Every party holds a certificate whose SAN URI ``urn:oda-fed:<role>:<name>`` says who it is; servers
derive the caller's role and name from the verified certificate with :func:`identity_from_pem`.
"""

from oda_fed.pki.ca import CA_CERT_FILE, CA_KEY_FILE, create_request, init_ca, issue, sign_request
from oda_fed.pki.identity import (
    ROLES,
    Identity,
    Role,
    identity_from_cert,
    identity_from_pem,
    is_valid_name,
)
from oda_fed.pki.secret import new_secret, read_secret, secret_fingerprints
from oda_fed.pki.trust import load_ca_bundle, load_certificate, load_key_pair, verify_issued_by

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
