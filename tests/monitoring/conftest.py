"""A federation whose coordinator and nodes serve their metrics, and a scraper over real HTTP."""

from __future__ import annotations

import socket
import threading
import tomllib
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
import tomli_w
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Scrape:
    """One scrape of ``/metrics``: its text, and every sample by name and labels."""

    text: str
    families: set[str] = field(default_factory=set)
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(v for got, v in self.samples.get(name, []) if labels.items() <= got.items())


def scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode("utf-8")
    found = Scrape(text)
    for family in text_string_to_metric_families(text):
        found.families.add(family.name)
        for sample in family.samples:
            found.samples[sample.name].append((dict(sample.labels), sample.value))
    return found


@dataclass
class Monitored:
    """``federation`` with metrics on: the coordinator's port and each node's."""

    federation: object
    port: int
    node_ports: dict[str, int]

    def run_round(self) -> tuple[object, dict[str, Scrape]]:
        """One round with every node; its status, and each node's scrape taken once the round
        has ended, before the node stops."""
        fed = self.federation
        agents = {p: fed.agent(p) for p in fed.partners}
        errors: list[BaseException] = []

        def run(agent) -> None:
            try:
                agent.run(rounds=1, give_up_after=20)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(a,), daemon=True) for a in agents.values()]
        for t in threads:
            t.start()
        try:
            admin = fed.admin()
            try:
                status = admin.wait(admin.start_round().round_id, timeout=120)
            finally:
                admin.close()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
            return status, {p: scrape(self.node_ports[p]) for p in agents}
        finally:
            for agent in agents.values():
                agent.close()


def _set(path, **values: str) -> None:
    doc = tomllib.loads(path.read_text())
    doc.update(values)
    path.write_text(tomli_w.dumps(doc))


@pytest.fixture
def monitored(federation) -> Monitored:
    """The federation's coordinator restarted with ``metrics`` set, and every node.toml with
    its own ``metrics`` address."""
    federation.stop_coordinator()
    port = free_port()
    _set(federation.coordinator_config, metrics=f"127.0.0.1:{port}")
    federation.start_coordinator(same_port=True)
    node_ports = {}
    for partner in federation.partners:
        node_ports[partner] = free_port()
        _set(federation.node_config(partner), metrics=f"127.0.0.1:{node_ports[partner]}")
    return Monitored(federation, port, node_ports)


@pytest.fixture(name="scrape")
def _scrape():
    """Scrape ``/metrics`` on a loopback port: ``scrape(port)`` -> :class:`Scrape`."""
    return scrape
