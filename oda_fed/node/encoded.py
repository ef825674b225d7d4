"""What encoding a partner's file gives (:class:`EncodedSource`), and encoding a file with a
clkhash schema (:func:`encode_clkhash_file`).

The clkhash path reads with Arrow and imports neither pandas nor the project's models:
``oda-fed encode --clkhash-schema`` is timed as a whole process against clkhash's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oda_fed.encoding.clkhash import ClkhashEncoder
from oda_fed.encoding.kernels import use_jit_for
from oda_fed.node.reading import ReadOptions, count_rows, read_tables

if TYPE_CHECKING:
    from oda_fed.encoding.clkhash_schema import ClkhashSchema
    from oda_fed.encoding.evidence import Evidence

#: The formats :func:`~oda_fed.node.encode.write_encoded` writes.
FORMATS = ("npy", "arrow")

#: Called with (records done, records in the file).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EncodedSource:
    """A file's records as CLKs; the raw values are gone. Nothing here leaves the node but CLKs."""

    path: Path
    clks: np.ndarray  # uint64 (n, bits // 64), file order
    attributes: dict[str, list[str]]
    missing: dict[str, int]
    invalid: dict[str, int]
    # keyed tokens of exact identifiers the project marks keyed_token: field -> 32 bytes or None
    tokens: dict[str, list[bytes | None]]
    # field evidence, when the project links with method = "fields"
    evidence: Evidence | None = None
    # the extract's record ids (object array of str, file order); None: the row numbers
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.clks)

    @cached_property
    def record_ids(self) -> np.ndarray:
        """Each record's id (object array of ``str``, file order): the extract's id column, or
        its row number from 0 where the records have none (a clkhash schema declares none).

        Made when first asked for: writing clkhash's JSON needs no ids, and 300,000 of them
        cost a twentieth of a second.
        """
        if self.ids is not None:
            return self.ids
        numbers = np.empty(len(self.clks), dtype=object)
        numbers[:] = list(map(str, range(len(self.clks))))  # twice as fast as .astype(str)
        return numbers


def encode_clkhash_file(
    path: Path,
    *,
    schema: ClkhashSchema,
    secret: bytes | str,
    chunk_rows: int = 100_000,
    progress: Progress | None = None,
    read: ReadOptions | None = None,
) -> EncodedSource:
    """Encode ``path`` with a clkhash v3 schema, a chunk at a time, bit for bit as clkhash does.

    The header must name the schema's features in order; a record's id is its row number from
    0, the order of clkhash's output. Values are encoded as they are, without standardising, and
    no attribute, count or keyed token is kept: a clkhash schema declares none.

    Parameters
    ----------
    path
        The file to encode: CSV, Parquet or xlsx (see :func:`oda_fed.node.reading.read_tables`).
    schema
        The loaded schema (:func:`~oda_fed.encoding.load_clkhash_schema`); ``schema.bits`` is the
        CLK length, padded to whole 64-bit words in the result.
    secret
        The clkhash secret.
    chunk_rows
        Rows read and encoded at a time; the CLKs do not depend on it.
    progress
        Called with (records done, records in the file) after each chunk.
    read
        How to read ``path`` (format, encoding, delimiter, sheet); by default UTF-8 CSV, or
        as its suffix says.

    Raises
    ------
    InputDataError
        For a value the schema refuses, naming its row; nothing is returned.

    Examples
    --------
    >>> schema = load_clkhash_schema(Path("schema.json"))  # doctest: +SKIP
    >>> encoded = encode_clkhash_file(Path("people.csv"), schema=schema,
    ...                               secret="secret")  # doctest: +SKIP
    >>> encoded.clks.shape  # doctest: +SKIP
    (28, 16)
    """
    encoder = ClkhashEncoder(schema, secret=secret)  # one encoder: its caches carry across chunks
    words = -(-schema.bits // 64)
    # Counted for the progress bar (a query's rows cost the database a second pass); a count
    # of JIT_ROWS or more switches to the Numba kernels.
    total = count_rows(path, read) if progress is not None else 0
    use_jit_for(total)
    # Chunks are encoded in place while the count holds (it can be off: a quoted line end),
    # which spares a copy of every CLK and the fresh pages it would take.
    clks = np.zeros((total, words), dtype=np.uint64)
    spilled: list[np.ndarray] = []
    done = 0
    for table in read_tables(path, chunk_rows=chunk_rows, options=read):
        end = done + table.num_rows
        if spilled or end > total:
            spilled.append(encoder.encode(table, first_row=done))
        else:
            encoder.encode(table, first_row=done, out=clks[done:end])
        done = end
        if progress is not None:
            progress(done, max(total, done))
    if progress is not None and done < total:
        progress(done, done)  # the bar ends full when line ends inside values overcounted
    in_place = done - sum(len(part) for part in spilled)
    clks = np.concatenate([clks[:in_place], *spilled]) if spilled else clks[:done]
    return EncodedSource(
        path=Path(path),
        clks=clks,
        attributes={},
        missing={},
        invalid={},
        tokens={},
    )
