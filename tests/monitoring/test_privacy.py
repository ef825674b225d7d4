"""The attacker's view: whoever monitors the coordinator and the nodes reads every metric and
every log line of a real round. None of it may carry a record id, a name, a date of birth, an
address or postcode, an extract's file name, or the linkage secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from oda_fed.config import load_node_config
from oda_fed.monitoring.logs import JsonFormatter
from oda_fed.pki import read_secret, secret_fingerprints

pytestmark = pytest.mark.grpc

#: Fields of the extracts whose values are personal data.
PERSONAL = ("first_name", "last_name", "date_of_birth", "address", "postcode", "nhs_number")


@contextmanager
def json_logs() -> Iterator[io.StringIO]:
    """Every oda_fed record down to DEBUG, and everything else at the root's level, as JSON
    lines, as ``--log-format json`` writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    ours = logging.getLogger("oda_fed")
    level = ours.level
    ours.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield out
    finally:
        logging.getLogger().removeHandler(handler)
        ours.setLevel(level)


def _needles(fed) -> dict[str, str]:
    """What must never be seen, each with what it is."""
    found: dict[str, str] = {}
    for profile in fed.synthetic.profiles:
        extract = fed.synthetic.partners[profile.id]
        for record_id in extract[profile.record_id_column]:
            found[str(record_id)] = f"{profile.id} record id"
        for field in PERSONAL:
            column = profile.columns.get(field)
            if column is None:
                continue
            for value in extract[column].dropna().astype(str):
                # Long enough to be the value, not a word of a log message that happens to
                # contain it ("Hill" in "HillClimb"); dates and codes always are.
                if len(value.strip()) >= 5:
                    found[value.strip()] = f"{profile.id} {field}"
        source = load_node_config(fed.node_config(profile.id)).source.path
        found[source.name] = f"{profile.id}'s extract file name"
    return found


def test_metrics_and_json_logs_carry_nothing_personal_nor_the_secret(monitored, scrape) -> None:
    fed = monitored.federation
    with json_logs() as logs:
        status, nodes = monitored.run_round()
        coordinator = scrape(monitored.port)
    assert status.state == "closed", status.message

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert len(lines) > 20
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    # Context travels as fields, not only in the message.
    assert any(line.get("round_id") == status.round_id for line in lines)
    assert any(line.get("partner") in fed.partners for line in lines)

    seen = {"coordinator /metrics": coordinator.text, "JSON logs": logs.getvalue()}
    seen |= {f"{p}'s /metrics": s.text for p, s in nodes.items()}
    # The metrics and logs did say something about the round.
    assert coordinator.value("oda_fed_upload_chunks_total") > 0
    needles = _needles(fed)
    assert len(needles) > 1000
    for where, text in seen.items():
        leaked = sorted({f"{what}: {n!r}" for n, what in needles.items() if n in text})
        assert not leaked, f"{where} shows {leaked[:10]}"

    secret = read_secret(fed.workdir / "nodes" / "council" / "linkage.secret")
    for where, text in seen.items():
        data = text.encode("utf-8")
        for form in secret_fingerprints(secret):
            assert form not in data, f"the linkage secret is in the {where}"
