"""CLK encoding: per-field keys, tokens, and bit-packed Bloom-filter CLKs of standardised records.

The wire format of a CLK batch is documented in :mod:`oda_fed.encoding.clk`.
"""

from oda_fed.encoding.clk import encode_records, popcount
from oda_fed.encoding.fields import FieldEncoding, default_field_encoding
from oda_fed.encoding.keys import MIN_SECRET_BYTES, derive_field_keys
from oda_fed.encoding.tokens import ngrams, tokens

__all__ = [
    "MIN_SECRET_BYTES",
    "FieldEncoding",
    "default_field_encoding",
    "derive_field_keys",
    "encode_records",
    "ngrams",
    "popcount",
    "tokens",
]
