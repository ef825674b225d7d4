"""Many strings as one flat array of code points, for checks and n-grams without Python loops.

:class:`CodePoints` holds a batch of values as ``uint32`` code points one value after another,
with offsets, built from Python strings in one ``join`` and one encode. The checks here answer a
question for every value at once (are all its code points in a set? is it a plain decimal
integer?) with whole-array numpy operations; :func:`oda_fed.encoding.kernels.ngram_keys` cuts
the values into n-gram keys in parallel.

A lone surrogate (which no strict UTF codec encodes) survives the round trip, so the code points
are exactly the string's, and checks can see it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

from oda_fed.encoding import kernels

if TYPE_CHECKING:
    import pyarrow as pa

# Decimal strings of up to 18 digits fit int64 without overflow.
MAX_DECIMAL_DIGITS = 18
MAX_CODE_POINT = 0x10FFFF


@dataclass(frozen=True)
class CodePoints:
    """A batch of strings as code points: value ``v`` is ``data[offsets[v]:offsets[v + 1]]``.

    Parameters
    ----------
    data
        ``uint32``: every value's code points, one value after another.
    offsets
        ``int64[u + 1]``, starting at 0 and non-decreasing.

    Examples
    --------
    >>> points = CodePoints.from_strings(["ab", "", "é"])
    >>> points.lengths.tolist(), points.data.tolist()
    ([2, 0, 1], [97, 98, 233])
    >>> points.string(2)
    'é'
    """

    data: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        # The kernels read these arrays without checks, so their form is checked here, once.
        data, offsets = self.data, self.offsets
        if data.dtype != np.uint32 or data.ndim != 1 or not data.flags.c_contiguous:
            raise ValueError("code points must be a C-contiguous uint32 vector")
        if (
            offsets.dtype != np.int64
            or offsets.ndim != 1
            or len(offsets) == 0
            or offsets[0] != 0
            or offsets[-1] != len(data)
            or (np.diff(offsets) < 0).any()
        ):
            raise ValueError("offsets must be non-decreasing int64 from 0 to the number of points")

    @classmethod
    def from_strings(cls, values: Sequence[str]) -> CodePoints:
        """The code points of ``values`` (each a ``str``)."""
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        offsets = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # One join and one encode instead of a call per value; "surrogatepass" keeps lone
        # surrogates as their own code points instead of failing.
        raw = "".join(values).encode("utf-32-le", "surrogatepass")
        return cls(np.frombuffer(raw, dtype=np.uint32), offsets)

    @classmethod
    def of(cls, values: Sequence[str]) -> CodePoints:
        """The code points of ``values``: from their Arrow buffers when they are
        :class:`ArrowText`, else from the strings."""
        if isinstance(values, ArrowText):
            return values.code_points()
        return cls.from_strings(values)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """``int64[u]``: each value's length in code points."""
        return np.diff(self.offsets)

    def string(self, v: int) -> str:
        """Value ``v`` as a Python string."""
        chunk = self.data[self.offsets[v] : self.offsets[v + 1]]
        return chunk.tobytes().decode("utf-32-le", "surrogatepass")

    def all_allowed(self, allowed: np.ndarray) -> np.ndarray:
        """``bool[u]``: whether every code point ``c`` of each value has ``allowed[c]`` (a
        code point past the end of the table is not allowed; an empty value passes)."""
        out = np.empty(len(self), dtype=np.bool_)
        kernels.all_allowed(self.data, self.offsets, allowed, out)
        return out

    def all_in(self, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
        """``bool[u]``: whether every code point of each value lies in one of the inclusive
        ``ranges`` (true for an empty value).

        Examples
        --------
        >>> CodePoints.from_strings(["0123", "12a", ""]).all_in([(48, 57)]).tolist()
        [True, False, True]
        """
        return self.all_allowed(allowed_table(ranges))

    def decimals(self) -> tuple[np.ndarray, np.ndarray]:
        """``(plain, numbers)``: which values are plain decimal integers, and their values.

        A plain value is 1 to 18 ASCII digits with no leading zero (``"0"`` itself is plain):
        exactly the strings that ``str(int(value, 10))`` gives back unchanged and that fit
        ``int64``. ``numbers`` (``int64[u]``) is 0 for the others.

        Examples
        --------
        >>> plain, numbers = CodePoints.from_strings(["42", "007", "0", "+1", ""]).decimals()
        >>> plain.tolist(), numbers.tolist()
        ([True, False, True, False, False], [42, 0, 0, 0, 0])
        """
        plain = np.empty(len(self), dtype=np.bool_)
        numbers = np.empty(len(self), dtype=np.int64)
        kernels.plain_decimals(self.data, self.offsets, MAX_DECIMAL_DIGITS, plain, numbers)
        return plain, numbers


def allowed_table(ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """A lookup table of code points: ``table[c]`` is true when ``c`` lies in one of the
    inclusive ``ranges``; it ends after the highest allowed code point.

    Examples
    --------
    >>> allowed_table([(1, 2)]).tolist()
    [False, True, True]
    """
    top = max((hi for lo, hi in ranges if lo <= hi), default=-1)
    table = np.zeros(min(top, MAX_CODE_POINT) + 1, dtype=np.bool_)
    for lo, hi in ranges:
        table[lo : hi + 1] = True
    return table


class ArrowText(Sequence[str]):
    """Distinct text values held in an Arrow string array, read as Python strings only when a
    value is asked for.

    Checking and cutting values into n-grams works on their code points
    (:meth:`code_points`), which ASCII text gives straight from Arrow's buffers: for a column of
    distinct ids, making a Python string of each value costs more than encoding it.

    Examples
    --------
    >>> import pyarrow as pa
    >>> text = ArrowText(pa.array(["ab", "", "zoë"]))
    >>> len(text), text[2], text.code_points().lengths.tolist()
    (3, 'zoë', [2, 0, 3])
    """

    def __init__(self, array: pa.Array) -> None:
        if array.null_count:
            raise ValueError("ArrowText holds values, not missing cells")
        self._array = array
        self._strings: list[str] | None = None

    def __len__(self) -> int:
        return len(self._array)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self.strings()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.strings())

    def strings(self) -> list[str]:
        """Every value as a Python string (made once)."""
        if self._strings is None:
            self._strings = self._array.to_pylist()
        return self._strings

    def code_points(self) -> CodePoints:
        """The values' code points: ASCII bytes are their code points, so ASCII text needs
        only its offsets and bytes widened; other text goes through Python strings."""
        import pyarrow as pa

        array = self._array
        _, offsets, data = array.buffers()
        wide = pa.types.is_large_string(array.type)
        kind = np.dtype(np.int64 if wide else np.int32)
        ends = np.frombuffer(
            offsets, dtype=kind, count=len(array) + 1, offset=array.offset * kind.itemsize
        ).astype(np.int64)
        raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        raw = raw[ends[0] : ends[-1]]
        if raw.size and int(raw.max()) >= 0x80:
            return CodePoints.from_strings(self.strings())
        return CodePoints(raw.astype(np.uint32), ends - ends[0])
