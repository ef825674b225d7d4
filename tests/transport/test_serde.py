"""serde is the one conversion between protobuf and plain values: lossless both ways, and the
bytes the sender hashes are the bytes the recipient hashes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oda_fed.errors import ProtocolError
from oda_fed.transport import messages as m
from oda_fed.transport import serde
from oda_fed.transport.protocol import RoundState

text = st.text(max_size=12)
small = st.integers(min_value=0, max_value=2**32 - 1)
blobs = st.binary(max_size=40)
digests = st.binary(min_size=32, max_size=32)

bodies = st.one_of(
    st.builds(m.EncodeAndUpload, chunk_records=small, clk_bits=small),
    st.builds(m.ShareAttribute, product_id=text, attribute=text),
    st.just(m.EntitiesReady()),
    st.builds(
        m.ProductRelease,
        product_id=text,
        title=text,
        files=st.lists(
            st.builds(m.ReleasedFile, name=text, media_type=text, content=blobs), max_size=3
        ).map(tuple),
        released_by=text,
    ),
    st.builds(m.RoundClosed, status=text, message=text),
    st.none(),
)

values = st.one_of(
    st.builds(m.Hello, partner_id=text, project_fingerprint=text, software_version=text),
    st.builds(
        m.InstructionResult, instruction_id=text, ok=st.booleans(), error=text, records=small
    ),
    st.builds(
        m.Instruction, instruction_id=text, project_fingerprint=text, round_id=text, body=bodies
    ),
    st.builds(
        m.ClkChunk,
        round_id=text,
        project_fingerprint=text,
        chunk_index=small,
        total_chunks=small,
        first_ref=small,
        records=small,
        total_records=small,
        clk_bits=small,
        clks=blobs,
        tokens=st.lists(
            st.builds(m.TokenColumn, field=text, values=st.lists(digests, max_size=3).map(tuple)),
            max_size=2,
        ).map(tuple),
        record_keys=st.lists(digests, max_size=3).map(tuple),
    ),
    st.builds(
        m.AttributeChunk,
        round_id=text,
        project_fingerprint=text,
        product_id=text,
        attribute=text,
        chunk_index=small,
        total_chunks=small,
        first_ref=small,
        total_records=small,
        values=st.lists(text, max_size=4).map(tuple),
    ),
    st.builds(
        m.UploadStatusRequest,
        round_id=text,
        project_fingerprint=text,
        upload=st.one_of(
            st.just(m.CLKS),
            st.builds(
                m.Upload,
                product_id=st.from_regex(r"[a-z]{1,5}", fullmatch=True),
                attribute=st.from_regex(r"[a-z]{1,5}", fullmatch=True),
            ),  # fmt: skip
        ),
    ),
    st.builds(
        m.UploadReceipt,
        round_id=text,
        chunks_stored=small,
        records_stored=small,
        complete=st.booleans(),
        stored_chunks=st.lists(small, max_size=4).map(tuple),
    ),
    st.builds(m.FetchEntitiesRequest, round_id=text, project_fingerprint=text),
    st.builds(m.EntityChunk, first_ref=small, entity_ids=st.lists(text, max_size=4).map(tuple)),
    st.builds(
        m.RoundStatus,
        round_id=text,
        state=st.sampled_from(RoundState),
        message=text,
        entities=small,
        partners=st.lists(
            st.builds(
                m.PartnerProgress,
                partner=text,
                connected=st.booleans(),
                records=small,
                uploaded=st.booleans(),
                entities_delivered=st.booleans(),
            ),  # fmt: skip
            max_size=3,
        ).map(tuple),
        products=st.lists(
            st.builds(
                m.ProductSummary,
                product_id=text,
                title=text,
                recipients=st.lists(text, max_size=2).map(tuple),
                cells=small,
                suppressed=small,
            ),  # fmt: skip
            max_size=2,
        ).map(tuple),
        deadline=text,
        released_by=text,
    ),
)


@given(values)
def test_every_message_survives_the_wire(value) -> None:
    message, sent = serde.encode(value)
    arrived = serde.received(type(message).FromString(sent))
    assert arrived.message == value
    assert arrived.payload == sent  # both sides' audit logs hash the same bytes


def test_a_node_event_carries_its_hello_or_result() -> None:
    hello = m.Hello(partner_id="council", project_fingerprint="fp")
    event, payload = serde.node_event(hello)
    got = serde.node_event_from_proto(event)
    assert got is not None and got.message == hello and got.payload == payload


def test_what_the_wire_cannot_say_is_refused_clearly() -> None:
    from oda_fed.proto.v1 import admin_pb2

    with pytest.raises(ProtocolError, match="round state 'waiting_attributes'"):
        serde.from_proto(admin_pb2.RoundStatus(round_id="r", state="waiting_attributes"))
    with pytest.raises(ProtocolError, match="unknown upload"):
        m.Upload.from_name("clks:extra")
    with pytest.raises(TypeError, match="no wire form"):
        serde.to_proto(object())
