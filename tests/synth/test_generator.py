"""Shape of what ``generate`` returns and writes: profiles, columns, truth, ids, arguments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import oda_fed.synth
from oda_fed.errors import OdaFedError
from oda_fed.synth import PROFILES, generate, write
from oda_fed.synth.generator import Simulation, simulate
from oda_fed.synth.profiles import CANONICAL_FIELDS, STYLES


def test_public_api_is_deliberate() -> None:
    assert sorted(oda_fed.synth.__all__) == [
        "ErrorLevel",
        "PROFILES",
        "PartnerProfile",
        "SynthParameterError",
        "Synthetic",
        "error_level",
        "generate",
        "project_document",
        "ward_boundaries",
        "write",
        "write_project",
        "write_ward_boundaries",
    ]


def test_profiles_cover_six_partner_kinds_council_first() -> None:
    ids = [p.id for p in PROFILES]
    assert ids[:3] == ["council", "police", "social_care"]
    assert {"fire", "nhs_trust", "housing"} <= set(ids)
    assert len(set(ids)) == len(ids)
    assert dict(PROFILES[0].attributes) == {"ward": "ward_code"}
    for profile in PROFILES:
        assert profile.id in STYLES
        required = set(CANONICAL_FIELDS) - {"nhs_number"}
        assert required <= set(profile.columns) <= set(CANONICAL_FIELDS)
        names = [profile.record_id_column, *profile.columns.values(), *profile.attributes.values()]
        assert len(set(names)) == len(names), profile.id
    with_nhs = {p.id for p in PROFILES if "nhs_number" in p.columns}
    assert with_nhs == {"social_care", "nhs_trust"}
    assert len({p.date_format for p in PROFILES}) >= 4


def test_each_partner_writes_its_own_column_names(all_partners: Simulation) -> None:
    frames = all_partners.synthetic.partners
    assert list(frames) == [p.id for p in PROFILES]
    assert list(frames["council"].columns) == [
        "person_ref", "forename", "surname", "dob", "gender", "address_line_1", "post_code",
        "ward_code",
    ]  # fmt: skip
    assert list(frames["police"].columns) == [
        "nominal_id", "first_names", "family_name", "date_of_birth", "sex", "home_address",
        "postcode",
    ]  # fmt: skip
    assert list(frames["social_care"].columns) == [
        "client_id", "given_name", "last_name", "birth_date", "sex", "address", "postcode",
        "nhs_no",
    ]  # fmt: skip
    for profile in PROFILES:
        expected = [
            profile.record_id_column,
            *(profile.columns[f] for f in CANONICAL_FIELDS if f in profile.columns),
            *profile.attributes.values(),
        ]
        frame = frames[profile.id]
        assert list(frame.columns) == expected
        assert all(pd.api.types.is_string_dtype(t) for t in frame.dtypes)
        assert not frame.isna().any().any(), "a blank must be an empty string, not NaN"


def test_truth_covers_every_record_exactly_once(all_partners: Simulation) -> None:
    data = all_partners.synthetic
    assert list(data.truth.columns) == ["source", "record_id", "person_id"]
    records = pd.concat(
        [
            pd.DataFrame({"source": p.id, "record_id": data.partners[p.id][p.record_id_column]})
            for p in data.profiles
        ],
        ignore_index=True,
    )
    assert len(data.truth) == len(records)
    assert not data.truth.duplicated(["source", "record_id"]).any()
    joined = records.merge(data.truth, on=["source", "record_id"], how="left", validate="1:1")
    assert joined["person_id"].notna().all()
    # At most one record per person per partner, and every person id names a person.
    assert not data.truth.duplicated(["source", "person_id"]).any()
    numbers = data.truth["person_id"].str.removeprefix("person_").astype(int)
    assert numbers.between(0, all_partners.population.size - 1).all()


def test_truth_names_the_person_behind_each_record(medium3: Simulation) -> None:
    data = medium3.synthetic
    council = data.partners["council"]
    truth = data.truth[data.truth["source"] == "council"].set_index("record_id")["person_id"]
    person = truth.loc[council["person_ref"]].str.removeprefix("person_").astype(int).to_numpy()
    np.testing.assert_array_equal(person, medium3.members["council"])
    true_dob = pd.to_datetime("1925-01-01") + pd.to_timedelta(medium3.population.dob[person], "D")
    written = pd.to_datetime(council["dob"], format="%d/%m/%Y", errors="coerce")
    assert (written == true_dob).mean() > 0.95


def test_people_are_known_to_one_two_and_three_partners(medium3: Simulation) -> None:
    truth = medium3.synthetic.truth
    known_to = truth.groupby("person_id").size().value_counts()
    assert {1, 2, 3} <= set(known_to.index)
    assert truth["person_id"].nunique() < medium3.population.size  # some are known to none
    for rows in medium3.members.values():
        assert 0.45 < len(rows) / medium3.population.size < 0.75


def test_record_ids_are_partner_specific_and_reveal_no_order(medium3: Simulation) -> None:
    for profile in medium3.synthetic.profiles:
        ids = medium3.synthetic.partners[profile.id][profile.record_id_column]
        prefix = STYLES[profile.id].record_prefix
        assert ids.str.fullmatch(rf"{prefix}\d{{6,}}").all()
        assert ids.is_unique and ids.is_monotonic_increasing
        person = medium3.members[profile.id]
        assert abs(np.corrcoef(np.arange(len(person)), person)[0, 1]) < 0.1


def test_same_seed_gives_same_bytes_and_other_seeds_differ(tmp_path) -> None:
    first = write(generate(population=400, partners=3, seed=3), tmp_path / "a")
    again = write(generate(population=400, partners=3, seed=3), tmp_path / "b")
    other = write(generate(population=400, partners=3, seed=4), tmp_path / "c")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    for a, c in zip(first, other, strict=True):
        assert a.read_bytes() != c.read_bytes()


def test_adding_a_partner_or_errors_leaves_the_rest_alone() -> None:
    two = simulate(population=500, partners=2, seed=8, errors="low")
    three = simulate(population=500, partners=3, seed=8, errors="low")
    noisier = simulate(population=500, partners=3, seed=8, errors="high")
    for pid, frame in two.synthetic.partners.items():
        pd.testing.assert_frame_equal(frame, three.synthetic.partners[pid])
    for pid, rows in three.members.items():
        np.testing.assert_array_equal(rows, noisier.members[pid])


def test_write_produces_readable_csvs(tmp_path, medium3: Simulation) -> None:
    data = medium3.synthetic
    paths = write(data, tmp_path / "out")
    assert [p.name for p in paths] == ["council.csv", "police.csv", "social_care.csv", "truth.csv"]
    tables = [*(data.partners[p.id] for p in data.profiles), data.truth]
    for path, table in zip(paths, tables, strict=True):
        back = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        pd.testing.assert_frame_equal(back, table, check_dtype=False)
    assert b"\r\n" not in paths[0].read_bytes()


def test_a_population_of_one_still_gives_every_partner_a_table() -> None:
    data = generate(population=1, partners=2, seed=0)
    assert set(data.partners) == {"council", "police"}
    assert len(data.truth) == sum(len(f) for f in data.partners.values()) <= 2


@pytest.mark.parametrize(
    ("arguments", "mentions"),
    [
        ({"population": 0, "partners": 3}, "population"),
        ({"population": -5, "partners": 3}, "population"),
        ({"population": 2.5, "partners": 3}, "population"),
        ({"population": True, "partners": 3}, "population"),
        ({"population": 10, "partners": 1}, "partners"),
        ({"population": 10, "partners": len(PROFILES) + 1}, "partners"),
        ({"population": 10, "partners": 3, "seed": -1}, "seed"),
        ({"population": 10, "partners": 3, "errors": "extreme"}, "errors"),
    ],
)
def test_bad_arguments_raise_a_clear_value_error(arguments: dict, mentions: str) -> None:
    with pytest.raises(ValueError, match=mentions) as caught:
        generate(**arguments)
    assert isinstance(caught.value, OdaFedError)
