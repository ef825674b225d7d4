"""CLK hardening: each option's shape and effect, keyed determinism, the documented v1 key scheme,
and the diffusion kernel against a plain-NumPy twin."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.encoding import default_field_encoding, encode_records, popcount
from oda_fed.encoding import hardening as hardening_module
from oda_fed.encoding.hardening import Hardening, harden, hardened_bits, salts_for
from oda_fed.encoding.hardening_kernels import xor_taps
from oda_fed.errors import AuthError, ConfigError, InputDataError
from oda_fed.matching import dice_score

SECRET = b"partners' shared linkage secret!"
OTHER_SECRET = b"another partnership's secret 32b"
CONTEXT = "test-project"
ALL_ONES = 2**64 - 1


def _harden(clks: np.ndarray, hardening: Hardening, **kwargs) -> np.ndarray:
    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("context", CONTEXT)
    return harden(clks, hardening=hardening, **kwargs)


def _random_clks(rng: np.random.Generator, n: int = 40, words: int = 16) -> np.ndarray:
    return rng.integers(0, 2**64, size=(n, words), dtype=np.uint64)


# --- plain twins, written for clarity: unpacked 0/1 matrices, no bit tricks ---------------------


def _unpack(clks: np.ndarray) -> np.ndarray:
    """0/1 matrix ``(n, bits)`` whose column ``b`` is bit ``b`` of the documented layout."""
    as_bytes = np.ascontiguousarray(clks).astype("<u8").view(np.uint8)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")


def _pack(bits: np.ndarray) -> np.ndarray:
    packed = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def xor_taps_twin(clks: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Twin of :func:`xor_taps`: output bit ``j`` is the parity of input bits ``taps[j]``."""
    bits = _unpack(clks)
    return _pack(bits[:, taps].sum(axis=2) % 2)


def _option_key(secret: bytes, context: str, option: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=context.encode(),
        info=b"oda-fed/hardening/v1/" + option,
    ).derive(secret)


class _SpecStream:
    """The key stream exactly as the module docstring words it, one word at a time."""

    def __init__(self, key: bytes) -> None:
        self.data = hashlib.shake_256(key).digest(1 << 16)
        self.pos = 0

    def uniform(self, n: int) -> int:
        while True:
            word = int.from_bytes(self.data[8 * self.pos : 8 * self.pos + 8], "little")
            self.pos += 1
            if word < 2**64 - 2**64 % n:
                return word % n


def _spec_permutation(key: bytes, n: int) -> list[int]:
    stream = _SpecStream(key)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = stream.uniform(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def _spec_taps(key: bytes, bits: int, t: int) -> list[list[int]]:
    stream = _SpecStream(key)
    out = []
    for _ in range(bits):
        chosen: list[int] = []
        while len(chosen) < t:
            p = stream.uniform(bits)
            if p not in chosen:
                chosen.append(p)
        out.append(chosen)
    return out


# --- the kernel and its twin ---------------------------------------------------------------------


@st.composite
def _clks_and_taps(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    words = draw(st.sampled_from([1, 2, 5]))
    n = draw(st.integers(0, 7))
    rows = []
    for _ in range(n):
        kind = draw(st.sampled_from(["zero", "ones", "random", "single"]))
        if kind == "zero":
            rows.append([0] * words)
        elif kind == "ones":
            rows.append([ALL_ONES] * words)
        elif kind == "single":
            bit = draw(st.integers(0, 64 * words - 1))
            rows.append([1 << (bit % 64) if w == bit // 64 else 0 for w in range(words)])
        else:
            rows.append(draw(st.lists(st.integers(0, ALL_ONES), min_size=words, max_size=words)))
    clks = np.array(rows, dtype=np.uint64).reshape(n, words)
    out_words = draw(st.sampled_from([1, 2]))
    t = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    # Repeated taps are allowed: they cancel, and the twin must agree on that too.
    taps = np.random.default_rng(seed).integers(0, 64 * words, size=(64 * out_words, t))
    return clks, taps.astype(np.int64)


@pytest.mark.kernel
@settings(max_examples=200, deadline=None)
@given(case=_clks_and_taps())
def test_xor_taps_matches_twin(case: tuple[np.ndarray, np.ndarray]) -> None:
    clks, taps = case
    out = np.empty((clks.shape[0], taps.shape[0] // 64), dtype=np.uint64)
    xor_taps(clks, taps, out)
    np.testing.assert_array_equal(out, xor_taps_twin(clks, taps))


@pytest.mark.kernel
@pytest.mark.parametrize("t", [1, 3, 5])
def test_harden_diffusion_is_the_kernel_on_the_keyed_taps(rng: np.random.Generator, t: int) -> None:
    clks = _random_clks(rng)
    clks[0] = 0
    clks[1] = ALL_ONES
    key = _option_key(SECRET, CONTEXT, b"diffusion")
    taps = np.array(_spec_taps(key, 1024, t), dtype=np.int64)
    got = _harden(clks, Hardening(diffusion_taps=t))
    np.testing.assert_array_equal(got, xor_taps_twin(clks, taps))
    # XOR of t all-zero bits is 0; of t all-one bits, t mod 2.
    assert popcount(got[:2]).tolist() == [0, 1024 * (t % 2)]


# --- the documented v1 key scheme ----------------------------------------------------------------


def test_keyed_choices_follow_the_documented_scheme() -> None:
    hardening_module._permutation.cache_clear()
    hardening_module._diffusion_taps.cache_clear()
    key = _option_key(SECRET, CONTEXT, b"balance")
    assert hardening_module._option_key(SECRET, context=CONTEXT, option="balance") == key
    assert hardening_module._permutation(key, 256).tolist() == _spec_permutation(key, 256)
    key = _option_key(SECRET, CONTEXT, b"diffusion")
    assert hardening_module._diffusion_taps(key, 128, 4).tolist() == _spec_taps(key, 128, 4)


def test_key_stream_rejects_words_that_would_bias_the_modulus() -> None:
    stream = hardening_module._KeyStream(b"k" * 32, expected=4)
    bound = 3 << 62  # 2**64 % bound is 2**62, so words from 3 << 62 up are rejected
    stream._words = [2**64 - 1, 3 << 62, (3 << 62) + 5, (3 << 62) - 1]
    assert stream.below(bound) == (3 << 62) - 1


PINNED_V1 = "1bd700430ccae8da2b6d3be0921515cb8d9fd6b706d0afe14059e361ee3d7047"


def test_transform_v1_is_pinned() -> None:
    """Partners on different releases must agree bit for bit: any change here needs a new v."""
    clks = np.random.default_rng(7).integers(0, 2**64, size=(4, 16), dtype=np.uint64)
    got = _harden(clks, Hardening(balance=True, xor_fold=True, diffusion_taps=3))
    digest = hashlib.sha256(got.astype("<u8").tobytes()).hexdigest()
    assert digest == PINNED_V1


# --- each option ---------------------------------------------------------------------------------


def test_no_option_returns_an_equal_copy(rng: np.random.Generator) -> None:
    clks = _random_clks(rng)
    got = _harden(clks, Hardening())
    np.testing.assert_array_equal(got, clks)
    assert got is not clks and not np.shares_memory(got, clks)


@pytest.mark.parametrize(
    ("hardening", "words"),
    [
        (Hardening(), 16),
        (Hardening(diffusion_taps=3), 16),
        (Hardening(balance=True), 32),
        (Hardening(xor_fold=True), 8),
        (Hardening(blip=0.05), 16),
        (Hardening(salt_field="dob"), 16),
        (Hardening(balance=True, xor_fold=True, diffusion_taps=5, blip=0.02), 16),
    ],
)
def test_shape_dtype_and_layout(rng: np.random.Generator, hardening: Hardening, words: int) -> None:
    clks = _random_clks(rng)
    before = clks.copy()
    got = _harden(clks, hardening, rng=rng)
    assert got.dtype == np.uint64
    assert got.shape == (40, words)
    assert got.flags.c_contiguous
    assert hardened_bits(1024, hardening) == 64 * words
    np.testing.assert_array_equal(clks, before)  # the input is never modified


def test_no_records(rng: np.random.Generator) -> None:
    empty = np.zeros((0, 16), dtype=np.uint64)
    hardening = Hardening(balance=True, diffusion_taps=3, blip=0.1)
    assert _harden(empty, hardening, rng=rng).shape == (0, 32)


@pytest.mark.parametrize(
    "hardening",
    [Hardening(balance=True), Hardening(diffusion_taps=3), Hardening(diffusion_taps=5)],
    ids=["balance", "diffusion3", "diffusion5"],
)
def test_keyed_options_are_deterministic_and_keyed(
    rng: np.random.Generator, hardening: Hardening
) -> None:
    clks = _random_clks(rng)
    first = _harden(clks, hardening)
    hardening_module._permutation.cache_clear()
    hardening_module._diffusion_taps.cache_clear()
    np.testing.assert_array_equal(_harden(clks, hardening), first)
    assert not np.array_equal(_harden(clks, hardening, secret=OTHER_SECRET), first)
    assert not np.array_equal(_harden(clks, hardening, context="another-project"), first)


def test_balanced_filters_have_exactly_half_their_bits_set(rng: np.random.Generator) -> None:
    clks = _random_clks(rng)
    clks[0] = 0
    clks[1] = ALL_ONES
    clks[2, :] = 0
    clks[2, 3] = 1
    got = _harden(clks, Hardening(balance=True))
    assert (popcount(got) == 1024).all()


def test_balance_is_a_keyed_permutation_of_the_clk_and_its_complement(
    rng: np.random.Generator,
) -> None:
    clks = _random_clks(rng, n=8)
    perm = np.array(_spec_permutation(_option_key(SECRET, CONTEXT, b"balance"), 2048))
    assert sorted(perm.tolist()) == list(range(2048))
    doubled = np.concatenate([_unpack(clks), 1 - _unpack(clks)], axis=1)
    np.testing.assert_array_equal(_harden(clks, Hardening(balance=True)), _pack(doubled[:, perm]))


def test_xor_fold_halves_the_length(rng: np.random.Generator) -> None:
    clks = _random_clks(rng)
    got = _harden(clks, Hardening(xor_fold=True))
    bits = _unpack(clks)
    np.testing.assert_array_equal(_unpack(got), bits[:, :512] ^ bits[:, 512:])
    two_words = np.ascontiguousarray(clks[:, :2])
    assert _harden(two_words, Hardening(xor_fold=True)).shape == (40, 1)


@pytest.mark.parametrize("f", [0.02, 0.05, 0.3])
def test_blip_flips_about_f_of_the_bits(f: float) -> None:
    clks = np.zeros((2000, 16), dtype=np.uint64)
    clks[::2] = ALL_ONES
    got = _harden(clks, Hardening(blip=f), rng=np.random.default_rng(11))
    flipped = popcount(got ^ clks).sum() / clks.size / 64
    assert f * 0.95 < flipped < f * 1.05
    # Each bit is flipped, not set: ones become zeros as often as zeros become ones.
    ones_lost = 1 - popcount(got[::2]).mean() / 1024
    zeros_set = popcount(got[1::2]).mean() / 1024
    assert ones_lost == pytest.approx(f, rel=0.1)
    assert zeros_set == pytest.approx(f, rel=0.1)


def test_blip_flips_in_blocks_of_rows_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounding the temporary must not change which bits a seeded generator flips."""
    clks = np.zeros((50, 16), dtype=np.uint64)
    whole = _harden(clks, Hardening(blip=0.1), rng=np.random.default_rng(3))
    monkeypatch.setattr(hardening_module, "_BLIP_BLOCK_BITS", 3 * 1024)
    blocked = _harden(clks, Hardening(blip=0.1), rng=np.random.default_rng(3))
    np.testing.assert_array_equal(blocked, whole)


def test_blip_is_fresh_noise_without_a_generator(rng: np.random.Generator) -> None:
    clks = _random_clks(rng)
    first = _harden(clks, Hardening(blip=0.1))
    assert not np.array_equal(_harden(clks, Hardening(blip=0.1)), first)


def test_options_apply_in_the_documented_order(rng: np.random.Generator) -> None:
    clks = _random_clks(rng)
    combined = _harden(
        clks,
        Hardening(balance=True, xor_fold=True, diffusion_taps=3, blip=0.05),
        rng=np.random.default_rng(5),
    )
    step = _harden(clks, Hardening(balance=True))
    step = _harden(step, Hardening(xor_fold=True))
    step = _harden(step, Hardening(diffusion_taps=3))
    step = _harden(step, Hardening(blip=0.05), rng=np.random.default_rng(5))
    np.testing.assert_array_equal(combined, step)


def test_hardened_clks_still_rank_a_typo_above_a_stranger() -> None:
    fields = [default_field_encoding("first", "name"), default_field_encoding("last", "name")]
    table = {
        "first": ["catherine", "katherine", "mohammed"],
        "last": ["whitfield", "whitfield", "okonkwo"],
    }
    clks = encode_records(table, fields=fields, secret=SECRET, context=CONTEXT)
    for hardening in (
        Hardening(diffusion_taps=3),
        Hardening(balance=True),
        Hardening(xor_fold=True),
        Hardening(balance=True, diffusion_taps=3),
    ):
        got = _harden(clks, hardening)
        typo, stranger = dice_score(got[0], got[1]), dice_score(got[0], got[2])
        assert typo > stranger + 0.1, hardening


# --- checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"diffusion_taps": -1}, "diffusion_taps must be a whole number >= 0"),
        ({"diffusion_taps": 2.5}, "diffusion_taps must be a whole number >= 0"),
        ({"diffusion_taps": True}, "diffusion_taps must be a whole number >= 0"),
        ({"salt_field": ""}, "salt_field must name a linkage field"),
        ({"salt_field": 3}, "salt_field must name a linkage field"),
        ({"balance": "yes"}, "balance must be true or false"),
        ({"xor_fold": 1}, "xor_fold must be true or false"),
        ({"blip": 0.5}, "0 <= blip < 0.5"),
        ({"blip": -0.01}, "0 <= blip < 0.5"),
        ({"blip": float("nan")}, "0 <= blip < 0.5"),
        ({"blip": "0.1"}, "0 <= blip < 0.5"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Hardening(**kwargs)


@pytest.mark.parametrize(
    ("bits", "hardening", "message"),
    [
        (1000, Hardening(), "positive multiple of 64"),
        (0, Hardening(), "positive multiple of 64"),
        (64, Hardening(xor_fold=True), "at least 128 bits"),
        (128, Hardening(diffusion_taps=129), "more than the 128 bits"),
        (128, Hardening(xor_fold=True, diffusion_taps=65), "more than the 64 bits"),
    ],
)
def test_options_that_do_not_fit_the_length(bits: int, hardening: Hardening, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        hardened_bits(bits, hardening)


def test_hardened_bits() -> None:
    assert hardened_bits(1024, Hardening()) == 1024
    assert hardened_bits(1024, Hardening(balance=True)) == 2048
    assert hardened_bits(1024, Hardening(xor_fold=True)) == 512
    assert hardened_bits(64, Hardening(balance=True, xor_fold=True)) == 64
    assert hardened_bits(128, Hardening(diffusion_taps=128, blip=0.1)) == 128


def test_bad_inputs(rng: np.random.Generator) -> None:
    clks = _random_clks(rng)
    with pytest.raises(ValueError, match="uint64 of shape"):
        _harden(clks.astype(np.int64), Hardening())
    with pytest.raises(ValueError, match="uint64 of shape"):
        _harden(clks[0], Hardening())
    with pytest.raises(ValueError, match="C-contiguous"):
        _harden(clks[:, ::2], Hardening())
    with pytest.raises(TypeError, match="numpy array"):
        _harden(clks.tolist(), Hardening())
    with pytest.raises(ConfigError, match="at least 128 bits"):
        _harden(np.ascontiguousarray(clks[:, :1]), Hardening(xor_fold=True))


def test_secret_and_context_are_checked(rng: np.random.Generator) -> None:
    clks = _random_clks(rng)
    with pytest.raises(AuthError, match="at least 16") as caught:
        _harden(clks, Hardening(diffusion_taps=3), secret=b"short secret")
    assert "short secret" not in str(caught.value)
    with pytest.raises(ConfigError, match="context"):
        _harden(clks, Hardening(diffusion_taps=3), context="")
    with pytest.raises(TypeError, match="bytes"):
        _harden(clks, Hardening(diffusion_taps=3), secret=SECRET.decode())


# --- salts ---------------------------------------------------------------------------------------


def test_salts_are_off_without_a_salt_field() -> None:
    assert salts_for(["1980-01-02", "x"], hardening=Hardening(diffusion_taps=3)) is None


def test_salts_from_standardised_values() -> None:
    values = ["1980-01-02", "1980-12-31", None, "", float("nan"), "LS6 2AB", "smith"]
    got = salts_for(values, hardening=Hardening(salt_field="date_of_birth"))
    assert got == ["1980", "1980", None, None, None, "LS6 2AB", "smith"]


def test_salts_refuse_values_that_are_not_strings() -> None:
    with pytest.raises(InputDataError, match="found a int") as caught:
        salts_for(["1980-01-02", 1980], hardening=Hardening(salt_field="yob"))
    assert "1980" not in str(caught.value).replace("'yob'", "")


def test_salts_feed_the_encoder() -> None:
    """Same name and year: same CLK; another year: unrelated positions; no year: unsalted."""
    fields = [default_field_encoding("last", "name"), default_field_encoding("dob", "date")]
    table = {
        "last": ["whitfield", "whitfield", "whitfield", "whitfield"],
        "dob": ["1980-03-04", "1980-04-03", "1981-03-04", None],
    }
    salts = salts_for(table["dob"], hardening=Hardening(salt_field="dob"))
    assert salts == ["1980", "1980", "1981", None]
    names_only = {"last": table["last"], "dob": [None] * 4}
    salted = encode_records(names_only, fields=fields, secret=SECRET, context=CONTEXT, salts=salts)
    unsalted = encode_records(names_only, fields=fields, secret=SECRET, context=CONTEXT)
    np.testing.assert_array_equal(salted[0], salted[1])
    np.testing.assert_array_equal(salted[3], unsalted[3])
    assert dice_score(salted[0], salted[2]) < 0.5
    assert dice_score(salted[0], unsalted[0]) < 0.5
