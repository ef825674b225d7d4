"""Bit-identity with clkhash 0.18.3, run in the reference environment (.venv-ref, `make ref`).

One worker process under the reference interpreter (clkhash_reference_worker.py) answers every
request of this module, so clkhash is imported once. Without the reference environment these
tests fail, never skip: the interop promise is only as good as its check.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oda_fed.encoding import (
    encode_clkhash,
    read_clkhash_json,
    write_clkhash_json,
)
from oda_fed.encoding.clkhash_json import to_clkhash_bytes
from oda_fed.encoding.clkhash_schema import load_clkhash_schema, parse_clkhash_schema
from oda_fed.errors import ConfigError, InputDataError

WORKER = Path(__file__).with_name("clkhash_reference_worker.py")
REPO = Path(__file__).resolve().parents[2]
SECRET = "correct horse battery staple"
SALT = "SCbL2zHNnmsckfzchsNkZY9XoHk96P/G5nUBrM7ybymlEFsMV6PAeDZCNp3rfNUPCtLDMOGQHG4pCQpfhiHCyA=="


class ReferenceError_(Exception):
    """clkhash refused a request; ``kind`` is the exception's class name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Reference:
    """The clkhash worker: one JSON request per line in, one JSON answer per line out."""

    def __init__(self, python: Path) -> None:
        self.process = subprocess.Popen(
            [str(python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def ask(self, **request: object) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"the clkhash worker stopped (exit code {self.process.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise ReferenceError_(answer["error"]["type"], answer["error"]["message"])
        return answer

    def clk_bytes(self, schema: dict, rows: list[list[str]], secret: str = SECRET) -> np.ndarray:
        clks = self.ask(op="encode", schema=schema, rows=rows, secret=secret)["clks"]
        return np.array([np.frombuffer(base64.b64decode(c), dtype=np.uint8) for c in clks])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _reference_python() -> Path:
    configured = os.environ.get("ODA_FED_REFERENCE_PYTHON")
    python = Path(configured) if configured else REPO / ".venv-ref" / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"the clkhash reference interpreter {python} is missing: run `make ref` "
            "(or set ODA_FED_REFERENCE_PYTHON)"
        )
    return python


@pytest.fixture(scope="module")
def reference():
    worker = Reference(_reference_python())
    yield worker
    worker.close()


def _ours(schema: dict, rows: list[list[str]], secret: str = SECRET) -> np.ndarray:
    parsed = parse_clkhash_schema(copy.deepcopy(schema))
    clks = encode_clkhash(parsed, rows, secret=secret)
    return to_clkhash_bytes(clks, bits=parsed.bits)


def assert_same_bits(reference: Reference, schema: dict, rows: list[list[str]]) -> None:
    expected = reference.clk_bytes(schema, rows)
    got = _ours(schema, rows)
    assert got.shape == expected.shape
    differ = np.flatnonzero((got != expected).any(axis=1))
    assert differ.size == 0, f"{differ.size} CLKs differ, first at row {differ[:5].tolist()}"


def _schema(*features: dict, bits: int = 1024, kdf: dict | None = None, **config: object) -> dict:
    return {
        "version": 3,
        "clkConfig": {"l": bits, "kdf": kdf or {"type": "HKDF", "salt": SALT}, **config},
        "features": list(features),
    }


def _feature(
    identifier: str = "f",
    *,
    fmt: dict | None = None,
    comparison: dict | None = None,
    strategy: dict | None = None,
    hash: dict | None = None,
    missing: dict | None = None,
) -> dict:
    hashing: dict = {
        "comparison": comparison or {"type": "ngram", "n": 2},
        "strategy": strategy or {"bitsPerToken": 20},
    }
    if hash is not None:
        hashing["hash"] = hash
    if missing is not None:
        hashing["missingValue"] = missing
    return {"identifier": identifier, "format": fmt or {"type": "string"}, "hashing": hashing}


NAMES = ["anna", "ann", "", "bob", "zoë", "o'brien", "mary-jane smith", "x", "ÅSA", "李小龍"]

# One case per supported feature of the schema: (id, schema, column values).
FEATURE_CASES = [
    *[
        (
            f"ngram-n{n}-{'positional' if p else 'plain'}",
            _schema(_feature(comparison={"type": "ngram", "n": n, "positional": p})),
            NAMES,
        )
        for n in (1, 2, 3, 4)
        for p in (False, True)
    ],
    ("exact", _schema(_feature(comparison={"type": "exact"})), NAMES),
    (
        "numeric-integers",
        _schema(
            _feature(
                fmt={"type": "integer"},
                comparison={"type": "numeric", "thresholdDistance": 5, "resolution": 3},
            )
        ),
        ["0", "7", "-12", "+13", " 42 ", "100000000000000000000001", "9"],
    ),
    (
        "numeric-fractions",
        _schema(
            _feature(
                comparison={
                    "type": "numeric",
                    "thresholdDistance": 0.25,
                    "resolution": 2,
                    "fractional_precision": 2,
                }
            )
        ),
        ["1.5", "2.675", "-0.125", "3", "1e3", "-7.4999", "0.005"],
    ),
    *[
        (
            f"encoding-{enc}",
            _schema(_feature(fmt={"type": "string", "encoding": enc})),
            ["anna", "zoë", "李", "", "ab"] if enc != "ascii" else ["anna", "", "o'brien"],
        )
        for enc in ("ascii", "utf-8", "utf-16", "utf-32")
    ],
    ("case-upper", _schema(_feature(fmt={"type": "string", "case": "upper"})), ["ANNA", "B2", ""]),
    ("case-lower", _schema(_feature(fmt={"type": "string", "case": "lower"})), ["anna", "b2"]),
    (
        "lengths",
        _schema(_feature(fmt={"type": "string", "minLength": 2, "maxLength": 5})),
        ["ab", "abcde", "abc"],
    ),
    (
        "pattern",
        _schema(_feature(fmt={"type": "string", "pattern": "[A-Z]{2}[0-9]+"})),
        ["LS6", "AB12345", "ZZ0"],
    ),
    (
        "integer",
        _schema(_feature(fmt={"type": "integer", "minimum": -5, "maximum": 5000})),
        ["0", "-5", "+42", " 7", "0007", "5000", "1_000"],
    ),
    (
        "date",
        _schema(
            _feature(
                fmt={"type": "date", "format": "%Y/%m/%d"},
                comparison={"type": "ngram", "n": 1, "positional": True},
            )
        ),
        ["1980/04/03", "2000/2/29", "1999/12/31", "1066/10/14"],
    ),
    (
        "date-day-first",
        _schema(_feature(fmt={"type": "date", "format": "%d-%m-%Y"})),
        ["03-04-1980", "1-1-2001", "31-12-1999"],
    ),
    (
        "enum",
        _schema(
            _feature(fmt={"type": "enum", "values": ["M", "F", "U"]}, comparison={"type": "exact"})
        ),
        ["M", "F", "U", "M"],
    ),
    ("blake", _schema(_feature(hash={"type": "blakeHash"})), NAMES),
    ("double", _schema(_feature(hash={"type": "doubleHash"})), NAMES),
    (
        "double-prevent-singularity",
        # A short filter makes h2 = 0 (mod l) common, so the re-hashing path is taken.
        _schema(_feature(hash={"type": "doubleHash", "prevent_singularity": True}), bits=8),
        [f"w{i}" for i in range(60)],
    ),
    (
        "double-singular",
        _schema(_feature(hash={"type": "doubleHash", "prevent_singularity": False}), bits=8),
        [f"w{i}" for i in range(60)],
    ),
    (
        "double-l-not-power-of-two",
        _schema(_feature(hash={"type": "doubleHash"}), bits=1000),
        NAMES,
    ),
    (
        "double-l-not-whole-bytes",
        _schema(_feature(hash={"type": "doubleHash"}, strategy={"bitsPerToken": 3}), bits=30),
        NAMES,
    ),
    ("bits-per-token", _schema(_feature(strategy={"bitsPerToken": 70})), NAMES),
    (
        "bits-per-feature",
        # 7 over up to 16 tokens: a remainder, and tokens that set no bits.
        _schema(_feature(strategy={"bitsPerFeature": 7})),
        [*NAMES, "a much longer value"],
    ),
    (
        "bits-per-feature-large",
        _schema(_feature(strategy={"bitsPerFeature": 200}, hash={"type": "doubleHash"})),
        NAMES,
    ),
    (
        "missing-sentinel",
        _schema(_feature(fmt={"type": "integer"}, missing={"sentinel": "N/A"})),
        ["N/A", "12", "N/A", "7"],
    ),
    (
        "missing-replace-with",
        _schema(
            _feature(
                fmt={"type": "string", "minLength": 3},
                missing={"sentinel": "", "replaceWith": "unknown"},
            )
        ),
        ["", "anna", ""],
    ),
    ("xor-folds-1", _schema(_feature(), bits=512, xor_folds=1), NAMES),
    ("xor-folds-3", _schema(_feature(), bits=128, xor_folds=3), NAMES),
    (
        "xor-folds-odd-length",
        _schema(_feature(hash={"type": "doubleHash"}), bits=100, xor_folds=2),
        NAMES,
    ),
    (
        "kdf-settings",
        _schema(
            _feature(),
            kdf={
                "type": "HKDF",
                "hash": "SHA512",
                "salt": SALT,
                "info": "c2NoZW1hX2V4YW1wbGU=",
                "keySize": 32,
            },
        ),
        NAMES,
    ),
    ("kdf-defaults", _schema(_feature(), kdf={"type": "HKDF"}), NAMES),
    (
        "kdf-long-keys-double-hash",
        _schema(_feature(hash={"type": "doubleHash"}), kdf={"type": "HKDF", "keySize": 100}),
        NAMES,
    ),
    ("l-64", _schema(_feature(), bits=64), NAMES),
    ("l-4096", _schema(_feature(strategy={"bitsPerToken": 40}), bits=4096), NAMES),
]


@pytest.mark.parametrize(
    ("schema", "values"),
    [case[1:] for case in FEATURE_CASES],
    ids=[case[0] for case in FEATURE_CASES],
)
def test_each_supported_feature_matches_clkhash(reference, schema: dict, values: list[str]):
    assert_same_bits(reference, schema, [[value] for value in values])


def test_ignored_features_and_several_columns(reference) -> None:
    schema = _schema(
        {"identifier": "id", "ignored": True},
        _feature("name"),
        {**_feature("dropped", fmt={"type": "integer"}), "ignored": True},
        _feature("sex", fmt={"type": "enum", "values": ["m", "f"]}, comparison={"type": "exact"}),
    )
    rows = [["1", "anna", "not a number", "f"], ["2", "bob", "", "m"], ["3", "", "x", "f"]]
    assert_same_bits(reference, schema, rows)
    # Ignored columns are not checked, and do not change the bits.
    other = [[f"id{i}", name, "anything", sex] for i, (_, name, _, sex) in enumerate(rows)]
    np.testing.assert_array_equal(_ours(schema, rows), _ours(schema, other))


# --- invalid values: refused as clkhash refuses them ---------------------------------------------

INVALID_CASES = [
    ("ascii", {"type": "string", "encoding": "ascii"}, "zoë"),
    ("utf-8 surrogate", {"type": "string"}, "a\ud800b"),
    ("utf-16 surrogate", {"type": "string", "encoding": "utf-16"}, "\udfff"),
    ("pattern", {"type": "string", "pattern": "[0-9]{4}"}, "12345"),
    ("min length", {"type": "string", "minLength": 3}, "ab"),
    ("max length", {"type": "string", "maxLength": 3}, "abcd"),
    ("upper", {"type": "string", "case": "upper"}, "Anna"),
    ("lower", {"type": "string", "case": "lower"}, "Anna"),
    ("integer", {"type": "integer"}, "12a"),
    ("minimum", {"type": "integer", "minimum": 0}, "-1"),
    ("maximum", {"type": "integer", "maximum": 10}, "11"),
    ("date", {"type": "date", "format": "%Y-%m-%d"}, "1980-02-30"),
    ("enum", {"type": "enum", "values": ["m", "f"]}, "x"),
]


@pytest.mark.parametrize(
    ("fmt", "bad"), [c[1:] for c in INVALID_CASES], ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_values_are_refused_at_the_same_row_and_column(
    reference, fmt: dict, bad: str
) -> None:
    schema = _schema(
        {"identifier": "id", "ignored": True}, _feature("good"), _feature("v", fmt=fmt)
    )
    good_value = {"integer": "5", "date": "1980-01-02", "enum": "m"}.get(fmt["type"], "ABC")
    if fmt.get("pattern"):
        good_value = "1234"
    elif fmt.get("case") == "lower":
        good_value = "abc"
    rows = [["0", "x", good_value], ["1", "y", good_value], ["2", "z", bad], ["3", "w", bad]]
    with pytest.raises(ReferenceError_) as refused:
        reference.clk_bytes(schema, rows)
    match = re.search(r"row (\d+), column '([^']*)'", refused.value.message)
    assert match is not None, refused.value.message
    with pytest.raises(InputDataError) as ours:
        encode_clkhash(parse_clkhash_schema(schema), rows, secret=SECRET)
    assert f"row {match.group(1)} " in str(ours.value)
    assert f"column {match.group(2)!r}" in str(ours.value)


def test_a_value_numeric_cannot_read_is_refused(reference) -> None:
    schema = _schema(
        _feature(comparison={"type": "numeric", "thresholdDistance": 2, "resolution": 1})
    )
    for bad in ("abc", "inf", "nan"):
        with pytest.raises(ReferenceError_):
            reference.clk_bytes(schema, [["1"], [bad]])
        with pytest.raises(InputDataError, match="row 1 .*cannot be read as a number"):
            encode_clkhash(parse_clkhash_schema(schema), [["1"], [bad]], secret=SECRET)


def test_long_invalid_values_are_shortened_in_messages() -> None:
    schema = _schema(_feature(fmt={"type": "string", "maxLength": 3}))
    secret_value = "s" * 40 + "TAIL"
    with pytest.raises(InputDataError) as refused:
        encode_clkhash(parse_clkhash_schema(schema), [[secret_value]], secret=SECRET)
    assert "TAIL" not in str(refused.value)
    assert "s" * 31 + "…" in str(refused.value)


# --- generated values ---------------------------------------------------------------------------

GENERATED_SCHEMA = _schema(
    {"identifier": "id", "ignored": True},
    _feature("bigram", missing={"sentinel": ""}),
    _feature(
        "positional",
        comparison={"type": "ngram", "n": 3, "positional": True},
        strategy={"bitsPerFeature": 50},
        hash={"type": "doubleHash"},
    ),
    _feature(
        "exact",
        fmt={"type": "string", "encoding": "utf-16"},
        comparison={"type": "exact"},
        hash={"type": "doubleHash", "prevent_singularity": True},
    ),
    _feature("unigram", comparison={"type": "ngram", "n": 1}, strategy={"bitsPerFeature": 33}),
    bits=2048,
    xor_folds=1,
)

# Printable text from every plane, plus empty strings and near-duplicates, in batches of rows.
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_rows = st.lists(st.tuples(_text, _text, _text, _text), min_size=1, max_size=30)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_rows)
def test_generated_values_match_clkhash(reference, rows) -> None:
    table = [[str(i), *row] for i, row in enumerate(rows)]
    assert_same_bits(reference, GENERATED_SCHEMA, table)


# --- FEBRL ---------------------------------------------------------------------------------------


# The documented example schema, which benchmarks/encode.py also uses.
FEBRL_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs/examples/febrl-clkhash-schema.json").read_text()
)


@pytest.fixture(scope="module")
def febrl(reference) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("febrl1", "febrl2", "febrl3", "febrl4"):
        data = reference.ask(op="febrl", name=name)
        out[name] = pd.DataFrame(data["rows"], columns=data["columns"])
    return out


@pytest.mark.parametrize("name", ["febrl1", "febrl2", "febrl3", "febrl4"])
def test_febrl_matches_clkhash(reference, febrl, name: str) -> None:
    frame = febrl[name]
    # FEBRL4 is two files; take rows from both.
    frame = (
        pd.concat([frame.iloc[:500], frame.iloc[-500:]]) if name == "febrl4" else frame.iloc[:1000]
    )
    expected = reference.clk_bytes(FEBRL_SCHEMA, frame.values.tolist())
    clks = encode_clkhash(parse_clkhash_schema(FEBRL_SCHEMA), frame, secret=SECRET)
    np.testing.assert_array_equal(to_clkhash_bytes(clks, bits=1024), expected)


def test_febrl_impossible_dates_are_refused_at_the_same_row(reference, febrl) -> None:
    schema = copy.deepcopy(FEBRL_SCHEMA)
    schema["features"][9]["format"] = {"type": "date", "format": "%Y%m%d"}
    rows = febrl["febrl3"].values.tolist()
    with pytest.raises(ReferenceError_) as refused:
        reference.clk_bytes(schema, rows)
    row = re.search(r"row (\d+)", refused.value.message).group(1)
    with pytest.raises(InputDataError, match=f"row {row} .*'date_of_birth'"):
        encode_clkhash(parse_clkhash_schema(schema), rows, secret=SECRET)


# --- clkhash's own example schemas ----------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(reference) -> dict[str, dict]:
    shipped = reference.ask(op="example_schemas")["schemas"]
    assert shipped, "clkhash ships example schemas in clkhash/data"
    return {name: json.loads(text) for name, text in shipped.items()}


def test_example_schemas_match_clkhash(reference, examples, tmp_path: Path) -> None:
    rows = reference.ask(op="random_names", n=300, seed=7)["rows"]
    for name, schema in examples.items():
        path = tmp_path / name
        path.write_text(json.dumps(schema))
        loaded = load_clkhash_schema(path)
        expected = reference.clk_bytes(schema, rows)
        got = to_clkhash_bytes(encode_clkhash(loaded, rows, secret=SECRET), bits=loaded.bits)
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_example_schemas_with_unsupported_features_are_refused(reference, examples) -> None:
    for name, schema in examples.items():
        older = {**schema, "version": 2}
        with pytest.raises(ConfigError, match="version: schema version 2 is not supported"):
            parse_clkhash_schema(older, source=name)
        # clkhash accepts xorFolds and ignores it, so following it would give other bits.
        folded = copy.deepcopy(schema)
        folded["clkConfig"]["xorFolds"] = 1
        rows = [["0", "Anna Smith", "1980/01/02", "F"]]
        assert (reference.clk_bytes(folded, rows) == reference.clk_bytes(schema, rows)).all()
        with pytest.raises(ConfigError, match=r"clkConfig\.xorFolds: clkhash 0\.18\.3 ignores"):
            parse_clkhash_schema(folded, source=name)


def test_keys_clkhash_ignores_are_refused_and_clkhash_agrees_they_do_nothing(reference) -> None:
    base = _schema(
        _feature(comparison={"type": "numeric", "thresholdDistance": 2, "resolution": 2})
    )
    ignored = copy.deepcopy(base)
    ignored["features"][0]["hashing"]["comparison"]["fractionalPrecision"] = 2
    rows = [["1.26"], ["1.74"]]
    np.testing.assert_array_equal(
        reference.clk_bytes(ignored, rows), reference.clk_bytes(base, rows)
    )
    with pytest.raises(ConfigError, match="fractional_precision"):
        parse_clkhash_schema(ignored)
    dated = _schema(_feature(fmt={"type": "date", "format": "%Y", "desiredFormat": "%Y"}))
    with pytest.raises(ReferenceError_):
        reference.ask(op="check_schema", schema=dated)
    with pytest.raises(ConfigError, match="desiredFormat"):
        parse_clkhash_schema(dated)


# --- clkhash's JSON serialisation -------------------------------------------------------------------


def test_clkhash_json_is_what_clkhash_writes(reference, tmp_path: Path) -> None:
    schema = _schema(_feature(hash={"type": "doubleHash"}), bits=100)
    rows = [[name] for name in NAMES]
    expected = reference.ask(op="encode", schema=schema, rows=rows, secret=SECRET)["clks"]
    clks = encode_clkhash(parse_clkhash_schema(schema), rows, secret=SECRET)
    path = write_clkhash_json(clks, tmp_path / "clks.json", bits=100)
    assert json.loads(path.read_text()) == {"clks": expected}
    np.testing.assert_array_equal(read_clkhash_json(path), clks)


def test_the_encode_command_writes_what_clkhash_writes(reference, examples, tmp_path: Path) -> None:
    """`oda-fed encode --clkhash-schema` end to end, in chunks, against clkhash's own bits."""
    from typer.testing import CliRunner

    from oda_fed.cli import app
    from oda_fed.encoding import read_clkhash_json

    schema = examples["randomnames-schema.json"]
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(schema))
    rows = [
        [str(i), name, dob, sex]
        for i, (name, dob, sex) in enumerate(
            [
                ("Zoë O'Brien", "1980/12/31", "F"),
                ("John Smith", "1975/01/02", "M"),
                ("Li Wei", "2001/07/04", "F"),
                ("Ana-María López", "1999/02/28", "F"),
            ]
            * 7
        )
    ]
    csv = tmp_path / "people.csv"
    pd.DataFrame(rows, columns=[f["identifier"] for f in schema["features"]]).to_csv(
        csv, index=False
    )
    out = tmp_path / "clks.json"
    result = CliRunner().invoke(
        app,
        [
            "encode",
            "--clkhash-schema",
            str(schema_path),
            "--secret",
            SECRET,
            "--input",
            str(csv),
            "--out",
            str(out),
            "--chunk-rows",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    got = read_clkhash_json(out)
    expected = reference.clk_bytes(schema, rows)
    assert np.array_equal(to_clkhash_bytes(got, bits=schema["clkConfig"]["l"]), expected)
