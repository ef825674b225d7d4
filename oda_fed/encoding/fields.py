"""How each linkage field is encoded into a CLK: token size, bits per token, weight."""

from __future__ import annotations

import math
from dataclasses import dataclass

from oda_fed.errors import ConfigError
from oda_fed.standardise import FIELD_TYPE_ALIASES, FIELD_TYPES, FieldType

#: Field types whose tokens are n-grams (of the value, or of the canonical postcode), so
#: :attr:`FieldEncoding.ngram` changes them; the others are dates or whole values.
NGRAM_TYPES: frozenset[str] = frozenset({"name", "postcode", "address", "free_text", "text"})


@dataclass(frozen=True)
class FieldEncoding:
    """The encoding of one linkage field.

    Parameters
    ----------
    name
        The project's field name, e.g. ``"first_name"``. It names the field's key and
        namespaces its tokens.
    type
        The field type, which decides the standardiser and the tokens.
    ngram
        n of the n-gram tokens of name, text and postcode fields; unused for the others.
    bits_per_token
        How many bit positions each token sets before weighting.
    weight
        Multiplies ``bits_per_token``; the product, rounded half up, is :attr:`k`. A weight of
        0 leaves the field out of the CLK.

    Raises
    ------
    ConfigError
        When the name is empty, the type unknown, or a number out of range.

    Examples
    --------
    >>> FieldEncoding("last_name", "name", weight=1.5).k
    30
    """

    name: str
    type: FieldType
    ngram: int = 2
    bits_per_token: int = 20
    weight: float = 1.0

    def __post_init__(self) -> None:
        where = f"linkage field {self.name!r}"
        if not self.name:
            raise ConfigError("a linkage field has an empty name")
        if self.type not in FIELD_TYPES:
            raise ConfigError(f"{where}: type {self.type!r} is not one of {', '.join(FIELD_TYPES)}")
        if isinstance(self.ngram, bool) or not isinstance(self.ngram, int) or self.ngram < 1:
            raise ConfigError(f"{where}: ngram must be a whole number >= 1, got {self.ngram!r}")
        if (
            isinstance(self.bits_per_token, bool)
            or not isinstance(self.bits_per_token, int)
            or self.bits_per_token < 1
        ):
            raise ConfigError(
                f"{where}: bits_per_token must be a whole number >= 1, got {self.bits_per_token!r}"
            )
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ConfigError(f"{where}: weight must be a finite number >= 0, got {self.weight!r}")

    @property
    def uses_ngrams(self) -> bool:
        """Whether :attr:`ngram` shapes this field's tokens (name, postcode, address, text).

        Examples
        --------
        >>> FieldEncoding("dob", "date_of_birth").uses_ngrams
        False
        """
        return self.type in NGRAM_TYPES

    @property
    def k(self) -> int:
        """Bit positions set per token: ``bits_per_token * weight``, rounded half up."""
        return math.floor(self.bits_per_token * self.weight + 0.5)


# Per-type defaults, with the tokens of a typical value and the positions they set (tokens x k):
#
#   type        ngram  k   typical tokens                          positions
#   name        2      20  7 ("_smith_" has 6 bigrams)               ~140
#   date        -      30  4 (year, day, month, {day, month})         120
#   postcode    2      15  9 (8 bigrams of "_LS6 2AB_" + outward)     135
#   sex         -      10  1                                           10
#   nhs_number  -      60  1                                           60
#   text        2      10  one per distinct bigram                   varies
#
# First name, last name, date of birth, sex and postcode set ~545 positions in 1024 bits, so
# 1 - exp(-545 / 1024), about 41 %, of the filter is set. Dates get more bits per token than names
# because they have fewer tokens yet tell people apart as well; sex gets few because it tells
# little; an NHS number is one exact token that nearly identifies a person on its own.
_DEFAULTS: dict[FieldType, tuple[int, int]] = {
    "name": (2, 20),
    "date_of_birth": (2, 30),
    "postcode": (2, 15),
    "address": (2, 10),
    "sex": (2, 10),
    "nhs_number": (2, 60),
    "uprn": (2, 60),
    "free_text": (2, 10),
}
# The deprecated names share their replacement's defaults.
_DEFAULTS.update({alias: _DEFAULTS[name] for alias, name in FIELD_TYPE_ALIASES.items()})


def default_field_encoding(name: str, type: FieldType, *, weight: float = 1.0) -> FieldEncoding:
    """Return the default encoding of a field of the given type.

    The defaults (see the table in this module's source) make a record of first name, last
    name, date of birth, sex and postcode fill about 40 % of a 1024-bit CLK.

    Parameters
    ----------
    name
        The project's field name.
    type
        The field type.
    weight
        Scales the type's default bits per token.

    Returns
    -------
    FieldEncoding

    Examples
    --------
    >>> default_field_encoding("dob", "date")
    FieldEncoding(name='dob', type='date', ngram=2, bits_per_token=30, weight=1.0)
    """
    if type not in _DEFAULTS:
        raise ConfigError(f"linkage field {name!r}: type {type!r} is not one of {FIELD_TYPES}")
    ngram, bits_per_token = _DEFAULTS[type]
    return FieldEncoding(
        name=name, type=type, ngram=ngram, bits_per_token=bits_per_token, weight=weight
    )
