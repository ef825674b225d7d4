"""Distinct values in order of first appearance, as ``pandas.factorize`` gives them, by Arrow.

The encoders factorise text columns and integer keys on their hot paths. Arrow's hash kernel
does it as fast, without holding the GIL, and without pandas, whose import alone took a fifth of
``oda-fed encode --clkhash-schema``'s whole process. pyarrow's own conversions to and from NumPy
import pandas when it is installed, so integers cross through their buffers (Arrow's columnar
layout: a validity bitmap, then the values) instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


def factorize(values: np.ndarray | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, uniques)`` with ``uniques[codes] == values``, uniques in order of first
    appearance; a null's code is -1.

    ``values`` is an integer NumPy array, or an Arrow array of integers or text (columns as
    the CSV reader gives them). Text uniques come back as an object array of ``str``.

    Examples
    --------
    >>> codes, uniques = factorize(np.array([7, 3, 7], dtype=np.uint64))
    >>> codes.tolist(), uniques.tolist()
    ([0, 1, 0], [7, 3])
    >>> import pyarrow as pa
    >>> codes, uniques = factorize(pa.array(["b", None, "a", "b"]))
    >>> codes.tolist(), uniques.tolist()
    ([0, -1, 1, 0], ['b', 'a'])
    """
    import pyarrow as pa

    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu":
            raise TypeError(f"factorize takes integers or Arrow arrays, not {values.dtype}")
        values = np.ascontiguousarray(values)
        array = pa.Array.from_buffers(
            pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)]
        )
        codes, dictionary = dictionary_codes(array)
    else:
        codes, dictionary = dictionary_codes(values)
    if pa.types.is_integer(dictionary.type):
        return codes, _integers(dictionary)
    uniques = np.empty(len(dictionary), dtype=object)
    uniques[:] = dictionary.to_pylist()
    return codes, uniques


def dictionary_codes(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """``(codes, dictionary)``: :func:`factorize` of an Arrow array, its distinct values left
    as an Arrow array (a text column's become Python strings only if asked for).

    Examples
    --------
    >>> import pyarrow as pa
    >>> codes, dictionary = dictionary_codes(pa.array(["b", None, "a", "b"]))
    >>> codes.tolist(), dictionary.to_pylist()
    ([0, -1, 1, 0], ['b', 'a'])
    """
    import pyarrow as pa

    # One array, so that every chunk's codes index one dictionary.
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    encoded = _dictionary_encode(array)
    codes = _integers(encoded.indices).astype(np.int64)
    if encoded.indices.null_count:
        codes[~_valid(encoded.indices)] = -1
    return codes, encoded.dictionary


def _dictionary_encode(array: pa.Array) -> pa.DictionaryArray:
    """``array.dictionary_encode()``, without importing ``pyarrow.compute``.

    pyarrow's method imports that module first, and building its Python wrapper of every compute
    function took 0.04 s, a fortieth of ``oda-fed encode --clkhash-schema``. The function itself
    lives in ``pyarrow._compute``, which the module wraps.
    """
    try:
        from pyarrow._compute import DictionaryEncodeOptions, call_function
    except ImportError:  # a pyarrow that has moved it: the public way
        return array.dictionary_encode()
    return call_function("dictionary_encode", [array], DictionaryEncodeOptions("mask"))


def _integers(array: pa.Array) -> np.ndarray:
    """An integer array's values (a null's slot holds anything) from its data buffer."""
    dtype = _DTYPES[str(array.type)]
    data = array.buffers()[1]
    if data is None:  # no values at all
        return np.zeros(len(array), dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _valid(array: pa.Array) -> np.ndarray:
    """Which slots of ``array`` hold a value, from its validity bitmap."""
    bitmap = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    bits = np.unpackbits(bitmap, bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)


_DTYPES = {
    name: np.dtype(name)
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
