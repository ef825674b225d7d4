"""Configuration errors name the file, the key and what was expected."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from oda_fed.config import (
    load_coordinator_config,
    load_node_config,
    load_pinned_project,
    load_project,
)
from oda_fed.errors import ConfigError, ProjectMismatchError
from oda_fed.linkage import settings_for

PROJECT = """\
version = 1
name = "test-project"
title = "Test"
purpose = "testing"
legal_gateway = "none"

[[partners]]
id = "council"
name = "Council"

[[partners]]
id = "police"
name = "Police"

[linkage]
threshold = 0.8

[[linkage.fields]]
name = "first_name"
type = "name"

[[attributes]]
name = "ward"
partner = "council"
domain = { pattern = "E05[0-9]{6}", max_distinct = 40 }

[[products]]
id = "by_ward"
kind = "partner_count_by_area"
title = "By ward"
area = { partner = "council", attribute = "ward" }
recipients = ["council", "coordinator"]
"""


def write(tmp_path: Path, text: str, name: str = "project.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_project_loads_with_defaults_and_fingerprint(tmp_path: Path) -> None:
    path = write(tmp_path, PROJECT)
    loaded = load_project(path)
    assert loaded.fingerprint == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.project.disclosure.min_cell == 10
    assert loaded.project.disclosure.rounding_base == 5
    assert loaded.project.partner_ids == ["council", "police"]
    assert loaded.project.attribute_allowed(
        partner="council", product_id="by_ward", attribute="ward"
    )
    assert not loaded.project.attribute_allowed(
        partner="police", product_id="by_ward", attribute="ward"
    )
    assert not loaded.project.attribute_allowed(
        partner="council", product_id="by_ward", attribute="name"
    )


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, PROJECT.replace("threshold = 0.8", "treshold = 0.8"))
    with pytest.raises(ConfigError) as info:
        load_project(path)
    message = str(info.value)
    assert str(path) in message and "linkage.treshold" in message and "unknown key" in message


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, PROJECT.replace('purpose = "testing"\n', ""))
    with pytest.raises(ConfigError, match=r"key 'purpose': required key is missing"):
        load_project(path)


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    path = write(tmp_path, PROJECT.replace("threshold = 0.8", 'threshold = "high"'))
    with pytest.raises(ConfigError, match=r"linkage.threshold.*number"):
        load_project(path)


def test_product_must_name_a_partner(tmp_path: Path) -> None:
    path = write(
        tmp_path, PROJECT.replace('area = { partner = "council"', 'area = { partner = "fire"')
    )
    with pytest.raises(ConfigError, match="'fire' in 'fire.ward' is not a partner"):
        load_project(path)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, PROJECT + "\n[broken\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_project(path)


def test_pinned_fingerprint_mismatch_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, PROJECT)
    with pytest.raises(ProjectMismatchError, match="differs from the one pinned"):
        load_pinned_project(path, pinned="sha256:" + "0" * 64, pinned_in=tmp_path / "node.toml")


def test_node_config_paths_resolve_against_the_file(tmp_path: Path) -> None:
    node = write(
        tmp_path,
        f"""\
partner = "council"
project = "project.toml"
project_fingerprint = "sha256:{"a" * 64}"
secret_file = "linkage.secret"
workdir = "state"
[coordinator]
address = "localhost:7443"
[tls]
ca = "ca.crt"
cert = "council.crt"
key = "council.key"
[source]
path = "data/council.csv"
record_id = "person_ref"
[source.lookups]
wards = "data/wards.csv"
[[source.events]]
name = "incidents"
path = "data/incidents.csv"
record_id = "person_ref"
date = "occurred_on"
[[source.events]]
name = "referrals"
path = "/srv/referrals.csv"
record_id = "person_ref"
date = "referred_on"
""",
        "node.toml",
    )
    cfg = load_node_config(node)
    assert cfg.source.path == (tmp_path / "data" / "council.csv").resolve()
    assert cfg.source.lookups["wards"] == (tmp_path / "data" / "wards.csv").resolve()
    incidents, referrals = cfg.source.events
    assert incidents.path == (tmp_path / "data" / "incidents.csv").resolve()
    assert referrals.path == Path("/srv/referrals.csv")
    assert cfg.tls.key == (tmp_path / "council.key").resolve()
    assert cfg.audit_path == (tmp_path / "state" / "audit" / "council.jsonl").resolve()

    assert cfg.secret_file == (tmp_path / "linkage.secret").resolve()
    assert cfg.keys_dir == (tmp_path / "state" / "keys").resolve()
    # Without a secret file the node agrees its secret; its keys folder may be set.
    agreeing = node.read_text().replace('secret_file = "linkage.secret"', 'keys_dir = "keys"')
    cfg = load_node_config(write(tmp_path, agreeing, "node.toml"))
    assert cfg.secret_file is None and cfg.keys_dir == (tmp_path / "keys").resolve()

    twice = node.read_text().replace('name = "referrals"', 'name = "incidents"')
    with pytest.raises(ConfigError, match="names incidents more than once"):
        load_node_config(write(tmp_path, twice, "node.toml"))


def test_node_config_bad_fingerprint_format(tmp_path: Path) -> None:
    node = write(tmp_path, 'partner = "council"\nproject_fingerprint = "abc"\n', "node.toml")
    with pytest.raises(ConfigError) as info:
        load_node_config(node)
    assert "project_fingerprint" in str(info.value) and "sha256:" in str(info.value)
    assert "key 'project': required key is missing" in str(info.value)


def test_project_field_types_are_exactly_the_standardisers() -> None:
    from typing import get_args

    from oda_fed.config import FieldType
    from oda_fed.standardise import FIELD_TYPES

    assert set(get_args(FieldType)) == set(FIELD_TYPES)


def test_keyed_token_only_for_exact_identifiers(tmp_path: Path) -> None:
    text = PROJECT.replace('type = "name"', 'type = "name"\nkeyed_token = true')
    with pytest.raises(ConfigError, match="keyed_token is only for exact identifiers"):
        load_project(write(tmp_path, text))
    ok = PROJECT.replace('type = "name"', 'type = "nhs_number"\nkeyed_token = true')
    assert load_project(write(tmp_path, ok)).project.linkage.fields[0].keyed_token


def test_hardening_salt_field_must_be_a_linkage_field(tmp_path: Path) -> None:
    text = PROJECT.replace(
        "[[linkage.fields]]", '[linkage.hardening]\nsalt_field = "dob"\n\n[[linkage.fields]]', 1
    )
    with pytest.raises(ConfigError, match="salt_field 'dob' is not one of the linkage fields"):
        load_project(write(tmp_path, text))
    balanced = PROJECT.replace(
        "[[linkage.fields]]", "[linkage.hardening]\nbalance = true\n\n[[linkage.fields]]", 1
    )
    assert load_project(write(tmp_path, balanced)).project.linkage.wire_bits == 2048


def test_linkage_defaults_to_auto_threshold_and_automatic_blocking(tmp_path: Path) -> None:
    linkage = load_project(write(tmp_path, PROJECT.replace("threshold = 0.8\n", ""))).project
    options = settings_for(linkage.linkage)
    assert options.threshold == "auto" and options.token_rule == "token"
    blocking = options.blocking
    assert blocking.method == "auto" and not blocking.uses_lsh(50_000, 50_000)
    assert blocking.uses_lsh(100_000, 100_000)


def test_blocking_and_token_rule_are_read_and_checked(tmp_path: Path) -> None:
    text = PROJECT.replace(
        "[[linkage.fields]]",
        'token_conflict = "clk"\nquality_sample = 500\n\n[linkage.blocking]\nmethod = "lsh"\n'
        "bands = 50\nbits_per_band = 20\n\n[[linkage.fields]]",
        1,
    )
    options = settings_for(load_project(write(tmp_path, text)).project.linkage)
    assert options.token_rule == "clk" and options.quality_sample == 500
    assert (options.blocking.bands, options.blocking.bits_per_band) == (50, 20)
    assert options.blocking.uses_lsh(10, 10)
    for bad, message in (
        ('token_conflict = "nhs"', "token_conflict"),
        ("[linkage.blocking]\nbits_per_band = 65", "bits_per_band"),
        ('[linkage.blocking]\nmethod = "sorted"', "method"),
        ("[linkage.blocking]\nbandz = 3", "bandz"),
    ):
        broken = PROJECT.replace("[[linkage.fields]]", f"{bad}\n\n[[linkage.fields]]", 1)
        with pytest.raises(ConfigError, match=message):
            load_project(write(tmp_path, broken))


def test_attributes_must_be_declared_with_what_may_leave(tmp_path: Path) -> None:
    block = PROJECT[PROJECT.index("[[attributes]]") : PROJECT.index("[[products]]")]
    with pytest.raises(ConfigError, match="'ward' of 'council' is not declared"):
        load_project(write(tmp_path, PROJECT.replace(block, "")))
    no_domain = PROJECT.replace('domain = { pattern = "E05[0-9]{6}", max_distinct = 40 }\n', "")
    with pytest.raises(ConfigError, match="needs a domain"):
        load_project(write(tmp_path, no_domain))
    for bad, message in (
        ("domain = { max_distinct = 40 }", "give codes"),
        ('domain = { pattern = "E05[0-9" }', "not a regular expression"),
        ("domain = { codes = [] }", "at least 1"),
        ('derive = "age_band"\nat = 2026-04-01', "needs bands"),
        ('derive = "age_band"\nat = 2026-04-01\nbands = [5, 18]', "start at 0"),
        ('derive = "category"', "needs categories"),
        ('derive = "lookup"\ndomain = { codes = ["a"] }', "needs lookup"),
        ('derive = "guess"', "derive"),
        ('derive = "event_count"\nevents = "incidents"\nat = 2026-04-01', "needs bands"),
        ('derive = "event_any"\nat = 2026-04-01', "needs events"),
        ("window_days = 365", "only apply to the event derivations"),
        ('event_types = ["fire"]', "only apply to the event derivations"),
    ):
        text = PROJECT.replace('domain = { pattern = "E05[0-9]{6}", max_distinct = 40 }', bad, 1)
        with pytest.raises(ConfigError, match=message):
            load_project(write(tmp_path, text))


def test_an_attribute_says_why_values_may_not_leave_without_quoting_them() -> None:
    from oda_fed.config import Attribute

    ward = Attribute.model_validate(
        {
            "name": "ward",
            "partner": "council",
            "domain": {"pattern": "E05[0-9]{6}", "max_distinct": 2},
        }
    )
    assert ward.problem(["E05000001", "", "E05000002"]) == ""
    surnames = ward.problem(["Smith", "E05000001", "Nicholson"])
    assert "2 of 3 values are outside the domain" in surnames and "Smith" not in surnames
    assert "3 distinct values" in ward.problem(["E05000001", "E05000002", "E05000003"])
    band = Attribute.model_validate(
        {
            "name": "age",
            "partner": "council",
            "derive": "age_band",
            "at": "2026-04-01",
            "bands": [0, 18, 65],
        }
    )
    assert band.labels == ["0-17", "18-64", "65+"] and band.problem(["0-17", "", "65+"]) == ""
    assert "outside the domain" in band.problem(["0-17", "17"])


def test_the_strictest_partner_sets_the_smallest_publishable_count(tmp_path: Path) -> None:
    strict = PROJECT.replace(
        'id = "police"\nname = "Police"', 'id = "police"\nname = "Police"\nmin_cell = 20'
    )
    project = load_project(write(tmp_path, strict)).project
    assert project.min_cell() == 20 and project.min_cell(["council"]) == 10
    assert load_project(write(tmp_path, PROJECT)).project.min_cell() == 10


def test_count_and_rate_products_name_declared_attributes(tmp_path: Path) -> None:
    block = PROJECT[PROJECT.index("[[products]]") :]
    count = PROJECT.replace(
        block,
        '[[products]]\nid = "by_ward"\nkind = "count"\ntitle = "t"\n'
        'by = ["council.ward", "partners"]\ncohort = { min_partners = 2 }\n'
        'recipients = ["council"]\n',
    )
    product = load_project(write(tmp_path, count)).project.products[0]
    assert product.dimensions == ["council.ward", "partners"]
    assert [str(a) for a in product.attributes()] == ["council.ward"]
    for bad, message in (
        ('by = ["police.ward"]', "attribute 'ward' of 'police' is not declared"),
        ('by = ["ward"]', "name an attribute as '<partner>.<attribute>'"),
        ("by = []", "needs by"),
        ('by = ["partners", "partners"]', "twice"),
        ('by = ["a.b", "c.d", "e.f", "g.h"]', "at most 3"),
    ):
        text = count.replace('by = ["council.ward", "partners"]', bad)
        with pytest.raises(ConfigError, match=message):
            load_project(write(tmp_path, text))
    rate = count.replace('kind = "count"', 'kind = "rate"')
    with pytest.raises(ConfigError, match="kind = 'rate' needs a numerator"):
        load_project(write(tmp_path, rate))
    rate += 'numerator = { "council.ward" = ["E05000001"] }\n'
    assert load_project(write(tmp_path, rate)).project.products[0].numerator


def test_lists_and_alerts_go_to_their_owner_alone(tmp_path: Path) -> None:
    block = PROJECT[PROJECT.index("[[products]]") :]
    listed = PROJECT.replace(
        block,
        '[[products]]\nid = "visit"\nkind = "list"\ntitle = "t"\nowner = "council"\n'
        'recipients = ["council"]\nscore_bands = [2, 5]\n'
        '[[products.indicators]]\nattribute = "council.ward"\npoints = { E05000001 = 3 }\n'
        'group = "area"\n',
    )
    product = load_project(write(tmp_path, listed)).project.products[0]
    assert product.score_labels == ["2-4", "5+"]
    assert [str(a) for a in product.attributes()] == ["council.ward"]
    for old, new, message in (
        ('recipients = ["council"]', 'recipients = ["council", "police"]', "to its owner alone"),
        ('owner = "council"\n', "", "needs owner"),
        (
            '"council"\nrecipients = ["council"]',
            '"fire"\nrecipients = ["fire"]',
            "owner 'fire' is not a partner",
        ),
        ("score_bands = [2, 5]", "score_bands = [0, 5]", "start at 1"),
        ("score_bands = [2, 5]\n", "", "needs indicators and score_bands"),
        ("points = { E05000001 = 3 }", "points = { E05000001 = 0 }", "from 1 to 100"),
        ('attribute = "council.ward"', 'attribute = "police.ward"', "not declared"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_project(write(tmp_path, listed.replace(old, new)))

    alert = PROJECT.replace(
        block,
        '[[products]]\nid = "newly"\nkind = "alert"\ntitle = "t"\nowner = "council"\n'
        'recipients = ["council"]\ncohort = { where = { "council.ward" = ["E05000001"] } }\n',
    )
    with pytest.raises(ConfigError, match="needs \\[linkage\\] stable_entity_ids = true"):
        load_project(write(tmp_path, alert))
    alert = alert.replace("threshold = 0.8", "threshold = 0.8\nstable_entity_ids = true")
    assert load_project(write(tmp_path, alert)).project.products[0].kind == "alert"
    no_rule = alert.replace('cohort = { where = { "council.ward" = ["E05000001"] } }\n', "")
    with pytest.raises(ConfigError, match="an alert needs a rule"):
        load_project(write(tmp_path, no_rule))
    with pytest.raises(ConfigError, match="for kind = 'list'"):
        load_project(write(tmp_path, alert + "score_bands = [1]\n"))


def test_a_local_product_is_its_owners_records_by_its_own_attributes(tmp_path: Path) -> None:
    block = PROJECT[PROJECT.index("[[products]]") :]
    local = PROJECT.replace(
        block,
        '[[products]]\nid = "caseload"\nkind = "local"\ntitle = "t"\nowner = "council"\n'
        'by = ["council.ward"]\nrecipients = ["council", "police"]\n',
    )
    project = load_project(write(tmp_path, local)).project
    assert project.products[0].dimensions == ["council.ward"]
    # Only its table leaves the node: no value per record may be shared for it.
    assert not project.attribute_allowed(partner="council", product_id="caseload", attribute="ward")
    police_age = '[[attributes]]\nname = "age"\npartner = "police"\ndomain = { codes = ["a"] }\n'
    for old, new, message in (
        ('owner = "council"\n', "", "needs owner"),
        ('by = ["council.ward"]', 'by = ["council.ward", "partners"]', "partners is not one of"),
        ('by = ["council.ward"]', 'by = ["council.ward", "police.age"]', "police.age is not one"),
        ('by = ["council.ward"]\n', 'by = ["council.ward"]\ncohort = { min_partners = 2 }\n',
         "min_partners cannot apply"),
        ('by = ["council.ward"]\n', 'by = ["council.ward"]\nnumerator = { "council.ward" = ["x"] }\n',
         "not area or numerator"),
        ('by = ["council.ward"]\n', "", "needs by"),
    ):  # fmt: skip
        text = local.replace(old, new).replace("[[products]]", police_age + "[[products]]")
        with pytest.raises(ConfigError, match=message):
            load_project(write(tmp_path, text))


MAP = (
    PROJECT
    + """
[[attributes]]
name = "age"
partner = "police"
derive = "age_band"
at = 2026-04-01
bands = [0, 18, 65]

[[products]]
id = "ward_map"
kind = "map"
title = "By ward, on a map"
by = ["council.ward"]
boundaries = "wards"
recipients = ["council"]
"""
)


def test_a_map_names_one_area_and_the_boundaries_it_is_drawn_on(tmp_path: Path) -> None:
    product = load_project(write(tmp_path, MAP)).project.products[1]
    assert product.kind == "map" and product.dimensions == ["council.ward"]
    assert product.boundaries == "wards" and product.map_area_property == "code"
    assert product.numerator is None and product.boundaries_fingerprint is None
    pinned = MAP + 'area_property = "WD24CD"\nboundaries_fingerprint = "sha256:' + "a" * 64 + '"\n'
    pinned += 'numerator = { "police.age" = ["65+"] }\n'  # a map of a rate
    product = load_project(write(tmp_path, pinned)).project.products[1]
    assert product.map_area_property == "WD24CD" and product.numerator == {"police.age": ["65+"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('by = ["council.ward"]', 'by = ["council.ward", "partners"]'), "exactly one area"),
        (('by = ["council.ward"]', 'by = ["partners"]'), "exactly one area"),
        (('by = ["council.ward"]', 'by = ["police.age"]'), "'police.age' is derived by age_band"),
        (('boundaries = "wards"\n', ""), "kind = 'map' needs boundaries"),
        (('boundaries = "wards"', 'boundaries = "Wards!"'), "key 'products.1.boundaries'"),
        (
            ('boundaries = "wards"', 'boundaries = "wards"\nboundaries_fingerprint = "abc"'),
            "boundaries_fingerprint': expected 'sha256:'",
        ),
        (
            (
                'boundaries = "wards"',
                'boundaries = "wards"\narea = { partner = "council", attribute = "ward" }',
            ),
            "takes its area from by",
        ),
        (('kind = "map"', 'kind = "count"'), "boundaries: only for kind = 'map'"),
    ],
)
def test_a_map_that_cannot_be_drawn_is_refused_at_load(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = MAP[: MAP.index('id = "ward_map"')] + MAP[MAP.index('id = "ward_map"') :].replace(
        *change
    )
    with pytest.raises(ConfigError, match=message):
        load_project(write(tmp_path, text))


def test_one_boundary_set_is_pinned_to_one_file(tmp_path: Path) -> None:
    second = MAP[MAP.rindex("[[products]]") :].replace('"ward_map"', '"ward_map_2"')
    text = MAP + 'boundaries_fingerprint = "sha256:' + "a" * 64 + '"\n\n' + second
    text += 'boundaries_fingerprint = "sha256:' + "b" * 64 + '"\n'
    with pytest.raises(ConfigError, match="pin boundaries 'wards' to 2 different fingerprints"):
        load_project(write(tmp_path, text))


def test_a_count_has_no_numerator(tmp_path: Path) -> None:
    text = MAP.replace('kind = "map"', 'kind = "count"').replace('boundaries = "wards"\n', "")
    text += 'numerator = { "police.age" = ["65+"] }\n'
    with pytest.raises(ConfigError, match="a count has none"):
        load_project(write(tmp_path, text))


COORDINATOR = f"""\
project = "project.toml"
project_fingerprint = "sha256:{"a" * 64}"
state_dir = "state"
output_dir = "products"

[tls]
ca = "tls/ca.crt"
cert = "tls/coordinator.crt"
key = "tls/coordinator.key"
"""


def test_coordinator_boundary_files_resolve_against_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    text = COORDINATOR + '\n[boundaries]\nwards = "maps/wards.geojson"\nlsoas = "/srv/lsoas.json"\n'
    config = load_coordinator_config(write(tmp_path / "conf", text, "coordinator.toml"))
    assert config.boundaries == {
        "wards": (tmp_path / "conf" / "maps" / "wards.geojson").resolve(),
        "lsoas": Path("/srv/lsoas.json"),
    }
    assert load_coordinator_config(write(tmp_path, COORDINATOR, "c.toml")).boundaries == {}
    bad = COORDINATOR + '\n[boundaries]\n"Ward Map" = "wards.geojson"\n'
    with pytest.raises(
        ConfigError, match=r"key 'boundaries.Ward Map.\[key\]': expected lower-case"
    ):
        load_coordinator_config(write(tmp_path, bad, "c.toml"))


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ('bits = "1024"', "linkage.bits"),
        ('stable_entity_ids = "no"', "linkage.stable_entity_ids"),
        ("bits = 1024.0", "linkage.bits"),
    ],
)
def test_protective_settings_of_the_wrong_type_are_refused_not_coerced(
    tmp_path: Path, setting: str, key: str
) -> None:
    path = write(tmp_path, PROJECT.replace("threshold = 0.8", f"threshold = 0.8\n{setting}"))
    with pytest.raises(ConfigError) as caught:
        load_project(path)
    assert f"{path}: key '{key}'" in str(caught.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('[rounds]\nauto_release = "false"\n', "rounds.auto_release"),
        ('[disclosure]\nmin_cell = "10"\n', "disclosure.min_cell"),
        ('[retention]\nclk_days = "30"\n', "retention.clk_days"),
    ],
)
def test_release_disclosure_and_retention_settings_must_have_their_type(
    tmp_path: Path, section: str, key: str
) -> None:
    path = write(tmp_path, PROJECT + "\n" + section)
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_project(path)


def test_a_min_cell_below_three_needs_an_explicit_override(tmp_path: Path) -> None:
    weak = write(tmp_path, PROJECT + "\n[disclosure]\nmin_cell = 2\n")
    with pytest.raises(ConfigError) as caught:
        load_project(weak)
    message = str(caught.value)
    assert f"{weak}: key 'disclosure'" in message
    assert "min_cell 2 would publish counts of fewer than 3 people" in message
    assert "allow_weak_disclosure = true" in message
    allowed = write(
        tmp_path,
        PROJECT + "\n[disclosure]\nmin_cell = 1\nallow_weak_disclosure = true\n",
        name="test-project.toml",
    )
    assert load_project(allowed).project.disclosure.min_cell == 1
    three = write(tmp_path, PROJECT + "\n[disclosure]\nmin_cell = 3\n", name="three.toml")
    assert load_project(three).project.min_cell() == 3
