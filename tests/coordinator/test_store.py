"""The coordinator store: idempotent chunked uploads, refusals leave nothing behind, restart-safe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oda_fed.coordinator.store import CLKS, Chunk, Store
from oda_fed.errors import ProtocolError


def chunk(
    index: int, *, total_chunks: int = 2, records: int = 3, total: int = 6, fill: int = 1
) -> Chunk:
    data = np.full((records, 2), fill, dtype="<u8").tobytes()
    return Chunk(
        chunk_index=index,
        total_chunks=total_chunks,
        first_ref=index * 3,
        records=records,
        total_records=total,
        data=data,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "db.sqlite")
    s.create_round(round_id="r1", project="sha256:" + "0" * 64, partners=["a", "b"])
    yield s
    s.close()


def test_upload_completes_when_every_chunk_is_in(store: Store) -> None:
    state = store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    assert not state.complete and state.stored_chunks == (0,)
    state = store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(1, fill=2))
    assert state.complete and state.records_stored == 6
    clks = store.load_clks(round_id="r1", partner="a", words=2)
    assert clks.shape == (6, 2) and clks[0, 0] == 1 and clks[5, 1] == 2


def test_same_chunk_twice_is_stored_once(store: Store) -> None:
    store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    state = store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    assert state.stored_chunks == (0,) and state.records_stored == 3


def test_conflicting_chunk_is_refused_and_changes_nothing(store: Store) -> None:
    store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    with pytest.raises(ProtocolError, match="different content"):
        store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0, fill=9))
    assert store.load_clks(round_id="r1", partner="a", words=2)[0, 0] == 1


def test_changed_totals_are_refused(store: Store) -> None:
    store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    with pytest.raises(ProtocolError, match="started with"):
        store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(1, total=9))
    state = store.upload_state(round_id="r1", partner="a", upload=CLKS)
    assert state.stored_chunks == (0,)


def test_first_chunk_refused_leaves_no_upload_row(store: Store) -> None:
    bad = Chunk(
        chunk_index=0, total_chunks=1, first_ref=1, records=3, total_records=3, data=b"\0" * 48
    )
    with pytest.raises(ProtocolError, match="contiguous"):
        store.store_chunk(round_id="r1", partner="b", upload=CLKS, chunk=bad)
    assert store.upload_state(round_id="r1", partner="b", upload=CLKS) is None


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    s = Store(path)
    s.create_round(round_id="r1", project="sha256:" + "0" * 64, partners=["a", "b"])
    s.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    s.close()
    again = Store(path)
    assert again.round("r1").state == "open"
    assert again.upload_state(round_id="r1", partner="a", upload=CLKS).stored_chunks == (0,)
    assert again.pending_deliveries(partner="b") == [("r1", "encode_and_upload")]
    again.close()


def test_tokens_are_stored_with_their_chunk_and_read_in_ref_order(store: Store) -> None:
    import json

    for index, tokens in enumerate((["aa", None, "bb"], ["cc", "dd", None])):
        blob = json.dumps({"nhs": tokens}).encode()
        store.store_chunk(
            round_id="r1",
            partner="a",
            upload=CLKS,
            chunk=Chunk(**{**chunk(index).__dict__, "tokens": blob}),
        )
    assert store.load_tokens(round_id="r1", partner="a", field="nhs") == [
        "aa",
        None,
        "bb",
        "cc",
        "dd",
        None,
    ]


def keyed(index: int, keys: list[bytes], **kwargs) -> Chunk:
    return Chunk(**{**chunk(index, **kwargs).__dict__, "record_keys": b"".join(keys)})


def test_record_keys_are_stored_with_their_chunk_and_read_in_ref_order(store: Store) -> None:
    keys = [bytes([i]) * 32 for i in range(6)]
    # Out of order, as a resumed upload may send them.
    store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=keyed(1, keys[3:]))
    state = store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[:3]))
    assert state.complete
    assert store.load_record_keys(round_id="r1", partner="a") == [k.hex() for k in keys]
    assert store.load_record_keys(round_id="r1", partner="b") == []
    # The same chunk again is fine; the same CLKs with other record keys contradict it.
    store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[:3]))
    with pytest.raises(ProtocolError, match="different content"):
        store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[3:]))


def test_a_record_key_repeated_across_chunks_refuses_the_last_chunk(store: Store) -> None:
    keys = [bytes([i]) * 32 for i in range(5)] + [b"\0" * 32]
    store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[:3]))
    with pytest.raises(ProtocolError, match="repeats 1 record key"):
        store.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=keyed(1, keys[3:]))
    state = store.upload_state(round_id="r1", partner="a", upload=CLKS)
    assert state.stored_chunks == (0,) and not state.complete


def test_a_database_from_before_record_keys_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    Store(path).close()
    # What an earlier version wrote: the same tables without the columns added since.
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE chunks DROP COLUMN record_keys")
    db.execute("ALTER TABLE rounds DROP COLUMN linkage")
    db.execute(
        "INSERT INTO rounds (round_id, seq, project, state, created, updated) "
        "VALUES ('r0', 1, 'p', 'closed', 'then', 'then')"
    )
    db.commit()
    db.close()
    s = Store(path)
    assert s.round("r0").linkage == ""
    s.create_round(round_id="r1", project="p", partners=["a"])
    one = keyed(0, [b"\1" * 32], records=1, total_chunks=1, total=1)
    assert s.store_chunk(round_id="r1", partner="a", upload=CLKS, chunk=one).complete
    assert s.load_record_keys(round_id="r1", partner="a") == [(b"\1" * 32).hex()]
    s.close()
