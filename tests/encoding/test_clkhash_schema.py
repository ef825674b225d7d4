"""Reading clkhash v3 schemas: what is supported is parsed, anything else is refused by name."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from oda_fed.encoding import ClkhashSchema, load_clkhash_schema
from oda_fed.encoding.clkhash_schema import (
    DateFormat,
    EnumFormat,
    ExactComparison,
    IntegerFormat,
    NgramComparison,
    NumericComparison,
    StringFormat,
    parse_clkhash_schema,
)
from oda_fed.errors import ConfigError

BASE = {
    "version": 3,
    "clkConfig": {
        "l": 1024,
        "kdf": {
            "type": "HKDF",
            "hash": "SHA512",
            "salt": "c2FsdA==",
            "info": "aW5mbw==",
            "keySize": 32,
        },
    },
    "features": [
        {"identifier": "id", "ignored": True},
        {
            "identifier": "name",
            "description": "given name",
            "format": {
                "type": "string",
                "encoding": "utf-16",
                "case": "lower",
                "minLength": 1,
                "maxLength": 30,
            },
            "hashing": {
                "comparison": {"type": "ngram", "n": 3, "positional": True},
                "strategy": {"bitsPerFeature": 100},
                "hash": {"type": "doubleHash", "prevent_singularity": True},
                "missingValue": {"sentinel": "N/A", "replaceWith": ""},
            },
        },
        {
            "identifier": "postcode",
            "format": {"type": "string", "pattern": "[0-9]{4}"},
            "hashing": {"comparison": {"type": "exact"}, "strategy": {"bitsPerToken": 20}},
        },
        {
            "identifier": "age",
            "format": {"type": "integer", "minimum": 0, "maximum": 130},
            "hashing": {
                "comparison": {
                    "type": "numeric",
                    "thresholdDistance": 2.5,
                    "resolution": 3,
                    "fractional_precision": 1,
                },
                "strategy": {"bitsPerToken": 5},
                "hash": {"type": "blakeHash"},
            },
        },
        {
            "identifier": "dob",
            "format": {"type": "date", "format": "%d/%m/%Y"},
            "hashing": {"comparison": {"type": "ngram", "n": 1}, "strategy": {"bitsPerToken": 8}},
        },
        {
            "identifier": "sex",
            "format": {"type": "enum", "values": ["m", "f"]},
            "hashing": {"comparison": {"type": "exact"}, "strategy": {"bitsPerToken": 30}},
        },
    ],
}


def _with(change) -> dict:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


def test_every_supported_setting_is_read() -> None:
    schema = parse_clkhash_schema(BASE)
    assert isinstance(schema, ClkhashSchema)
    assert schema.bits == 1024 and schema.xor_folds == 0 and schema.hash_bits == 1024
    assert (schema.kdf_hash, schema.kdf_salt, schema.kdf_info, schema.key_size) == (
        "SHA512",
        b"salt",
        b"info",
        32,
    )
    assert schema.identifiers == ["id", "name", "postcode", "age", "dob", "sex"]
    ident, name, postcode, age, dob, sex = schema.features
    assert ident.ignored and ident.format is None
    assert name.format == StringFormat(encoding="utf-16", case="lower", min_length=1, max_length=30)
    assert name.encoding == "utf-16"
    assert name.comparison == NgramComparison(n=3, positional=True)
    assert (name.strategy, name.k) == ("bitsPerFeature", 100)
    assert (name.hash_type, name.prevent_singularity) == ("doubleHash", True)
    assert (name.missing_sentinel, name.missing_replacement) == ("N/A", "")
    assert postcode.format == StringFormat(pattern="[0-9]{4}")
    assert postcode.comparison == ExactComparison()
    assert age.format == IntegerFormat(minimum=0, maximum=130)
    assert age.comparison == NumericComparison(2.5, 3, 1)
    assert age.comparison.distance_interval == 25
    assert age.encoding == "utf-8" and age.hash_type == "blakeHash"
    assert dob.format == DateFormat("%d/%m/%Y")
    assert sex.format == EnumFormat(frozenset({"m", "f"}))
    assert sex.missing_sentinel is None


def test_defaults() -> None:
    doc = {
        "version": 3,
        "clkConfig": {"l": 64, "kdf": {"type": "HKDF"}, "xor_folds": 2, "xorFolds": 0},
        "features": [
            {
                "identifier": "a",
                "format": {"type": "string"},
                "hashing": {
                    "comparison": {"type": "ngram", "n": 2},
                    "strategy": {"bitsPerToken": 1},
                },
            }
        ],
    }
    schema = parse_clkhash_schema(doc)
    assert (schema.kdf_hash, schema.kdf_salt, schema.kdf_info, schema.key_size) == (
        "SHA256",
        None,
        None,
        64,
    )
    assert schema.xor_folds == 2 and schema.hash_bits == 256
    (feature,) = schema.features
    assert feature.format == StringFormat()
    assert feature.comparison == NgramComparison(2, positional=False)
    assert feature.hash_type == "blakeHash" and not feature.prevent_singularity


def test_a_fully_described_feature_marked_ignored_is_ignored() -> None:
    doc = _with(lambda d: d["features"][2].update(ignored=True))
    assert parse_clkhash_schema(doc).features[2].ignored


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(BASE))
    assert load_clkhash_schema(path).source == str(path)


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_clkhash_schema(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: the clkhash schema is not valid JSON"):
        load_clkhash_schema(bad)


def _strategy_foo(d: dict) -> None:
    d["features"][3]["hashing"]["strategy"] = {"foo": 3}


def _ascii_sentinel(d: dict) -> None:
    d["features"][2]["format"]["encoding"] = "ascii"
    d["features"][2]["hashing"]["missingValue"] = {"sentinel": "é"}


REFUSED = [
    (lambda d: d.update(version=2), r"^s\.json: version: schema version 2 is not supported"),
    (lambda d: d.update(version=True), "version: schema version True"),
    (lambda d: d.update(extra=1), r"extra: is not supported here; supported: clkConfig"),
    (lambda d: d.pop("features"), r"\(top level\): 'features' is required"),
    (lambda d: d.update(features=[]), "features: must be a non-empty list"),
    (lambda d: d["clkConfig"].update(l=0), r"clkConfig\.l: must be >= 1, got 0"),
    (lambda d: d["clkConfig"].update(l=1000.0), r"clkConfig\.l: must be a whole number"),
    (lambda d: d["clkConfig"].update(l=1 << 25), r"clkConfig\.l: .* more than the 16777216"),
    (lambda d: d["clkConfig"].update(l=1000), r"clkConfig\.l: blakeHash \(feature 'postcode'\)"),
    (lambda d: d["clkConfig"].update(xorFolds=1), r"clkConfig\.xorFolds: clkhash 0\.18\.3 ignores"),
    (lambda d: d["clkConfig"].update(xor_folds=-1), r"clkConfig\.xor_folds: must be >= 0"),
    (lambda d: d["clkConfig"]["kdf"].update(type="legacy"), r"kdf\.type: 'legacy' is not supp"),
    (lambda d: d["clkConfig"]["kdf"].update(hash="SHA1"), r"kdf\.hash: 'SHA1' is not supported"),
    (lambda d: d["clkConfig"]["kdf"].update(salt=7), r"kdf\.salt: must be a string"),
    (lambda d: d["clkConfig"]["kdf"].update(salt="abc"), r"kdf\.salt: is not valid base64"),
    (lambda d: d["clkConfig"]["kdf"].update(keySize=65), r"kdf\.keySize: blakeHash .* at most 64"),
    (lambda d: d["clkConfig"]["kdf"].update(keySize=4096, hash="SHA256"), r"kdf\.keySize: "),
    (
        _strategy_foo,
        r"features\[3\]\.hashing\.strategy \(feature 'age'\): 'foo' is not supported; "
        r"supported: bitsPerToken, bitsPerFeature",
    ),
    (
        lambda d: d["features"][3]["hashing"].update(
            strategy={"bitsPerToken": 1, "bitsPerFeature": 2}
        ),
        "must have exactly one of bitsPerToken, bitsPerFeature",
    ),
    (
        lambda d: d["features"][3]["hashing"].update(strategy={"bitsPerToken": 0}),
        r"strategy\.bitsPerToken \(feature 'age'\): must be from 1 to 65536, got 0",
    ),
    (
        lambda d: d["features"][2]["hashing"]["comparison"].update(type="qgram"),
        r"features\[2\]\.hashing\.comparison\.type \(feature 'postcode'\): 'qgram' is not supp",
    ),
    (
        lambda d: d["features"][1]["hashing"]["comparison"].update(n=0),
        r"comparison\.n \(feature 'name'\): must be from 1",
    ),
    (
        lambda d: d["features"][1]["hashing"]["comparison"].update(positional="yes"),
        r"comparison\.positional \(feature 'name'\): must be true or false",
    ),
    (
        lambda d: d["features"][3]["hashing"]["comparison"].update(fractionalPrecision=2),
        r"comparison\.fractionalPrecision \(feature 'age'\): .* rename it to "
        r"'fractional_precision'",
    ),
    (
        lambda d: d["features"][3]["hashing"]["comparison"].update(thresholdDistance=0.01),
        r"comparison\.thresholdDistance \(feature 'age'\): rounds to 0",
    ),
    (
        lambda d: d["features"][3]["hashing"]["comparison"].update(thresholdDistance=-1),
        r"thresholdDistance \(feature 'age'\): must be a number > 0",
    ),
    (
        lambda d: d["features"][3]["hashing"]["comparison"].update(resolution=0),
        r"comparison\.resolution \(feature 'age'\): must be from 1",
    ),
    (
        lambda d: d["features"][3]["hashing"].update(hash={"type": "md5Hash"}),
        r"hashing\.hash\.type \(feature 'age'\): 'md5Hash' is not supported; supported: blake",
    ),
    (
        lambda d: d["features"][3]["hashing"].update(
            hash={"type": "blakeHash", "prevent_singularity": True}
        ),
        r"hash\.prevent_singularity \(feature 'age'\): is not supported here",
    ),
    (
        lambda d: d["features"][3]["hashing"].update(weight=2),
        r"hashing\.weight \(feature 'age'\): is not supported here",
    ),
    (
        lambda d: d["features"][1]["hashing"].update(missingValue={"replaceWith": "x"}),
        r"missingValue \(feature 'name'\): 'sentinel' is required",
    ),
    (
        _ascii_sentinel,
        r"missingValue\.sentinel \(feature 'postcode'\): cannot be encoded as ascii",
    ),
    (
        lambda d: d["features"][1]["format"].update(encoding="latin-1"),
        r"format\.encoding \(feature 'name'\): 'latin-1' is not supported",
    ),
    (
        lambda d: d["features"][1]["format"].update(case="title"),
        r"format\.case \(feature 'name'\): 'title' is not supported",
    ),
    (
        lambda d: d["features"][1]["format"].update(pattern="a+"),
        r"format\.case \(feature 'name'\): is not supported here",
    ),
    (
        lambda d: d["features"][2]["format"].update(pattern="(unclosed"),
        r"format\.pattern \(feature 'postcode'\): is not a valid regular expression",
    ),
    (
        lambda d: d["features"][4]["format"].update(desiredFormat="%Y"),
        r"format\.desiredFormat \(feature 'dob'\): clkhash 0\.18\.3 always hashes dates",
    ),
    (
        lambda d: d["features"][4]["format"].pop("format"),
        r"features\[4\]\.format \(feature 'dob'\): 'format' is required",
    ),
    (
        lambda d: d["features"][5]["format"].update(values=["m", 1]),
        r"format\.values \(feature 'sex'\): must be a list of strings",
    ),
    (
        lambda d: d["features"][5]["format"].update(type="float"),
        r"format\.type \(feature 'sex'\): 'float' is not supported; supported: string, integer",
    ),
    (lambda d: d["features"][5].pop("hashing"), r"features\[5\] \(feature 'sex'\): 'hashing'"),
    (lambda d: d["features"][0].update(extra=1), r"features\[0\]\.extra \(feature 'id'\)"),
    (lambda d: d["features"][0].update(identifier=3), r"features\[0\]\.identifier: must be a str"),
    (lambda d: d["features"].append("name"), r"features\[6\]: must be an object"),
    (
        lambda d: d["features"][1]["hashing"].update(
            hash={"type": "doubleHash", "prevent_singularity": 1}
        ),
        r"hash\.prevent_singularity \(feature 'name'\): must be true or false",
    ),
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
def test_unsupported_schemas_are_refused_with_the_path(change, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_clkhash_schema(_with(change), source="s.json")


def test_prevent_singularity_needs_two_bits() -> None:
    doc = {
        "version": 3,
        "clkConfig": {"l": 1, "kdf": {"type": "HKDF"}},
        "features": [
            {
                "identifier": "a",
                "format": {"type": "string"},
                "hashing": {
                    "comparison": {"type": "exact"},
                    "strategy": {"bitsPerToken": 1},
                    "hash": {"type": "doubleHash", "prevent_singularity": True},
                },
            }
        ],
    }
    with pytest.raises(ConfigError, match="at least 2 bits"):
        parse_clkhash_schema(doc)
    doc["features"][0]["hashing"]["hash"]["prevent_singularity"] = False
    assert parse_clkhash_schema(doc).bits == 1
