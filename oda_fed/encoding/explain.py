"""Explain a project's encoding: what each field contributes and how full the filter will be.

A Bloom filter that is too full stops telling records apart (every pair looks similar); one that is
too empty wastes its length and lets chance collisions weigh more. The fill is estimated from
typical values of each field type, or measured on a sample of real records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from oda_fed.encoding.fields import FieldEncoding
from oda_fed.encoding.tokens import tokens

#: Standardised values typical of each field type, used to estimate tokens per value.
TYPICAL: Mapping[str, tuple[str, ...]] = {
    "name": ("john", "elizabeth", "smith", "oconnor", "mohammed", "lee", "sarah", "taylor"),
    "date": ("1980-12-31", "2004-03-07"),
    "date_of_birth": ("1980-12-31", "2004-03-07"),
    "postcode": ("LS6 2AB", "M1 1AE", "HD10 3XY"),
    "sex": ("m", "f"),
    "nhs_number": ("4010232137",),
    "uprn": ("100023336956",),
    "text": ("flat 3 41 mill road", "12 acacia avenue"),
    "free_text": ("flat 3 41 mill road", "12 acacia avenue"),
    "address": ("flat 3 41 mill road", "12 acacia avenue"),
}

#: Fill outside this range gets a warning.
FILL_LOW, FILL_HIGH = 0.2, 0.6


@dataclass(frozen=True)
class FieldReport:
    encoding: FieldEncoding
    tokens_per_value: float
    bits_inserted: float  # tokens x k: hash insertions a typical value makes


@dataclass(frozen=True)
class Explanation:
    bits: int
    fields: list[FieldReport]
    expected_fill: float
    measured_fill: float | None
    warnings: list[str]


def expected_fill(insertions: float, bits: int) -> float:
    """Expected fraction of set bits after ``insertions`` uniform insertions into ``bits`` bits.

    Examples
    --------
    >>> round(expected_fill(1024, 1024), 3)
    0.632
    """
    return 1.0 - math.pow(1.0 - 1.0 / bits, insertions)


def _tokens_per_value(encoding: FieldEncoding) -> float:
    samples = TYPICAL.get(encoding.type, TYPICAL["text"])
    return float(np.mean([len(tokens(v, encoding)) for v in samples]))


def explain(
    fields: Sequence[FieldEncoding], *, bits: int, sample: np.ndarray | None = None
) -> Explanation:
    """Report each field's share of the filter and the expected (and measured) fill.

    Parameters
    ----------
    fields
        The project's derived field encodings.
    bits
        CLK length.
    sample
        Optional CLKs encoded from real records; their mean fill is reported beside the estimate.

    Examples
    --------
    >>> from oda_fed.encoding import default_field_encoding
    >>> e = explain([default_field_encoding("surname", "name")], bits=1024)
    >>> 0 < e.expected_fill < 1
    True
    """
    reports = []
    for enc in fields:
        per_value = _tokens_per_value(enc)
        reports.append(FieldReport(enc, per_value, per_value * enc.k))
    fill = expected_fill(sum(r.bits_inserted for r in reports), bits)
    measured = None
    if sample is not None and len(sample):
        measured = float(np.unpackbits(sample.view(np.uint8), axis=1).mean())
    warnings = []
    for label, value in (("expected", fill), ("measured", measured)):
        if value is None:
            continue
        if value > FILL_HIGH:
            warnings.append(
                f"{label} fill {value:.0%} is too full (above {FILL_HIGH:.0%}): dissimilar records "
                "will look alike. Lower some weights or bits_per_token, or raise linkage.bits."
            )
        elif value < FILL_LOW:
            warnings.append(
                f"{label} fill {value:.0%} is too empty (below {FILL_LOW:.0%}): chance collisions "
                "weigh more. Raise weights or bits_per_token, or lower linkage.bits."
            )
    heavy = [r for r in reports if r.bits_inserted > 0.5 * sum(x.bits_inserted for x in reports)]
    if len(reports) > 1 and heavy:
        warnings.append(
            f"field '{heavy[0].encoding.name}' makes over half of all insertions; an error in it "
            "alone can sink a true match. Consider a lower weight."
        )
    return Explanation(
        bits=bits, fields=reports, expected_fill=fill, measured_fill=measured, warnings=warnings
    )
