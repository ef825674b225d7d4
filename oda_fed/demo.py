"""``oda-fed demo``: a whole federation on localhost, end to end, over two rounds.

One coordinator and three nodes run as separate processes and talk gRPC over mutual TLS with
certificates from a partnership CA made for the demo. Each node's key is created in the node's own
folder and only a certificate signing request goes to the CA. No secret file is handed round: when
the nodes first run they agree the linkage secret through the coordinator, which relays only their
signed public keys and the secret wrapped for each of them (:mod:`oda_fed.node.keys`).

Each partner has an extract and an event table (the council's complaints, the police's incidents,
social care's referrals). The project links them and releases a count by ward, a map, a
cross-tabulation, a rate by ward, a prioritised list to the council and an alert to social care.
Round 1 releases at once and sets the alert's baseline. Between the rounds the partners refresh
their extracts: a month of new events, and the council closes a few records, fewer than
``min_cell``. Round 2's alert fires for social care's clients newly in a domestic abuse incident,
and the release ledger holds the cells that moved by those few records: the round waits for the
operator, who releases it (as one would after reading its report) with those cells suppressed.

The demo plays every role, so the folders it writes are laid out as the parties' machines would be:

    WORKDIR/data/          synthetic extracts and event tables, one each per partner, and truth.csv
    WORKDIR/ca/            the partnership CA (kept by whoever the partnership trusts)
    WORKDIR/coordinator/   coordinator.toml, its certificate, ward boundaries, state, audit log,
                           products
    WORKDIR/nodes/<id>/    node.toml, key, certificate, audit log, entity ids; state/keys/ holds its
                           agreement key and the agreed linkage secret
    WORKDIR/project.toml   the project agreement
    WORKDIR/logs/          each process's log
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import tomli_w

from oda_fed.audit.folder import verify_folder
from oda_fed.config import fingerprint_bytes, load_coordinator_config, load_project
from oda_fed.coordinator.admin import AdminClient, RoundStatus
from oda_fed.coordinator.pseudonyms import Pseudonyms
from oda_fed.demo_rounds import (
    CLOSED_RECORDS,
    Changes,
    Held,
    held_cells,
    records_received,
    refresh_extracts,
)
from oda_fed.errors import OdaFedError
from oda_fed.matching import Quality
from oda_fed.matching.metrics import truth_quality
from oda_fed.pki import create_request, init_ca, issue, sign_request
from oda_fed.pki.secret import SECRET_BYTES, write_secret
from oda_fed.pki.trust import load_certificate
from oda_fed.synth import (
    ErrorLevel,
    Synthetic,
    generate,
    project_document,
    write,
    write_ward_boundaries,
)
from oda_fed.synth.events import END, EVENT_PROFILES, event_file, make_events, write_events
from oda_fed.synth.project import (
    ALERT_ID,
    LIST_ID,
    TABLES_AT,
    analysis_columns,
)
from oda_fed.transport.protocol import RoundState

MARKER = ".oda-fed-demo"
#: A node's secret file, in a federation set up without agreement.
SECRET_FILE = "linkage.secret"


@dataclass
class RoundResult:
    """One round of the demo, as the operator and the nodes saw it.

    Attributes
    ----------
    status
        The round's final status (closed).
    quality
        Precision and recall of its linkage against the synthetic truth.
    products
        The coordinator's folder of the round's products and reports.
    awaiting
        Its status when it stopped for the operator, or None when it was released at once.
    held
        The cells the release ledger held.
    records
        Record-level product id to partner id to the rows that partner's node received.
    """

    status: RoundStatus
    quality: Quality
    products: Path
    awaiting: RoundStatus | None = None
    held: list[Held] = field(default_factory=list)
    records: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def round_id(self) -> str:
        return self.status.round_id

    @property
    def report(self) -> Path:
        """The round report (internal: for the operator and the approver)."""
        return Path(self.status.report_path)


@dataclass
class DemoResult:
    """What the demo found: its two rounds, what changed between them, and the audit logs'
    verification. ``records`` is each partner's record count in round 1."""

    workdir: Path
    records: dict[str, int]
    rounds: list[RoundResult]
    changes: Changes | None
    kinds: dict[str, str]  # product id to its kind, in the project's order
    audit_ok: bool
    audit_entries: dict[str, int]
    audit_problems: list[str] = field(default_factory=list)
    # Per party, how much of its log a checkpoint cosigned by another party covers.
    audit_witnessed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _prepare_workdir(workdir: Path) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise OdaFedError(
                f"{workdir} exists and is not an earlier demo folder; choose another "
                "--workdir or empty it"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("written by oda-fed demo; safe to delete\n")


def _write_toml(path: Path, doc: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tomli_w.dumps(doc).encode("utf-8"))
    return path


class Processes:
    """The demo's child processes; all of them are stopped on the way out."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "oda_fed", *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        self.procs[name] = proc
        return proc

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() not in (None, 0):
                tail = (
                    (self.logs / f"{name}.log")
                    .read_text(errors="replace")
                    .strip()
                    .splitlines()[-3:]
                )
                raise OdaFedError(f"{name} exited with code {proc.returncode}: " + " | ".join(tail))

    def wait(self, name: str, timeout: float) -> int:
        return self.procs[name].wait(timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


#: The demo's map: residents known to two or more services, by ward, on the made-up wards.
MAP_ID = "known_to_several_services_map"


def _map_product(council: str, wards: Path) -> dict:
    return {
        "id": MAP_ID,
        "kind": "map",
        "title": "Residents known to two or more services, by ward",
        "by": [f"{council}.ward"],
        "cohort": {"min_partners": 2},
        "boundaries": "wards",
        # Pinned, so every partner knows which boundaries the map was drawn on.
        "boundaries_fingerprint": fingerprint_bytes(wards.read_bytes()),
        "recipients": [council, "coordinator"],
    }


def setup(
    workdir: Path,
    *,
    population: int,
    seed: int,
    errors: ErrorLevel,
    with_map: bool = False,
    analysis: bool = False,
    agree_secret: bool = False,
) -> tuple[Synthetic, Path]:
    """Write data, project, PKI and coordinator config; return the synthetic data.

    ``agree_secret`` (the demo's way) writes no secret: the nodes agree one through the
    coordinator when they first run. Without it, every node gets the same secret file, as
    partners who exchanged one themselves would have; tests that run one node alone use that.

    ``with_map`` adds the demo's map product to the project (the coordinator is given the
    ward boundaries either way). ``analysis`` adds the analysis of the partners' event tables
    (:func:`~oda_fed.synth.project.project_document`) and writes the tables as extracted on
    its tables' day; give the same flag to :func:`write_node_configs`.
    """
    _prepare_workdir(workdir)
    synthetic = generate(population=population, partners=3, seed=seed, errors=errors)
    write(synthetic, workdir / "data")
    if analysis:
        write_events(make_events(synthetic, seed=seed, until=TABLES_AT), workdir / "data")
    profiles = synthetic.profiles
    coord = workdir / "coordinator"
    coord.mkdir(parents=True, exist_ok=True)
    # Public geography the coordinator draws maps on; made up, like the region's wards.
    wards = write_ward_boundaries(coord / "wards.geojson")
    project = project_document(profiles, analysis=analysis)
    if with_map:
        project["products"].append(_map_product(profiles[0].id, wards))
    # The demo releases its products as soon as they pass disclosure control; a real project
    # leaves auto_release off, so an operator reviews the reports first.
    project["rounds"] = {"auto_release": True, "deadline_hours": 1}
    project_path = _write_toml(workdir / "project.toml", project)
    fingerprint = fingerprint_bytes(project_path.read_bytes())

    ca_dir = workdir / "ca"
    init_ca(ca_dir, name="oda-fed demo partnership CA")
    cert, key = issue(
        ca_dir=ca_dir,
        name="coordinator",
        role="coordinator",
        out_dir=coord / "tls",
        hosts=["localhost", "127.0.0.1"],
    )
    op_cert, op_key = issue(ca_dir=ca_dir, name="operator", role="operator", out_dir=coord / "tls")
    shutil.copyfile(ca_dir / "ca.crt", coord / "tls" / "ca.crt")
    _write_toml(
        coord / "coordinator.toml",
        {
            "project": "../project.toml",
            "project_fingerprint": fingerprint,
            "listen": "127.0.0.1:0",
            "server_name": "localhost",
            "state_dir": "state",
            "output_dir": "products",
            "audit_dir": "audit",
            "tls": {"ca": "tls/ca.crt", "cert": f"tls/{cert.name}", "key": f"tls/{key.name}"},
            "operator": {"cert": f"tls/{op_cert.name}", "key": f"tls/{op_key.name}"},
            "boundaries": {"wards": wards.name},
            # The CA's own list, as the demo's CA is on this machine (elsewhere: a copy of it).
            "revocation_list": "../ca/ca.crl",
        },
    )

    exchanged = None if agree_secret else secrets.token_bytes(SECRET_BYTES)
    for profile in profiles:
        node = workdir / "nodes" / profile.id
        csr = create_request(name=profile.id, role="node", out_dir=node / "tls")  # key stays here
        sign_request(ca_dir=ca_dir, csr_path=csr, out_path=node / "tls" / f"{profile.id}.crt")
        shutil.copyfile(ca_dir / "ca.crt", node / "tls" / "ca.crt")
        if exchanged is not None:
            write_secret(node / SECRET_FILE, exchanged)
    return synthetic, project_path


def write_node_configs(
    workdir: Path, synthetic: Synthetic, *, port: int, analysis: bool = False
) -> list[Path]:
    """Write each node's node.toml; ``analysis`` as for :func:`setup`."""
    fingerprint = fingerprint_bytes((workdir / "project.toml").read_bytes())
    paths = []
    for profile in synthetic.profiles:
        node = workdir / "nodes" / profile.id
        source = {
            "path": f"../../data/{profile.id}.csv",
            "record_id": profile.record_id_column,
            "columns": dict(profile.columns),
            "attributes": dict(profile.attributes),
            "date_format": profile.date_format,
        }
        if analysis:
            source["attributes"].update(analysis_columns(profile))
            events = EVENT_PROFILES[profile.id]
            source["events"] = [
                {
                    "name": events.name,
                    "path": f"../../data/{event_file(profile.id, events.name)}",
                    "record_id": profile.record_id_column,
                    "date": events.date_column,
                    "type": events.type_column,
                    "date_format": events.date_format,
                }
            ]
        paths.append(
            _write_toml(
                node / "node.toml",
                {
                    "partner": profile.id,
                    "project": "../../project.toml",
                    "project_fingerprint": fingerprint,
                    **({"secret_file": SECRET_FILE} if (node / SECRET_FILE).exists() else {}),
                    "workdir": "state",
                    "audit_dir": "audit",
                    "coordinator": {"address": f"127.0.0.1:{port}", "server_name": "localhost"},
                    "tls": {
                        "ca": "tls/ca.crt",
                        "cert": f"tls/{profile.id}.crt",
                        "key": f"tls/{profile.id}.key",
                    },
                    "source": source,
                },
            )
        )
    return paths


def evaluate(workdir: Path, synthetic: Synthetic, *, round_id: str | None = None) -> Quality:
    """Precision and recall of a federated round (the latest one by default) against the
    synthetic truth.

    Only the demo can do this: it holds every node's local entity ids and the truth. No party in a
    real federation sees both.
    """

    def entities(partner: str) -> Path:
        state = workdir / "nodes" / partner / "state"
        return (
            state / "entities.csv"
            if round_id is None
            else state / "rounds" / round_id / "entities.csv"
        )

    # Each node holds its own pseudonyms of the entity ids; the coordinator's key maps them back.
    names = Pseudonyms.load(workdir / "coordinator" / "state")

    def members(partner: str) -> pd.DataFrame:
        frame = pd.read_csv(entities(partner), dtype=str, keep_default_na=False)
        frame["entity_id"] = [names.unmask(partner, p) for p in frame.entity_id]
        return frame.assign(source=partner)

    return truth_quality(
        pd.concat(members(profile.id) for profile in synthetic.profiles), synthetic.truth
    )


def _run_round(
    admin: AdminClient, *, timeout: float, on_status
) -> tuple[RoundStatus, RoundStatus | None]:
    """Start a round and wait for it to close; release it as the operator if it stops for one
    (the demo sets auto_release, so it stops only when the release ledger holds cells).
    Returns its final status and, if it stopped, its status then."""
    status = admin.start_round()
    status = admin.wait(status.round_id, timeout=timeout, on_status=on_status)
    awaiting = None
    if status.state is RoundState.AWAITING_RELEASE:
        awaiting = status
        admin.release_round(status.round_id)
        status = admin.wait(status.round_id, timeout=timeout, on_status=on_status)
    if status.state is not RoundState.CLOSED:
        raise OdaFedError(f"round {status.round_id} {status.state}: {status.message}")
    return status, awaiting


def run_demo(
    workdir: Path,
    *,
    population: int = 3000,
    seed: int = 7,
    errors: ErrorLevel = "medium",
    timeout: float = 300.0,
    on_step=None,
    on_status=None,
) -> DemoResult:
    """Run the whole federation over two rounds and return what it found. See the module
    docstring."""
    started = time.monotonic()
    step = on_step or (lambda _msg: None)
    workdir = workdir.resolve()
    step("generating synthetic partners, event tables, project, CA and certificates")
    synthetic, project_path = setup(
        workdir,
        population=population,
        seed=seed,
        errors=errors,
        with_map=True,
        analysis=True,
        agree_secret=True,
    )
    kinds = {p.id: p.kind for p in load_project(project_path).project.products}
    coord_cfg_path = workdir / "coordinator" / "coordinator.toml"
    port_file = workdir / "coordinator" / "port"
    procs = Processes(workdir / "logs")
    rounds: list[RoundResult] = []
    changes = None
    try:
        step("starting the coordinator")
        procs.start(
            "coordinator",
            "coordinator",
            "serve",
            "--config",
            str(coord_cfg_path),
            "--port-file",
            str(port_file),
        )
        deadline = time.monotonic() + 60
        while not port_file.exists():
            procs.check()
            if time.monotonic() > deadline:
                raise OdaFedError(
                    "the coordinator did not start within 60s; see logs/coordinator.log"
                )
            time.sleep(0.1)
        port = int(port_file.read_text())
        step(f"starting {len(synthetic.profiles)} nodes (each dials out to port {port})")
        for path in write_node_configs(workdir, synthetic, port=port, analysis=True):
            procs.start(path.parent.name, "node", "run", "--config", str(path), "--rounds", "2")
        admin = AdminClient(load_coordinator_config(coord_cfg_path), address=f"127.0.0.1:{port}")

        def watch(s: RoundStatus) -> None:
            procs.check()
            if on_status is not None:
                on_status(s)

        try:
            for number in (1, 2):
                if number == 2:
                    step(
                        f"refreshing the extracts to {END:%Y-%m-%d} and closing "
                        f"{CLOSED_RECORDS} council records"
                    )
                    changes = refresh_extracts(workdir, synthetic, seed=seed)
                step(f"running linkage round {number}")
                status, awaiting = _run_round(admin, timeout=timeout, on_status=watch)
                if awaiting is not None:
                    step(f"round {number} held cells for the operator; released as the operator")
                rounds.append(_round_result(workdir, synthetic, status, awaiting))
        finally:
            admin.close()
        for profile in synthetic.profiles:
            procs.wait(profile.id, timeout=60)
    finally:
        procs.stop_all()
    procs.check()

    step("verifying the audit logs and their cosigned checkpoints")
    audit = verify_folder(
        workdir,
        project=load_project(workdir / "project.toml"),
        ca=load_certificate(workdir / "ca" / "ca.crt", what="CA certificate"),
    )
    reports = audit.logs
    problems = [p for r in reports for p in r.problems]
    problems += audit.parties + audit.checkpoints + audit.crossings + audit.agreement
    return DemoResult(
        workdir=workdir,
        records={p.partner: p.records for p in rounds[0].status.partners},
        rounds=rounds,
        changes=changes,
        kinds=kinds,
        audit_ok=not problems,
        audit_entries={(r.party or r.path.stem): r.entries for r in reports},
        audit_witnessed=audit.witnessed,
        audit_problems=problems,
        seconds=time.monotonic() - started,
    )


def _round_result(
    workdir: Path, synthetic: Synthetic, status: RoundStatus, awaiting: RoundStatus | None
) -> RoundResult:
    products = workdir / "coordinator" / "products" / status.round_id
    return RoundResult(
        status=status,
        quality=evaluate(workdir, synthetic, round_id=status.round_id),
        products=products,
        awaiting=awaiting,
        held=held_cells(products),
        records={
            product: records_received(workdir, status.round_id, product)
            for product in (LIST_ID, ALERT_ID)
        },
    )
