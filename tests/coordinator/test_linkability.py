"""Linkability the project did not agree to, attacked on a real federation: partners joining their
files on entity ids, and a coordinator following records from round to round by their CLKs."""

from __future__ import annotations

import numpy as np

from oda_fed.config import load_project
from oda_fed.coordinator.store import Store
from oda_fed.demo import evaluate
from oda_fed.transport.protocol import RoundState


def test_two_partners_cannot_join_their_files_on_the_entity_ids_they_receive(federation) -> None:
    assert federation.run_round().state is RoundState.CLOSED
    council = federation.entity_ids("council", unmask=False)
    police = federation.entity_ids("police", unmask=False)
    # The attack: join the two partners' files on the entity id column.
    assert not set(council.values()) & set(police.values())
    # Yet the coordinator maps each partner's pseudonyms back to the same entities.
    truly = set(federation.entity_ids("council").values()) & set(
        federation.entity_ids("police").values()
    )
    assert len(truly) > 50
    # And quality, measured through the coordinator's mapping, is what linkage gave.
    quality = evaluate(federation.workdir, federation.synthetic)
    assert quality.precision >= 0.95 and quality.recall >= 0.9


def test_a_pseudonym_is_stable_for_its_partner_across_rounds_with_stable_ids(federation) -> None:
    federation.amend_project(lambda doc: doc["linkage"].update(stable_entity_ids=True))
    assert federation.run_round().state is RoundState.CLOSED
    before = federation.entity_ids("social_care", unmask=False)
    assert federation.run_round().state is RoundState.CLOSED
    assert federation.entity_ids("social_care", unmask=False) == before


def _round(federation) -> str:
    status = federation.run_round()
    assert status.state is RoundState.CLOSED, status.message
    return status.round_id


def test_without_stable_ids_the_coordinator_cannot_follow_a_clk_across_rounds(federation) -> None:
    project = load_project(federation.workdir / "project.toml").project
    assert not project.linkage.stable_entity_ids
    words = project.linkage.wire_bits // 64
    keyed = [f.name for f in project.linkage.fields if f.keyed_token]
    first = _round(federation)
    quality_first = evaluate(federation.workdir, federation.synthetic)
    second = _round(federation)
    quality_second = evaluate(federation.workdir, federation.synthetic)

    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    try:
        for partner in federation.partners:
            a = store.uploads.clks(round_id=first, partner=partner, words=words)
            b = store.uploads.clks(round_id=second, partner=partner, words=words)
            assert len(a) == len(b) == len(federation.synthetic.partners[partner])
            # The same extract, uploaded twice: not one CLK of round one is in round two
            # (leaving out empty filters, which are alike in any round).
            seen = {row.tobytes() for row in a if row.any()}
            assert not any(row.tobytes() in seen for row in b)
            # Bit for bit the filters are as full as before: only the positions moved.
            ones = lambda x: np.unpackbits(x.view(np.uint8)).sum()  # noqa: E731
            assert ones(a) == ones(b)
            for field in keyed:
                ta = {
                    t
                    for t in store.uploads.tokens(round_id=first, partner=partner, field=field)
                    if t
                }
                tb = {
                    t
                    for t in store.uploads.tokens(round_id=second, partner=partner, field=field)
                    if t
                }
                assert ta and tb and not ta & tb, field
    finally:
        store.close()
    # Within each round the partners still link as well as ever.
    for quality in (quality_first, quality_second):
        assert quality.precision >= 0.95 and quality.recall >= 0.9, quality
