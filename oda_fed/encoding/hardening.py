"""Hardening of bit-packed CLKs against attacks that need no key.

Keyed hashing stops dictionary attacks, but an attacker who holds only CLKs can still exploit
their structure: frequent values give frequent bit patterns (frequency attacks), bits that are
often set together reveal frequent n-grams (pattern mining), and the similarity graph of the CLKs
can be aligned with that of a public register (graph matching). Each option below weakens one of
those footholds, at some cost in linkage quality; ``docs/hardening.md`` has the measured costs.

Options
-------
``salt_field``
    A record-specific salt taken from a standardised field (for example the year of birth) is
    mixed into the hashing of every token of that record (see Christen, Ranbaduge and Schnell,
    *Linking Sensitive Data*, 2020, on hardening), so the same name hashes to unrelated
    positions in different salt groups and frequencies split up. It acts at encoding time:
    :func:`salts_for` gives the salts to pass to :func:`oda_fed.encoding.encode_records`. A
    standardised date contributes its year only.
``balance``
    Balanced Bloom filter (Schnell and Borgs 2016): the CLK is concatenated with its complement,
    so every CLK has exactly half its bits set and the number of set bits no longer tells how long
    the values were, then the ``2 * bits`` positions are shuffled by a keyed permutation.
``xor_fold``
    XOR-folding (Schnell and Borgs 2016): bit ``i`` of the output is bit ``i`` XOR bit
    ``i + bits / 2`` of the input, which halves the length and mixes unrelated positions.
``diffusion_taps``
    Diffusion layer (Armknecht, Heng and Schnell, "Strengthening privacy-preserving record linkage
    using diffusion", PoPETs 2023): as in the paper the output has as many bits as the input, and
    output bit ``j`` is the XOR of ``t`` distinct input bits ``tau_j``. Each output bit depends on
    several n-grams, so no bit pattern stands for one n-gram any more.
``blip``
    BLIP randomised response (Alaggan, Gambs and Kermarrec 2012; used for PPRL by Schnell and
    Borgs 2016): every bit is flipped independently with probability ``f``. Flipping bits with
    probability ``f`` makes each bit ``ln((1 - f) / f)``-differentially private. In RAPPOR's
    notation, which Schnell and Borgs use, a parameter ``F`` gives ``f = F / 2``.

:func:`harden` applies the post-encoding options in one order: balance, then xor_fold, then
diffusion, then BLIP. Balancing first makes every CLK's weight exactly half *before* anything
mixes bits; folding before diffusion means the diffusion layer works on the final length; BLIP is
last so that its noise is what leaves the node (any later deterministic step would be mere
post-processing anyway, but would make the flip rate harder to reason about).

Keys (version 1)
----------------
Everything keyed is derived from the linkage secret, so every partner computes the same transform
and the coordinator, which never holds the secret, cannot reproduce or invert it::

    K_option = HKDF-SHA256(ikm=secret, salt=utf8(context), info=b"oda-fed/hardening/v1/" + option)

with ``option`` either ``b"balance"`` or ``b"diffusion"`` and 32 bytes of output. Random choices
are read from the stream ``SHAKE-256(K_option)`` as consecutive little-endian ``uint64`` words
``w``. A number uniform below ``n`` is the next ``w % n`` for which ``w < 2**64 - 2**64 % n``
(other words are skipped, so there is no modulo bias). NumPy's generators are not used: their
methods may change between NumPy versions, and partners must agree bit for bit.

- Balance: ``perm = [0, 1, ..., 2 * bits - 1]``; for ``i`` from ``2 * bits - 1`` down to 1, swap
  ``perm[i]`` with ``perm[uniform(i + 1)]`` (Fisher-Yates). Output bit ``i`` is bit ``perm[i]`` of
  the CLK followed by its complement.
- Diffusion: for each output bit ``j`` from 0 to ``bits - 1`` in turn, draw ``uniform(bits)``
  until ``t`` distinct positions have been drawn; they are ``tau_j``. Here ``bits`` is the length
  the layer works on, after balancing and folding.

The stream depends only on the secret, the context and the option, so changing the CLK length or
the number of taps reuses the stream from its start. Any change to this scheme gets a new ``v``.

BLIP is the one option that is not deterministic. Its noise must be fresh for each encoding: if
it were derived from the secret, re-encoding the same record would flip the same bits, an attacker
could average repeated releases or match noisy CLKs exactly, and the differential-privacy argument
(independent coin flips the attacker cannot predict) would fail. It uses ``rng``, by default a
NumPy generator seeded from fresh operating-system entropy.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from oda_fed.encoding.keys import check_secret, derive_key
from oda_fed.errors import ConfigError, InputDataError

__all__ = ["HARDENING_INFO_PREFIX", "Hardening", "harden", "hardened_bits", "salts_for"]

HARDENING_INFO_PREFIX = b"oda-fed/hardening/v1/"
"""HKDF ``info`` is this prefix followed by the option name (``balance`` or ``diffusion``)."""

WORD_BITS = 64
_KEY_BYTES = 32
_TWO_64 = 1 << 64
# BLIP draws one float32 per bit; this bounds the temporary to 32 MiB whatever the batch size.
_BLIP_BLOCK_BITS = 1 << 23
_ISO_DATE = re.compile(r"(\d{4})-\d{2}-\d{2}")


@dataclass(frozen=True)
class Hardening:
    """Which hardening options are on; the default is none.

    The field names are the keys of the ``[linkage.hardening]`` table of a project file.

    Parameters
    ----------
    diffusion_taps
        ``t``, the number of input bits XORed into each output bit of the diffusion layer;
        0 turns diffusion off. At most the CLK length.
    salt_field
        Name of the standardised field whose value salts each record's tokens (a date field
        contributes its year only); ``None`` turns salting off.
    balance
        Concatenate each CLK with its complement and apply a keyed permutation (doubles the
        length; every CLK then has exactly half its bits set).
    xor_fold
        XOR the two halves of each CLK together (halves the length).
    blip
        Probability ``f`` with which each bit is flipped at random, ``0 <= f < 0.5``; 0 is off.

    Raises
    ------
    ConfigError
        When a value has the wrong type or is out of range.

    Examples
    --------
    >>> Hardening(diffusion_taps=3, salt_field="date_of_birth")
    Hardening(diffusion_taps=3, salt_field='date_of_birth', balance=False, xor_fold=False, blip=0.0)
    >>> Hardening(blip=0.5)
    Traceback (most recent call last):
    ...
    oda_fed.errors.ConfigError: hardening option blip must be a number with 0 <= blip < 0.5, got 0.5
    """

    diffusion_taps: int = 0
    salt_field: str | None = None
    balance: bool = False
    xor_fold: bool = False
    blip: float = 0.0

    def __post_init__(self) -> None:
        taps = self.diffusion_taps
        if isinstance(taps, bool) or not isinstance(taps, int | np.integer) or taps < 0:
            raise ConfigError(
                "hardening option diffusion_taps must be a whole number >= 0 (0 turns diffusion "
                f"off), got {taps!r}"
            )
        if self.salt_field is not None and (
            not isinstance(self.salt_field, str) or not self.salt_field.strip()
        ):
            raise ConfigError(
                "hardening option salt_field must name a linkage field, or be left out to turn "
                f"salting off; got {self.salt_field!r}"
            )
        for name in ("balance", "xor_fold"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise ConfigError(f"hardening option {name} must be true or false, got {value!r}")
        f = self.blip
        if (
            isinstance(f, bool)
            or not isinstance(f, int | float | np.integer | np.floating)
            or not math.isfinite(f)
            or not 0.0 <= f < 0.5
        ):
            raise ConfigError(
                f"hardening option blip must be a number with 0 <= blip < 0.5, got {f!r}"
            )


def hardened_bits(bits: int, hardening: Hardening) -> int:
    """Length in bits of the CLKs :func:`harden` makes from CLKs of ``bits`` bits.

    Balancing doubles the length and XOR-folding halves it; diffusion and BLIP keep it.

    Parameters
    ----------
    bits
        Length of the encoded CLKs, a positive multiple of 64.
    hardening
        The options.

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        When ``bits`` is not a positive multiple of 64, folding would leave a length that is not
        a whole number of 64-bit words, or ``diffusion_taps`` exceeds the length.

    Examples
    --------
    >>> hardened_bits(1024, Hardening(balance=True))
    2048
    >>> hardened_bits(1024, Hardening(balance=True, xor_fold=True, diffusion_taps=3))
    1024
    """
    if (
        isinstance(bits, bool)
        or not isinstance(bits, int | np.integer)
        or bits < WORD_BITS
        or bits % WORD_BITS
    ):
        raise ConfigError(f"CLK length must be a positive multiple of 64 bits, got {bits!r}")
    out = int(bits)
    if hardening.balance:
        out *= 2
    if hardening.xor_fold:
        if out % (2 * WORD_BITS):
            raise ConfigError(
                f"xor_fold halves the CLK, but {out} bits do not halve into whole 64-bit words; "
                "use CLKs of at least 128 bits or turn xor_fold off"
            )
        out //= 2
    if hardening.diffusion_taps > out:
        raise ConfigError(
            f"hardening option diffusion_taps is {hardening.diffusion_taps}, more than the "
            f"{out} bits it selects from; use fewer taps"
        )
    return out


def _option_key(secret: bytes, *, context: str, option: str) -> bytes:
    """``HKDF-SHA256(secret, salt=context, info=HARDENING_INFO_PREFIX + option)``, 32 bytes."""
    return derive_key(
        secret,
        context=context,
        info=HARDENING_INFO_PREFIX + option.encode("ascii"),
        length=_KEY_BYTES,
    )


class _KeyStream:
    """Uniform numbers from ``SHAKE-256(key)`` read as little-endian ``uint64`` words."""

    def __init__(self, key: bytes, *, expected: int) -> None:
        self._key = key
        self._words: list[int] = []
        self._pos = 0
        self._extend(max(expected, 16))

    def _extend(self, count: int) -> None:
        # A SHAKE output is a prefix of every longer output, so regrowing keeps the words read.
        data = hashlib.shake_256(self._key).digest(8 * count)
        self._words = np.frombuffer(data, dtype="<u8").tolist()

    def below(self, bound: int) -> int:
        """A number uniform in ``[0, bound)``, by rejection of the top partial range of words."""
        limit = _TWO_64 - _TWO_64 % bound
        while True:
            if self._pos == len(self._words):
                self._extend(2 * len(self._words))
            word = self._words[self._pos]
            self._pos += 1
            if word < limit:
                return word % bound


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@lru_cache(maxsize=8)
def _permutation(key: bytes, n: int) -> np.ndarray:
    """Keyed Fisher-Yates permutation of ``range(n)``, as ``int64[n]`` (read-only, cached)."""
    stream = _KeyStream(key, expected=n)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = stream.below(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return _frozen(np.asarray(perm, dtype=np.int64))


@lru_cache(maxsize=8)
def _diffusion_taps(key: bytes, bits: int, taps: int) -> np.ndarray:
    """Keyed tap sets: row ``j`` holds ``taps`` distinct positions below ``bits``, in draw order.

    Returns ``int64[bits, taps]`` (read-only, cached).
    """
    stream = _KeyStream(key, expected=bits * taps + bits // 8)
    out = np.empty((bits, taps), dtype=np.int64)
    for j in range(bits):
        chosen: list[int] = []
        while len(chosen) < taps:
            position = stream.below(bits)
            if position not in chosen:
                chosen.append(position)
        out[j] = chosen
    return _frozen(out)


def _select(clks: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Run :func:`~oda_fed.encoding.hardening_kernels.xor_taps` into a new array."""
    from oda_fed.encoding.hardening_kernels import xor_taps  # Numba, once a project hardens

    out = np.empty((clks.shape[0], taps.shape[0] // WORD_BITS), dtype=np.uint64)
    xor_taps(clks, taps, out)
    return out


def _blip(clks: np.ndarray, f: float, rng: np.random.Generator) -> np.ndarray:
    """Flip every bit independently with probability ``f``, block of rows by block of rows."""
    out = clks.copy()
    n, words = clks.shape
    bits = words * WORD_BITS
    rows = max(1, _BLIP_BLOCK_BITS // bits)
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        # float32 halves the cost of the draws; its 2**-24 resolution moves f by less than that.
        flips = rng.random((hi - lo, bits), dtype=np.float32) < np.float32(f)
        # packbits with little bit order puts bit b in byte b // 8 at position b % 8, which read
        # as little-endian words is exactly the CLK layout.
        mask = np.packbits(flips, axis=1, bitorder="little").view("<u8")
        out[lo:hi] ^= mask.astype(np.uint64, copy=False)
    return out


def _check_clks(clks: np.ndarray) -> None:
    if not isinstance(clks, np.ndarray):
        raise TypeError(f"clks: expected a numpy array, got {type(clks).__name__}")
    if clks.dtype != np.uint64 or clks.ndim != 2 or clks.shape[1] == 0:
        raise ValueError(
            "clks: expected bit-packed CLKs, uint64 of shape (n, words) with words >= 1; "
            f"got {clks.dtype} of shape {clks.shape}"
        )
    if not clks.flags.c_contiguous:
        raise ValueError(
            "clks: expected a C-contiguous array; pass np.ascontiguousarray(clks) if a copy is "
            "intended"
        )


def harden(
    clks: np.ndarray,
    *,
    hardening: Hardening,
    secret: bytes,
    context: str,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Apply the post-encoding hardening options to bit-packed CLKs.

    The order is fixed: balance, xor_fold, diffusion, BLIP (the module docstring says why, and
    how the keyed choices are derived). ``salt_field`` acts at encoding time (see
    :func:`salts_for`) and is ignored here. Every partner of a project must use the same options,
    secret and context, or their CLKs will not match.

    Parameters
    ----------
    clks
        Bit-packed CLKs as :func:`oda_fed.encoding.encode_records` returns them: ``uint64`` of
        shape ``(n, words)``, C-contiguous. Not modified.
    hardening
        The options.
    secret
        The partners' linkage secret, at least 16 bytes; the keys of balance and diffusion are
        derived from it.
    context
        The project name, as given to the encoder.
    rng
        Source of BLIP's coin flips. ``None`` (the default, and what production should use) draws
        a generator from fresh operating-system entropy; pass a seeded one only for tests and
        benchmarks. Unused when ``blip`` is 0.

    Returns
    -------
    numpy.ndarray
        A new ``uint64`` array of shape ``(n, hardened_bits(64 * words, hardening) // 64)``,
        C-contiguous; equal to ``clks`` when no option is on.

    Raises
    ------
    ConfigError
        When the options do not fit the CLK length (see :func:`hardened_bits`) or the context is
        empty.
    AuthError
        When the secret is shorter than 16 bytes.
    TypeError, ValueError
        When ``clks`` is not a C-contiguous 2-D ``uint64`` array.

    Examples
    --------
    >>> clks = np.array([[0b1011, 0]], dtype=np.uint64)
    >>> out = harden(
    ...     clks,
    ...     hardening=Hardening(balance=True, diffusion_taps=3),
    ...     secret=b"a shared secret of 32 bytes long",
    ...     context="demo-project",
    ... )
    >>> out.shape, out.dtype
    ((1, 4), dtype('uint64'))
    """
    _check_clks(clks)
    check_secret(secret, context)
    hardened_bits(clks.shape[1] * WORD_BITS, hardening)  # checks the options fit the length

    out = clks
    if hardening.balance:
        key = _option_key(secret, context=context, option="balance")
        doubled = np.concatenate([out, ~out], axis=1)
        perm = _permutation(key, doubled.shape[1] * WORD_BITS)
        out = _select(doubled, perm.reshape(-1, 1))
    if hardening.xor_fold:
        half = out.shape[1] // 2
        out = out[:, :half] ^ out[:, half:]
    if hardening.diffusion_taps:
        key = _option_key(secret, context=context, option="diffusion")
        taps = _diffusion_taps(key, out.shape[1] * WORD_BITS, int(hardening.diffusion_taps))
        out = _select(out, taps)
    if hardening.blip:
        out = _blip(out, float(hardening.blip), np.random.default_rng() if rng is None else rng)
    # Callers own the result: never hand back the input itself, even with every option off.
    return out.copy() if out is clks else out


def salts_for(values: Sequence[str | None], *, hardening: Hardening) -> list[str | None] | None:
    """The per-record salts to pass to :func:`oda_fed.encoding.encode_records`.

    Parameters
    ----------
    values
        The standardised values of the field ``hardening.salt_field`` names, one per record, in
        record order.
    hardening
        The options.

    Returns
    -------
    list of str or None, or None
        ``None`` when salting is off. Otherwise one salt per record: the value itself, except
        that a standardised date (``YYYY-MM-DD``) gives its year only, because a whole date of
        birth as salt would make every day or month error lose the match. A missing value
        (``None``, NaN or empty) gives ``None``: that record is encoded unsalted, and so can only
        match other records whose salt field is missing.

    Raises
    ------
    InputDataError
        When a value is neither a string nor missing.

    Examples
    --------
    >>> salts_for(["1980-12-31", None, "leeds"], hardening=Hardening(salt_field="dob"))
    ['1980', None, 'leeds']
    >>> salts_for(["1980-12-31"], hardening=Hardening()) is None
    True
    """
    if hardening.salt_field is None:
        return None
    salts: list[str | None] = []
    for value in values:
        if isinstance(value, str):
            if not value:
                salts.append(None)
                continue
            date = _ISO_DATE.fullmatch(value)
            salts.append(date.group(1) if date else value)
        elif value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            salts.append(None)
        else:
            # The type is safe to report; the value is personal data and stays out.
            raise InputDataError(
                f"salt field {hardening.salt_field!r}: values must be standardised strings or "
                f"None, found a {type(value).__name__}"
            )
    return salts
