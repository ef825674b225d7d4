"""factorize: pandas.factorize's codes and order of first appearance, by Arrow, without pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oda_fed.encoding.distinct import factorize


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 40), max_size=60),
    st.sampled_from([np.int64, np.uint64, np.int32, np.uint32]),
    st.integers(0, 5),
)
def test_integers_factorize_as_pandas_does(values, dtype, start) -> None:
    array = np.array(values, dtype=dtype)[start:]  # an offset view as well as whole arrays
    codes, uniques = factorize(array)
    expected_codes, expected_uniques = pd.factorize(array)
    assert codes.dtype == np.int64 and uniques.dtype == array.dtype
    np.testing.assert_array_equal(codes, expected_codes)
    np.testing.assert_array_equal(uniques, expected_uniques)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["", "anna", "zoë", "ann", "b"])), max_size=40),
    st.integers(0, 3),
    st.integers(1, 4),
)
def test_text_with_nulls_in_slices_and_chunks_factorizes_as_pandas_does(values, start, chunk):
    array = pa.array(values, type=pa.string()).slice(start)
    chunked = pa.chunked_array(
        [array.slice(i, chunk) for i in range(0, len(array), chunk)] or [array], type=pa.string()
    )
    expected_codes, expected_uniques = pd.factorize(np.array(array.to_pylist(), dtype=object))
    for given_values in (array, chunked):
        codes, uniques = factorize(given_values)
        np.testing.assert_array_equal(codes, expected_codes)
        assert uniques.dtype == object and uniques.tolist() == list(expected_uniques)


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError, match="integers or Arrow arrays"):
        factorize(np.array([1.5, 2.5]))


def test_without_pyarrows_compute_core_it_takes_the_public_way(monkeypatch) -> None:
    import pyarrow.compute  # noqa: F401  (the public way's module, loaded before its core goes)

    monkeypatch.setitem(sys.modules, "pyarrow._compute", None)  # as if pyarrow had moved it
    codes, uniques = factorize(pa.array(["b", None, "a", "b"], type=pa.string()))
    assert codes.tolist() == [0, -1, 1, 0] and uniques.tolist() == ["b", "a"]


def test_it_never_imports_pandas() -> None:
    # pyarrow's own NumPy conversions import pandas; factorize must not use them. Nor does it
    # import pyarrow.compute (0.04 s of wrappers), which pyarrow's dictionary_encode method does.
    # The text column comes from Arrow's CSV reader, as in `oda-fed encode` (pa.array of a
    # Python list would import pandas itself).
    code = """if True:
        import io, sys, numpy as np, pyarrow as pa, pyarrow.csv as pcsv
        from oda_fed.encoding.distinct import factorize
        convert = pcsv.ConvertOptions(column_types={"x": pa.string()}, strings_can_be_null=True)
        table = pcsv.read_csv(io.BytesIO(b"x,y\\na,1\\n,2\\na,3\\n"), convert_options=convert)
        codes, uniques = factorize(table.column("x"))
        assert codes.tolist() == [0, -1, 0] and uniques.tolist() == ["a"], codes
        codes, uniques = factorize(np.array([3, 1, 3], dtype=np.uint64))
        assert codes.tolist() == [0, 1, 0] and uniques.tolist() == [3, 1]
        print("pandas" in sys.modules, "pyarrow.compute" in sys.modules)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
