"""CLK encoding: per-field keys, tokens, and bit-packed Bloom-filter CLKs of standardised records.

The wire format of a CLK batch is documented in :mod:`oda_fed.encoding.clk`. clkhash v3 linkage
schemas are read by :func:`load_clkhash_schema` and encoded, bit for bit as clkhash 0.18.3 does, by
:func:`encode_clkhash` (:mod:`oda_fed.encoding.clkhash`).
"""

from oda_fed.encoding.clk import ClkEncoder, encode_records, popcount
from oda_fed.encoding.clkhash import ClkhashEncoder, encode_clkhash
from oda_fed.encoding.clkhash_json import read_clkhash_json, write_clkhash_json
from oda_fed.encoding.clkhash_schema import ClkhashSchema, load_clkhash_schema
from oda_fed.encoding.fields import FieldEncoding, default_field_encoding
from oda_fed.encoding.keys import MIN_SECRET_BYTES, derive_field_keys
from oda_fed.encoding.tokens import ngrams, tokens

__all__ = [
    "MIN_SECRET_BYTES",
    "ClkEncoder",
    "ClkhashEncoder",
    "ClkhashSchema",
    "FieldEncoding",
    "default_field_encoding",
    "derive_field_keys",
    "encode_clkhash",
    "encode_records",
    "load_clkhash_schema",
    "ngrams",
    "popcount",
    "read_clkhash_json",
    "tokens",
    "write_clkhash_json",
]
