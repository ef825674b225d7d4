"""The coordinator store: idempotent chunked uploads, refusals leave nothing behind, restart-safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import URL

from oda_fed.coordinator.chunks import Chunk
from oda_fed.coordinator.deliveries import Delivery, DeliveryKind
from oda_fed.coordinator.postgres import database_url
from oda_fed.coordinator.store import Store
from oda_fed.errors import ProtocolError
from oda_fed.transport.messages import AgreementKey, Upload, WrappedSecret, WrappedSecrets
from oda_fed.transport.protocol import RoundState

DATA = Path(__file__).resolve().parents[1] / "data"
LATER = datetime.now(UTC) + timedelta(days=1)
CLKS = Upload()


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
def where(tmp_path: Path, backend: str | None) -> Path | URL:
    """The store's SQLite file, or its PostgreSQL database: every test here runs on both."""
    return database_url(backend) if backend else tmp_path / "db.sqlite"


@pytest.fixture
def store(where: Path | URL) -> Store:
    s = Store(where)
    s.rounds.create(
        round_id="r1", project="sha256:" + "0" * 64, partners=["a", "b"], deadline=LATER
    )
    yield s
    s.close()


def test_upload_completes_when_every_chunk_is_in(store: Store) -> None:
    state = store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    assert not state.complete and state.stored_chunks == (0,)
    state = store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(1, fill=2))
    assert state.complete and state.records_stored == 6
    clks = store.uploads.clks(round_id="r1", partner="a", words=2)
    assert clks.shape == (6, 2) and clks[0, 0] == 1 and clks[5, 1] == 2


def test_same_chunk_twice_is_stored_once(store: Store) -> None:
    store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    state = store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    assert state.stored_chunks == (0,) and state.records_stored == 3


def test_conflicting_chunk_is_refused_and_changes_nothing(store: Store) -> None:
    store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    with pytest.raises(ProtocolError, match="different content"):
        store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0, fill=9))
    assert store.uploads.clks(round_id="r1", partner="a", words=2)[0, 0] == 1


def test_changed_totals_are_refused(store: Store) -> None:
    store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    with pytest.raises(ProtocolError, match="started with"):
        store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(1, total=9))
    state = store.uploads.state(round_id="r1", partner="a", upload=CLKS)
    assert state.stored_chunks == (0,)


def test_first_chunk_refused_leaves_no_upload_row(store: Store) -> None:
    bad = Chunk(
        chunk_index=0, total_chunks=1, first_ref=1, records=3, total_records=3, data=b"\0" * 48
    )
    with pytest.raises(ProtocolError, match="contiguous"):
        store.uploads.store(round_id="r1", partner="b", upload=CLKS, chunk=bad)
    assert store.uploads.state(round_id="r1", partner="b", upload=CLKS) is None


def test_state_survives_reopening(where: Path | URL) -> None:
    s = Store(where)
    s.rounds.create(
        round_id="r1", project="sha256:" + "0" * 64, partners=["a", "b"], deadline=LATER
    )
    s.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    s.close()
    again = Store(where)
    assert again.rounds.get("r1").state == "open"
    assert again.uploads.state(round_id="r1", partner="a", upload=CLKS).stored_chunks == (0,)
    [(delivery, state)] = again.deliveries.pending(partner="b")
    assert (delivery.round_id, delivery.kind, state) == (
        "r1",
        DeliveryKind.ENCODE_AND_UPLOAD,
        "open",
    )
    again.close()


def test_tokens_are_stored_with_their_chunk_and_read_in_ref_order(store: Store) -> None:
    import json

    for index, tokens in enumerate((["aa", None, "bb"], ["cc", "dd", None])):
        blob = json.dumps({"nhs": tokens}).encode()
        store.uploads.store(
            round_id="r1",
            partner="a",
            upload=CLKS,
            chunk=Chunk(**{**chunk(index).__dict__, "tokens": blob}),
        )
    assert store.uploads.tokens(round_id="r1", partner="a", field="nhs") == [
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
    store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=keyed(1, keys[3:]))
    state = store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[:3]))
    assert state.complete
    assert store.uploads.record_keys(round_id="r1", partner="a") == [k.hex() for k in keys]
    assert store.uploads.record_keys(round_id="r1", partner="b") == []
    # The same chunk again is fine; the same CLKs with other record keys contradict it.
    store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[:3]))
    with pytest.raises(ProtocolError, match="different content"):
        store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[3:]))


def test_a_record_key_repeated_across_chunks_refuses_the_last_chunk(store: Store) -> None:
    keys = [bytes([i]) * 32 for i in range(5)] + [b"\0" * 32]
    store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=keyed(0, keys[:3]))
    with pytest.raises(ProtocolError, match="repeats 1 record key"):
        store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=keyed(1, keys[3:]))
    state = store.uploads.state(round_id="r1", partner="a", upload=CLKS)
    assert state.stored_chunks == (0,) and not state.complete


def test_a_version_1_database_is_migrated_and_loses_nothing(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript((DATA / "coordinator-schema-v1.sql").read_text())
    db.close()
    s = Store(path)
    # Round states renamed, deliveries typed; their instruction ids are kept, so a node's
    # outstanding result for one is still understood.
    assert [r.state for r in (s.rounds.get("r1"), s.rounds.get("r2"))] == ["closed", "analysing"]
    assert s.rounds.get("r1").linkage == ""
    owed = {(d.partner, d.kind, d.product_id, d.attribute): d for d in s.deliveries.of_round("r2")}
    share = owed[("council", DeliveryKind.SHARE_ATTRIBUTE, "known_by_ward", "ward")]
    assert share.instruction_id == "r2/attribute:known_by_ward:ward" and not share.done
    assert share.error.startswith("InputDataError")
    assert owed[("council", DeliveryKind.ENTITIES_READY, "", "")].instruction_id == "r2/entities"
    assert ("police", DeliveryKind.PRODUCT_RELEASE, "known_by_ward", "") in owed
    found = s.deliveries.find(partner="council", instruction_id="r2/entities")
    assert found is not None and found.kind is DeliveryKind.ENTITIES_READY
    # Columns added since version 1 work.
    s.rounds.create(round_id="r3", project="p", partners=["a"], deadline=LATER)
    one = keyed(0, [b"\1" * 32], records=1, total_chunks=1, total=1)
    assert s.uploads.store(round_id="r3", partner="a", upload=CLKS, chunk=one).complete
    assert s.uploads.record_keys(round_id="r3", partner="a") == [(b"\1" * 32).hex()]
    s.close()
    # Opening it again changes nothing more.
    again = Store(path)
    assert len(again.deliveries.of_round("r2")) == 4
    again.close()


def test_a_state_moves_only_from_where_it_is(store: Store) -> None:
    assert store.rounds.move("r1", to=RoundState.UPLOADING, allowed_from=[RoundState.OPEN])
    # A second mover that expects the round still open loses, and nothing changes.
    assert not store.rounds.move("r1", to=RoundState.CANCELLED, allowed_from=[RoundState.OPEN])
    assert store.rounds.get("r1").state is RoundState.UPLOADING
    with pytest.raises(ValueError, match="not settable"):
        store.rounds.move("r1", to=RoundState.FAILED, allowed_from=[RoundState.UPLOADING], seq=9)


def test_every_table_reads_back_what_it_wrote(store: Store) -> None:
    """Each table class's statements, on both databases: bytes come back as bytes, scores as
    full-precision floats, flags as ints, rows in the order written, and a row written again
    replaces or is kept as the statement says."""
    project = "sha256:" + "0" * 64
    # Deliveries: heard in the order owed, each once.
    store.deliveries.add(
        [Delivery("r1", "a", DeliveryKind.SHARE_ATTRIBUTE, "p", "ward"),
         Delivery("r1", "a", DeliveryKind.ENTITIES_READY),
         Delivery("r1", "a", DeliveryKind.SHARE_ATTRIBUTE, "p", "ward")]
    )  # fmt: skip
    pending = [d.kind for d, _ in store.deliveries.pending(partner="a")]
    assert pending == [DeliveryKind.ENCODE_AND_UPLOAD, DeliveryKind.SHARE_ATTRIBUTE,
                       DeliveryKind.ENTITIES_READY]  # fmt: skip
    first = store.deliveries.pending(partner="a")[0][0]
    store.deliveries.mark(first, error="boom")
    assert store.deliveries.find(partner="a", instruction_id=first.instruction_id).error == "boom"
    store.deliveries.mark(first)
    assert [d.done for d in store.deliveries.of_round("r1")][:2] == [True, False]
    # Members and entities: an entity seen again is kept from its first round.
    score = 0.1234567890123
    rows = [("a", 0, "e1", score), ("b", 0, "e1", None)]
    store.results.store_members(round_id="r1", rows=rows, new_entities=["e1"])
    store.results.store_members(round_id="r1", rows=rows[:1], new_entities=["e1"])
    assert store.results.members(round_id="r1") == [("a", 0, "e1", score)]
    assert store.results.entity_ids(round_id="r1", partner="a") == [(0, "e1")]
    # Products: a product made again replaces its row.
    for cells in (4, 6):
        files = [("p.csv", "text/csv", Path("/x/p.csv"))]
        store.results.add_product(
            round_id="r1", product_id="p", title="T", cells=cells, suppressed=1, files=files
        )
    assert store.results.product_tables(round_id="r1") == [("p", "T", 6, 1)]
    assert store.results.product_files(round_id="r1", product_id="p") == [
        ("p", "p.csv", "text/csv", "/x/p.csv")
    ]
    assert store.results.product_files(round_id="r1") == store.results.product_files(
        round_id="r1", product_id="p"
    )
    # The key relay: a newer agreement key replaces the old; a pinned version is kept.
    for public in (b"\0old", b"\0new\xff"):
        store.keys.publish(project, AgreementKey(project, "a", public, b"cert", b"sig"))
    assert store.keys.keys(project) == [AgreementKey(project, "a", b"\0new\xff", b"cert", b"sig")]
    assert store.keys.pin(project, version=0, key_check="k0", partner="a").key_check == "k0"
    assert store.keys.pin(project, version=0, key_check="kX", partner="b").pinned_from == "a"
    wrapped = WrappedSecret(project, 1, "a", "b", b"sk", b"rk", b"salt", b"nonce", b"\0ct")
    signed = AgreementKey(project, "a", b"\0new\xff", b"cert", b"sig")
    new = WrappedSecrets(project, 1, "k1", (wrapped,))
    assert store.keys.add_version(project, new, sender=signed)
    assert not store.keys.add_version(project, new, sender=signed)
    got = store.keys.wrapped(project, version=1, partner="b")
    assert got.ciphertext == b"\0ct" and isinstance(got.ciphertext, bytes)
    assert got.sender_signed_key == AgreementKey(project, "a", b"sk", b"cert", b"sig")
    assert store.keys.latest(project).version == 1
    # Rounds: counts by state, and CLKs past retention deleted for good.
    store.uploads.store(round_id="r1", partner="a", upload=CLKS, chunk=chunk(0))
    assert store.uploads.started(round_id="r1")
    assert store.rounds.move("r1", to=RoundState.CANCELLED, allowed_from=[RoundState.OPEN])
    assert store.rounds.count_by_state() == {RoundState.CANCELLED: 1}
    finished = tuple(s.value for s in RoundState if s.finished)
    assert store.uploads.expired_clks(finished=finished, older_than=LATER) == [("r1", 3)]
    store.uploads.delete_clks("r1")
    assert not store.uploads.started(round_id="r1")
    assert store.uploads.expired_clks(finished=finished, older_than=LATER) == []
    store.uploads.discard(round_id="r1", partner="a", upload=CLKS, complete_too=True)
    assert store.uploads.state(round_id="r1", partner="a", upload=CLKS) is None


def test_a_version_6_database_keeps_the_order_deliveries_were_owed_in(tmp_path: Path) -> None:
    """Version 6 ordered deliveries by SQLite's rowid; the upgrade writes that order down."""
    import sqlite3

    path = tmp_path / "v6.sqlite"
    s = Store(path)
    s.rounds.create(round_id="r1", project="p", partners=["b", "a"], deadline=LATER)
    s.deliveries.add([Delivery("r1", "a", DeliveryKind.ENTITIES_READY)])
    s.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE deliveries DROP COLUMN seq")  # as version 6 made the table
    db.execute("PRAGMA user_version = 6")
    db.commit()
    db.close()
    again = Store(path)
    assert [(d.partner, d.kind) for d in again.deliveries.of_round("r1")] == [
        ("b", DeliveryKind.ENCODE_AND_UPLOAD),
        ("a", DeliveryKind.ENCODE_AND_UPLOAD),
        ("a", DeliveryKind.ENTITIES_READY),
    ]
    again.deliveries.add([Delivery("r1", "b", DeliveryKind.ENTITIES_READY)])
    assert [d.kind for d, _ in again.deliveries.pending(partner="b")] == [
        DeliveryKind.ENCODE_AND_UPLOAD,
        DeliveryKind.ENTITIES_READY,
    ]
    again.close()
