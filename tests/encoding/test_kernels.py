"""The encoder's kernels, NumPy and Numba, against their plain-Python twins; Numba's loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.encoding import clkhash_json, jit_kernels, kernels, reference
from oda_fed.encoding.codepoints import CodePoints

IMPLEMENTATIONS = ["numpy", "numba"]


def _kernel(impl: str, name: str):
    """One implementation of a kernel, whichever the process has chosen."""
    if impl == "numba":
        return getattr(jit_kernels, name)
    return getattr(kernels, name).__wrapped__


@st.composite
def _token_batches(draw):
    """Random token caches, values made of tokens, and rows pointing at values."""
    words = draw(st.integers(1, 3))
    tokens_ = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(0, 70), min_size=tokens_, max_size=tokens_))
    positions = np.array(
        draw(
            st.lists(st.integers(0, 64 * words - 1), min_size=sum(lengths), max_size=sum(lengths))
        ),
        dtype=np.uint32,
    )
    tok_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    values = draw(st.integers(0, 5))
    occ_tokens, occ_ks, counts = [], [], []
    for _ in range(values):
        picked = draw(st.lists(st.integers(0, tokens_ - 1), max_size=5))
        counts.append(len(picked))
        occ_tokens += picked
        occ_ks += [draw(st.integers(0, lengths[t])) for t in picked]
    occ_offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
    rows = np.array(draw(st.lists(st.integers(-1, values - 1), max_size=8)), dtype=np.int64)
    start = draw(
        st.lists(st.integers(0, 2**64 - 1), min_size=len(rows) * words, max_size=len(rows) * words)
    )
    out = np.array(start, dtype=np.uint64).reshape(len(rows), words)
    arrays = (
        occ_offsets,
        np.array(occ_tokens, dtype=np.int64),
        np.array(occ_ks, dtype=np.int64),
        tok_offsets,
        positions,
    )
    return rows, arrays, out


@pytest.mark.kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=120, deadline=None, derandomize=True)
@given(_token_batches())
def test_set_token_bits_matches_its_twin(impl, case) -> None:
    rows, arrays, out = case
    fast, plain = out.copy(), out.copy()
    _kernel(impl, "set_token_bits")(rows, *arrays, fast)
    reference.set_token_bits(rows, *arrays, plain)
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.data())
def test_or_masks_matches_its_twin(impl, data) -> None:
    words = data.draw(st.integers(1, 4))
    masks = data.draw(st.integers(1, 6))
    n, fields = data.draw(st.integers(0, 8)), data.draw(st.integers(1, 4))
    u64 = st.integers(0, 2**64 - 1)
    mask_array = np.array(
        data.draw(st.lists(u64, min_size=masks * words, max_size=masks * words)), dtype=np.uint64
    ).reshape(masks, words)
    codes = np.array(
        data.draw(st.lists(st.integers(-1, masks - 1), min_size=n * fields, max_size=n * fields)),
        dtype=np.int64,
    ).reshape(n, fields)
    out = np.array(
        data.draw(st.lists(u64, min_size=n * words, max_size=n * words)), dtype=np.uint64
    ).reshape(n, words)
    fast, plain = out.copy(), out.copy()
    _kernel(impl, "or_masks")(codes, mask_array, fast)
    reference.or_masks(codes, mask_array, plain)
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_kernels_on_all_zero_and_all_one_rows(impl) -> None:
    ones = np.full((2, 2), np.iinfo(np.uint64).max, dtype=np.uint64)
    codes = np.array([[0, -1], [-1, -1]], dtype=np.int64)
    for or_masks in (_kernel(impl, "or_masks"), reference.or_masks):
        out = np.zeros((2, 2), dtype=np.uint64)
        or_masks(codes, ones, out)
        assert out[0].tolist() == [2**64 - 1] * 2 and out[1].tolist() == [0, 0]


@st.composite
def _code_point_batches(draw):
    """Values as code points (any code point, surrogates and NUL included) with offsets."""
    values = draw(st.lists(st.lists(st.integers(0, 0x10FFFF), max_size=9), max_size=8))
    data = np.array([c for value in values for c in value], dtype=np.uint32)
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int64)
    return data, offsets


@pytest.mark.kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=120, deadline=None, derandomize=True)
@given(_code_point_batches(), st.integers(1, 3), st.integers(0, 2), st.booleans(), st.data())
def test_ngram_keys_matches_its_twin(impl, batch, n, pad_width, positional, data) -> None:
    points, offsets = batch
    lengths = np.diff(offsets) + 2 * pad_width
    # As many n-grams as fit, or fewer (the caller may ask for none of a value's).
    grams = np.array(
        [data.draw(st.integers(0, max(int(k) - n + 1, 0))) for k in lengths], dtype=np.int64
    )
    gram_offsets = np.concatenate([[0], np.cumsum(grams)]).astype(np.int64)
    pad = 0x5F
    if data.draw(st.booleans()):
        # A dense alphabet: every code point in use, and the pad, gets a digit.
        alphabet = np.unique(np.append(points, pad))
        lut = np.zeros(int(alphabet.max()) + 1, dtype=np.uint32)
        lut[alphabet] = np.arange(len(alphabet), dtype=np.uint32)
        base = len(alphabet)
    else:
        lut, base = np.zeros(0, dtype=np.uint32), 1 << 21
    unit = base**n if positional else 0
    fast = np.zeros(int(gram_offsets[-1]), dtype=np.uint64)
    plain = fast.copy()
    args = (points, offsets, gram_offsets, n, pad, pad_width, lut)
    _kernel(impl, "ngram_keys")(*args, np.uint64(base), np.uint64(unit), fast)
    reference.ngram_keys(*args, base, unit, plain)
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=120, deadline=None, derandomize=True)
@given(_code_point_batches(), st.lists(st.booleans(), max_size=70))
def test_all_allowed_matches_its_twin(impl, batch, table) -> None:
    points, offsets = batch
    points = points % 80  # so that the table decides most code points
    allowed = np.array(table, dtype=np.bool_)
    fast, plain = np.zeros(len(offsets) - 1, bool), np.ones(len(offsets) - 1, bool)
    _kernel(impl, "all_allowed")(points, offsets, allowed, fast)
    reference.all_allowed(points, offsets, allowed, plain)
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.text(alphabet="0123456789 +-_x٣", max_size=20), max_size=10))
def test_plain_decimals_matches_its_twin_and_python(impl, values) -> None:
    points = CodePoints.from_strings(values)
    fast = np.zeros(len(values), bool), np.zeros(len(values), np.int64)
    plain = np.zeros(len(values), bool), np.zeros(len(values), np.int64)
    _kernel(impl, "plain_decimals")(points.data, points.offsets, 18, *fast)
    reference.plain_decimals(points.data, points.offsets, 18, *plain)
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])
    for value, ok, number in zip(values, *fast, strict=True):
        # A plain decimal is exactly a string of ASCII digits that int() reads and str() writes
        # back unchanged ("-1" round-trips, but it is not digits alone).
        digits = value.isascii() and value.isdigit()
        assert ok == (len(value) <= 18 and digits and _round_trips(value))
        assert number == (int(value) if ok else 0)


@pytest.mark.kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.data())
def test_base64_rows_matches_its_twin(impl, data) -> None:
    nbytes = data.draw(st.integers(1, 40))  # every width modulo 3, so every '=' padding
    words = -(-nbytes // 8)
    n = data.draw(st.integers(1, 6))
    first = data.draw(st.integers(0, n - 1))
    clks = np.array(
        data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n * words, max_size=n * words)),
        dtype=np.uint64,
    ).reshape(n, words)
    shape = (n - first, 4 * -(-nbytes // 3) + 4)
    fast, plain = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    raw = clks.astype("<u8").view(np.uint8)
    tables = clkhash_json._BASE64, clkhash_json._REVERSED
    _kernel(impl, "base64_rows")(raw, nbytes, first, *tables, fast)
    reference.base64_rows(raw, nbytes, first, *tables, plain)
    np.testing.assert_array_equal(fast, plain)


def _round_trips(value: str) -> bool:
    try:
        return str(int(value, 10)) == value
    except ValueError:
        return False


# --- loading Numba ----------------------------------------------------------------------------


def _run(code: str, cwd: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


LEAN = """
import json, sys
from oda_fed.encoding.kernels import import_numba
import_numba()
loaded = [name for name in ("numba", "yaml", "cffi", "pycparser") if name in sys.modules]
import numba, numpy as np
@numba.njit(parallel=True)
def total(x):
    s = 0
    for i in numba.prange(len(x)):
        s += x[i]
    return s
import yaml, cffi  # still importable: nothing is left hidden
print(json.dumps({"loaded": loaded, "total": int(total(np.arange(10))),
                  "threads": numba.config.NUMBA_NUM_THREADS,
                  "int": cffi.FFI().sizeof("int"), "yaml": yaml.safe_load("a: 1")}))
"""


def test_numba_is_imported_without_yaml_or_cffi_which_stay_importable(tmp_path: Path) -> None:
    pytest.importorskip("yaml")  # Dask's dependency, so installed with the dev extras
    pytest.importorskip("cffi")  # cryptography's
    seen = _run(LEAN, tmp_path)
    assert seen["loaded"] == ["numba"]
    assert seen["total"] == 45  # kernels compile and run on Numba's threads
    assert seen["int"] == 4 and seen["yaml"] == {"a": 1}


def test_a_numba_config_file_is_still_read(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    (tmp_path / ".numba_config.yaml").write_text("num_threads: 1\n")
    seen = _run(LEAN, tmp_path)
    assert seen["loaded"] == ["numba", "yaml"]  # PyYAML loaded for the file; cffi still hidden
    assert seen["threads"] == 1


def test_packages_already_loaded_are_left_alone(tmp_path: Path) -> None:
    pytest.importorskip("cffi")
    code = (
        "import cffi, json, sys\n"
        "from oda_fed.encoding.kernels import import_numba\n"
        "import_numba()\n"
        "from numba.core.typing import cffi_utils\n"
        "print(json.dumps({'supported': cffi_utils.SUPPORTED, 'cffi': sys.modules['cffi'] is cffi}))"
    )
    assert _run(code, tmp_path) == {"supported": True, "cffi": True}


# --- NumPy kernels in blocks, on threads ---------------------------------------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows, shared by more threads than rows would need."""
    monkeypatch.setattr(kernels, "_BLOCK_BYTES", 256)
    monkeypatch.setattr(kernels, "_LEAST_ROWS", 8)
    monkeypatch.setattr(kernels, "_WORKERS", 3)


def _uneven_token_batch(rng: np.random.Generator, *, values: int, tokens: int, words: int):
    """Values with 0 to 12 token occurrences each (so not all alike), tokens with 1 to 30
    positions, and occurrences using some of them."""
    lengths = rng.integers(1, 31, size=tokens)
    positions = rng.integers(0, 64 * words, size=int(lengths.sum())).astype(np.uint32)
    tok_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    counts = rng.integers(0, 13, size=values)
    occ_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    occ_tokens = rng.integers(0, tokens, size=int(counts.sum())).astype(np.int64)
    occ_ks = rng.integers(0, lengths[occ_tokens] + 1).astype(np.int64)
    return occ_offsets, occ_tokens, occ_ks, tok_offsets, positions


@pytest.mark.kernel
def test_numpy_kernels_in_blocks_across_threads_match_their_twins(small_blocks) -> None:
    rng = np.random.default_rng(7)
    arrays = _uneven_token_batch(rng, values=300, tokens=50, words=2)
    rows = rng.integers(-1, 300, size=1000).astype(np.int64)
    start = rng.integers(0, 2**63, size=(1000, 2), dtype=np.uint64)
    fast, plain = start.copy(), start.copy()
    kernels.set_token_bits.__wrapped__(rows, *arrays, fast)
    reference.set_token_bits(rows, *arrays, plain)
    np.testing.assert_array_equal(fast, plain)

    codes = rng.integers(-1, 40, size=(1000, 3)).astype(np.int64)
    masks = rng.integers(0, 2**63, size=(40, 2), dtype=np.uint64)
    fast, plain = start.copy(), start.copy()
    kernels.or_masks.__wrapped__(codes, masks, fast)
    reference.or_masks(codes, masks, plain)
    np.testing.assert_array_equal(fast, plain)

    clks = rng.integers(0, 2**63, size=(500, 6), dtype=np.uint64)
    raw = clks.astype("<u8").view(np.uint8)
    tables = clkhash_json._BASE64, clkhash_json._REVERSED
    for nbytes in (40, 41, 42):  # each '=' padding
        shape = (480, 4 * -(-nbytes // 3) + 4)
        fast, plain = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
        kernels.base64_rows.__wrapped__(raw, nbytes, 20, *tables, fast)
        reference.base64_rows(raw, nbytes, 20, *tables, plain)
        np.testing.assert_array_equal(fast, plain)


def test_token_pairs_are_numbered_alike_with_or_without_a_table() -> None:
    rng = np.random.default_rng(3)
    small = rng.integers(0, 100, size=1000).astype(np.int64)
    for keys in (small, small << 40):  # numbered through a table; past it, by sorting
        index, distinct = kernels._pairs(keys)
        np.testing.assert_array_equal(distinct, np.unique(keys))
        np.testing.assert_array_equal(distinct[index], keys)


# --- choosing the implementation ----------------------------------------------------------------


def test_the_numba_kernels_are_chosen_for_long_runs_and_give_the_same_bits(monkeypatch) -> None:
    from oda_fed.encoding import encode_clkhash
    from oda_fed.encoding.clkhash_schema import load_clkhash_schema

    schema = load_clkhash_schema(
        Path(__file__).parents[2] / "docs/examples/febrl-clkhash-schema.json"
    )
    rng = np.random.default_rng(11)
    names = ["anna", "bob", "zoë", "", "mary-jane", "o'neil", "li"]
    rows = [
        [
            f"rec-{i}",
            str(rng.choice(names)),
            str(rng.choice(names)),
            str(int(rng.integers(0, 300))),
            f"{rng.integers(1, 99)} {rng.choice(['high', 'mill', 'church'])} street",
            "",
            str(rng.choice(["leeds", "york", ""])),
            f"{rng.integers(1000, 9999)}",
            str(rng.choice(["wy", "nsw", ""])),
            f"19{rng.integers(10, 99)}0{rng.integers(1, 9)}1{rng.integers(0, 9)}",
            str(int(rng.integers(10**6, 10**7))),
        ]
        for i in range(400)
    ]
    monkeypatch.setattr(kernels, "_JIT", None)
    assert not kernels.use_jit_for(kernels.JIT_ROWS - 1)
    with_numpy = encode_clkhash(schema, rows, secret="s")
    assert kernels.use_jit_for(kernels.JIT_ROWS)
    assert kernels._JIT is jit_kernels
    np.testing.assert_array_equal(encode_clkhash(schema, rows, secret="s"), with_numpy)


def test_numba_s_thread_setting_bounds_the_numpy_kernels_too(monkeypatch) -> None:
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")
    assert kernels._threads() == 3
    for unset in ("", "0", "many"):
        monkeypatch.setenv("NUMBA_NUM_THREADS", unset)
        assert kernels._threads() == (
            os.cpu_count() if not hasattr(os, "sched_getaffinity") else len(os.sched_getaffinity(0))
        )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_the_numpy_kernels_on_threads_of_its_own(small_blocks) -> None:
    # A forked child inherits the pool object but none of its threads.
    rng = np.random.default_rng(5)
    codes = rng.integers(-1, 40, size=(1000, 3)).astype(np.int64)
    masks = rng.integers(0, 2**63, size=(40, 2), dtype=np.uint64)
    expected = np.zeros((1000, 2), dtype=np.uint64)
    kernels.or_masks.__wrapped__(codes, masks, expected)  # starts the parent's pool
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        out = np.zeros((1000, 2), dtype=np.uint64)
        kernels.or_masks.__wrapped__(codes, masks, out)
        os.write(write, b"1" if np.array_equal(out, expected) else b"0")
        os._exit(0)
    os.close(write)
    import select
    import signal

    ready, _, _ = select.select([read], [], [], 30)
    answer = os.read(read, 1) if ready else b""
    os.close(read)
    if not ready:
        os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    assert ready, "the child hung on the parent's pool"
    assert answer == b"1"
