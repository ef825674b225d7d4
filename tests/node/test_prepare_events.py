"""A node prepares a round with an attribute derived from its event table, without a network.

A node derives only the attributes the project's products take from it, and the one kind of
product, ``partner_count_by_area``, takes an area; this project names an event attribute as the
"area" so that the node derives it. A federated round over event attributes waits for a product
that counts by one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from oda_fed.config import Project
from oda_fed.errors import InputDataError
from oda_fed.node import tasks
from oda_fed.node.sources import layout_for
from oda_fed.node.state import NodeState
from oda_fed.transport.crossing import Crossings

PROJECT = {
    "name": "events",
    "title": "Events",
    "purpose": "test",
    "legal_gateway": "test",
    "partners": [{"id": "council", "name": "Council"}, {"id": "police", "name": "Police"}],
    "linkage": {"fields": [{"name": "last_name", "type": "name"}]},
    "attributes": [
        {
            "name": "incidents_12m",
            "partner": "police",
            "derive": "event_count",
            "events": "incidents",
            "event_types": ["asb"],
            "at": "2024-04-01",
            "window_days": 365,
            "bands": [0, 1, 3],
        }
    ],
    "products": [
        {
            "id": "by_incidents",
            "kind": "partner_count_by_area",
            "title": "People by incidents",
            "area": {"partner": "police", "attribute": "incidents_12m"},
            "recipients": ["coordinator"],
        }
    ],
}
EXTRACT = "person_ref,surname\nP1,Okafor\nP2,Nicholson\nP3,Smith\n"
EVENTS = (
    "ref,person,date,type\n"
    "1,P1,2024-03-01,asb\n2,P1,2023-12-25,asb\n3,P1,2024-01-02,asb\n"  # three: 3+
    "4,P2,2024-02-01,fire\n5,P2,2022-01-01,asb\n"  # none of asb in the year: 0
    "6,P3,2024-04-01,asb\n7,P3,2024-04-02,asb\n"  # one on `at`, one after: 1-2
    "8,Z9,2024-03-01,asb\n"  # not in the extract
)


@pytest.fixture
def node_state(tmp_path: Path, node_config) -> Callable[..., NodeState]:
    """The police node's state, with ``events`` as its event tables."""
    return lambda *, events: _node_state(tmp_path, node_config, events=events)


def _node_state(tmp_path: Path, node_config, *, events: list[dict]) -> NodeState:
    (tmp_path / "extract.csv").write_text(EXTRACT)
    project = Project.model_validate(PROJECT)
    source = {
        "path": tmp_path / "extract.csv",
        "record_id": "person_ref",
        "columns": {"last_name": "surname"},
        "events": events,
    }
    config, loaded = node_config(tmp_path, project, partner="police", source=source)
    return NodeState(
        config=config,
        loaded=loaded,
        secret=b"s" * 32,
        record_key=None,
        layout=layout_for(project, "police", config.source),
        crossings=Crossings(tmp_path / "audit.jsonl", party="police", project=loaded.fingerprint),
    )


def test_a_round_is_prepared_with_the_banded_count_under_random_refs(
    tmp_path: Path, node_state
) -> None:
    (tmp_path / "incidents.csv").write_text(EVENTS)
    table = {"name": "incidents", "path": str(tmp_path / "incidents.csv"),
             "record_id": "person", "date": "date", "type": "type"}  # fmt: skip
    state = node_state(events=[table])
    files = state.round_files("r1")
    tasks._prepare(state, "r1", files)
    by_record = dict(zip(files.record_ids(), files.attribute("incidents_12m"), strict=True))
    assert by_record == {"P1": "3+", "P2": "0", "P3": "1-2"}
    state.crossings.close()


def test_a_missing_event_table_stops_the_round_before_anything_is_saved(node_state) -> None:
    state = node_state(events=[])
    files = state.round_files("r1")
    with pytest.raises(InputDataError, match=r'add \[\[source.events\]\] with name = "incidents"'):
        tasks._prepare(state, "r1", files)
    assert not files.prepared
    state.crossings.close()
