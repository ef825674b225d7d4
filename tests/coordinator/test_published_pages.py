"""What a federated round publishes: the dashboard of a released round, listed in the index over
rounds, never that of a round cancelled or still awaiting release; and every page of a real round
opened in headless Chromium."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from oda_fed.config import load_project
from oda_fed.coordinator.reports import write_round_index
from oda_fed.coordinator.store import Store
from oda_fed.transport.protocol import RoundState

pytestmark = pytest.mark.grpc


def round_until(fed, *, state: RoundState):
    threads = [fed.run_node(p) for p in fed.partners]
    admin = fed.admin()
    try:
        status = admin.wait(admin.start_round().round_id, timeout=120)
        assert status.state is state, status.message
    finally:
        admin.close()
    return status, threads


def join(threads) -> None:
    for thread, errors in threads:
        thread.join(timeout=60)
        assert not thread.is_alive() and not errors, errors


def test_only_released_rounds_are_published(federation) -> None:
    federation.amend_project(lambda doc: doc["rounds"].update(auto_release=False))
    out = federation.workdir / "coordinator" / "products"
    cancelled, threads = round_until(federation, state=RoundState.AWAITING_RELEASE)
    admin = federation.admin()
    admin.cancel_round(cancelled.round_id, reason="the council's extract was the wrong month")
    join(threads)
    assert not (out / cancelled.round_id / "dashboard.html").exists()

    released, threads = round_until(federation, state=RoundState.AWAITING_RELEASE)
    assert not (out / released.round_id / "dashboard.html").exists()
    admin.release_round(released.round_id)
    assert admin.wait(released.round_id, timeout=60).state is RoundState.CLOSED
    admin.close()
    join(threads)

    index = (out / "index.html").read_text()
    assert f'href="./{released.round_id}/dashboard.html"' in index
    assert cancelled.round_id not in index
    dashboard = (out / released.round_id / "dashboard.html").read_text()
    assert "Residents known to 1, 2 or 3 services, by ward" in dashboard
    # Released products only: none of the operator's figures.
    for internal in ("Precision", "Records per partner", "Match threshold", 'id="internal"'):
        assert internal not in dashboard

    # The index can be written again from the coordinator's store at any time.
    federation.stop_coordinator()
    (out / "index.html").unlink()
    store = Store(federation.workdir / "coordinator" / "state" / "coordinator.sqlite")
    project = load_project(federation.workdir / "project.toml").project
    try:
        state = SimpleNamespace(output_dir=out, project=project, store=store)
        assert write_round_index(state).read_text() == index
    finally:
        store.close()


def test_the_pages_of_a_released_round_open_in_a_browser(federation, open_page) -> None:
    status, threads = round_until(federation, state=RoundState.CLOSED)
    join(threads)
    out = federation.workdir / "coordinator" / "products"

    index = open_page(out / "index.html")
    index.assert_clean()
    [href] = index.page.eval_on_selector_all("table.rounds a", "els => els.map(a => a.href)")
    index.page.goto(href)
    index.page.wait_for_load_state("load")
    assert index.page.url.endswith(f"/{status.round_id}/dashboard.html")
    assert index.page.locator("#about").is_visible()
    assert index.page.locator("td.suppressed").first.inner_text() == "suppressed"
    assert [w > 0 for _, w in index.images()] == [True]
    index.assert_clean()

    for internal in (Path(status.report_path), Path(status.quality_report_path)):
        opened = open_page(internal)
        opened.assert_clean()
        assert opened.page.locator("#internal").is_visible()
        assert all(complete and width > 0 for complete, width in opened.images())

    # The page a partner received with its product stands alone too.
    product = "known_to_services_by_ward"
    received = (federation.workdir / "nodes" / "police" / "state" / "releases" / status.round_id
                / product / f"{product}.html")  # fmt: skip
    opened = open_page(received)
    opened.assert_clean()
    note = opened.page.locator("#note")
    assert note.is_visible() and status.round_id in note.inner_text()
    assert [w > 0 for _, w in opened.images()] == [True]
