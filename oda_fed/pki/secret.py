"""The linkage secret: the key nodes share for CLK encoding, and which the coordinator never holds.

On disk it is one line of hex (32 random bytes by default), mode 0600. A coordinator that held it
could reverse CLKs by dictionary attack, so :func:`secret_fingerprints` lists the forms a leak
test searches the coordinator's disk, logs and memory dumps for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from pathlib import Path

from oda_fed.errors import ConfigError
from oda_fed.pki.files import read_file, write_file

SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
#: Hex digits of a key-check value (64 bits would do; 128 leave no doubt).
KEY_CHECK_DIGITS = 32


def new_secret(path: Path, *, force: bool = False) -> Path:
    """Write a new random linkage secret (32 bytes, as hex) to ``path`` with mode 0600.

    Raises
    ------
    ConfigError
        If ``path`` exists and ``force`` is False: replacing a secret in use would silently
        break linkage with every partner that still has the old one.

    Examples
    --------
    >>> new_secret(Path("linkage.secret"))  # doctest: +SKIP
    PosixPath('linkage.secret')
    """
    return write_secret(path, secrets.token_bytes(SECRET_BYTES), force=force)


def write_secret(path: Path, secret: bytes, *, force: bool = False) -> Path:
    """Write ``secret`` to ``path`` as one line of hex, mode 0600, as :func:`read_secret` reads it."""
    text = secret.hex() + "\n"
    return write_file(path, text.encode("ascii"), private=True, force=force)


def read_secret(path: Path) -> bytes:
    """Read a linkage secret file and return the secret's bytes.

    The file holds the secret as hex; surrounding whitespace is ignored. Error messages name the
    file and the problem but never echo its content.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, empty, not hex, or shorter than 16 bytes.

    Examples
    --------
    >>> len(read_secret(Path("linkage.secret")))  # doctest: +SKIP
    32
    """
    hint = "create one with `oda-fed pki secret` and share it with the other partners' nodes"
    data = read_file(path, what="linkage secret file", hint=hint)
    text = data.strip()
    if not text:
        raise ConfigError(f"linkage secret file {path} is empty; {hint}")
    try:
        secret = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"linkage secret file {path} is not a hex string (one line of 0-9, a-f); {hint}"
        ) from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"linkage secret in {path} is {len(secret)} bytes; at least {MIN_SECRET_BYTES} "
            f"are needed ({2 * MIN_SECRET_BYTES} hex digits); {hint}"
        )
    return secret


def secret_fingerprints(secret: bytes) -> list[bytes]:
    """The encodings of ``secret`` a leak test should search for, e.g. on the coordinator's disk.

    Covers the raw bytes, hex in lower and upper case, and standard and URL-safe base64, each with
    and without padding. Base64 only matches when the secret starts on a 3-byte boundary of the
    encoded data; a test that needs more should also search the secret's other two alignments.

    Examples
    --------
    >>> forms = secret_fingerprints(bytes.fromhex("00ff" * 8))
    >>> forms[1:3]
    [b'00ff00ff00ff00ff00ff00ff00ff00ff', b'00FF00FF00FF00FF00FF00FF00FF00FF']
    >>> forms[3:5]
    [b'AP8A/wD/AP8A/wD/AP8A/w==', b'AP8A/wD/AP8A/wD/AP8A/w']
    """
    if not secret:
        raise ValueError("secret is empty")
    hex_lower = secret.hex().encode("ascii")
    b64, b64url = base64.b64encode(secret), base64.urlsafe_b64encode(secret)
    forms = [bytes(secret), hex_lower, hex_lower.upper(), b64, b64.rstrip(b"=")]
    forms += [b64url, b64url.rstrip(b"=")]
    return list(dict.fromkeys(forms))  # without duplicates, in this order


def _check_key(secret: bytes) -> bytes:
    # The key of the key check only: no other use of the secret shares it.
    return hmac.new(secret, b"oda-fed/key-check-key/v1", hashlib.sha256).digest()


def key_check(secret: bytes, *, fingerprint: str, version: int) -> str:
    """The key-check value of ``secret`` for a project and key version: 32 hex digits.

    ``HMAC-SHA256(k, "oda-fed key check v1" || 0 || fingerprint || 0 || version)``, cut to 128
    bits, with ``k = HMAC-SHA256(secret, "oda-fed/key-check-key/v1")``. It is a keyed hash of a
    constant: equal secrets give equal values, and it reveals nothing of the secret (finding the
    secret from it means searching 2**256 secrets, not a dictionary of names). Nodes send it in
    their Hello so that the coordinator can refuse one whose secret differs from the partners'.

    Examples
    --------
    >>> a = key_check(b"k" * 32, fingerprint="sha256:" + "0" * 64, version=1)
    >>> len(a), a == key_check(b"k" * 32, fingerprint="sha256:" + "0" * 64, version=2)
    (32, False)
    """
    message = (
        b"oda-fed key check v1\0" + fingerprint.encode("ascii") + b"\0" + str(version).encode()
    )
    return hmac.new(_check_key(secret), message, hashlib.sha256).hexdigest()[:KEY_CHECK_DIGITS]


def forbidden_forms(secret: bytes) -> list[bytes]:
    """What a node's audit log must never contain: :func:`secret_fingerprints` of the secret and
    of the key its key check is made with."""
    return secret_fingerprints(secret) + secret_fingerprints(_check_key(secret))
