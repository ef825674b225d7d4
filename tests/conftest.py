"""Shared fixtures: a federation folder (data, project, CA, certificates, configs) and a running
coordinator on a loopback port, with real mutual TLS; and pages opened in headless Chromium."""

from __future__ import annotations

import queue
import shutil
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import tomli_w

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from oda_fed.coordinator.admin import AdminClient
    from oda_fed.node.agent import NodeAgent
    from oda_fed.synth import Synthetic

#: Fixtures that start a browser; a test using one is marked ``browser`` whatever it says.
BROWSER_FIXTURES = frozenset({"browser", "open_page"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # So that `-m "not browser"` deselects every test that needs Chromium.
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


def second_certificate(
    ca_dir: Path, name: str, out_dir: Path, *, registered: bool = False
) -> tuple[Path, Path]:
    """Another valid node certificate for partner ``name``, which the CA itself would refuse to
    sign while ``name`` has one: signed by a copy of the CA's key and certificate kept apart
    from its register (a CA used where it should not have been). ``registered`` records it in
    the real register afterwards, as a CA holder's mistake would be."""
    from oda_fed.pki import issue, load_certificate
    from oda_fed.pki.register import record, start_register

    copy = out_dir / "ca-copy"
    copy.mkdir(parents=True)
    for part in ("ca.crt", "ca.key"):
        shutil.copy2(ca_dir / part, copy / part)
    start_register(copy)
    try:
        cert, key = issue(ca_dir=copy, name=name, role="node", out_dir=out_dir)
    finally:
        shutil.rmtree(copy)
    if registered:
        record(ca_dir, load_certificate(cert))
    return cert, key


@pytest.fixture(name="second_certificate")
def _second_certificate() -> Callable[..., tuple[Path, Path]]:
    return second_certificate


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def synth_folder(folder: Path, **generate: object) -> Path:
    """``folder`` with a synthetic population's CSV files (one per partner, and truth.csv) and
    its project.toml, as ``oda-fed synth`` writes them; ``generate`` as
    :func:`oda_fed.synth.generate` takes it."""
    from oda_fed.synth import generate as make
    from oda_fed.synth import write, write_project

    synthetic = make(**generate)
    write(synthetic, folder)
    write_project(synthetic, folder / "project.toml")
    return folder


@pytest.fixture(name="synth_folder", scope="session")
def _synth_folder() -> Callable[..., Path]:
    return synth_folder


@dataclass
class Federation:
    workdir: Path
    synthetic: Synthetic  # noqa: F821
    port: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: list[BaseException] = field(default_factory=list)
    #: The coordinator's PostgreSQL URL; None for SQLite in its state_dir.
    database: str | None = None

    @property
    def coordinator_config(self) -> Path:
        return self.workdir / "coordinator" / "coordinator.toml"

    def node_config(self, partner: str) -> Path:
        return self.workdir / "nodes" / partner / "node.toml"

    @property
    def partners(self) -> list[str]:
        return [p.id for p in self.synthetic.profiles]

    def start_coordinator(self, *, same_port: bool = False) -> None:
        """Serve in a thread; ``same_port`` rebinds the previous port, as a restarted service would."""
        if same_port:
            doc = tomllib.loads(self.coordinator_config.read_text())
            doc["listen"] = f"127.0.0.1:{self.port}"
            self.coordinator_config.write_text(tomli_w.dumps(doc))
        self._stop = threading.Event()
        port_file = self.workdir / "coordinator" / "port"
        port_file.unlink(missing_ok=True)
        from oda_fed.config import load_coordinator_config
        from oda_fed.coordinator.server import serve
        from oda_fed.demo import write_node_configs

        cfg = load_coordinator_config(self.coordinator_config)

        def target() -> None:
            try:
                serve(
                    cfg,
                    config_path=self.coordinator_config,
                    port_file=port_file,
                    stop_event=self._stop,
                    grace=1.0,
                )
            except BaseException as exc:  # surfaced by the test through .errors
                self.errors.append(exc)

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, "coordinator did not start"
            time.sleep(0.05)
        new_port = int(port_file.read_text())
        if new_port != self.port:
            self.port = new_port
            write_node_configs(self.workdir, self.synthetic, port=self.port)

    def stop_coordinator(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def amend_project(self, amend: Callable[[dict], None]) -> None:
        """Amend the project (``amend`` edits its TOML document), re-pin it everywhere and
        restart the coordinator, as partners do when they sign an amended agreement."""
        from oda_fed.demo import write_node_configs

        self.stop_coordinator()
        project = self.workdir / "project.toml"
        doc = tomllib.loads(project.read_text())
        amend(doc)
        project.write_text(tomli_w.dumps(doc))
        coordinator = tomllib.loads(self.coordinator_config.read_text())
        coordinator["project_fingerprint"] = self.fingerprint
        self.coordinator_config.write_text(tomli_w.dumps(coordinator))
        self.start_coordinator()
        # Rewritten whatever port was bound, so the nodes pin the amended project too.
        write_node_configs(self.workdir, self.synthetic, port=self.port)

    def store(self):
        """The coordinator's store, opened as a reader would (not the serving coordinator's
        lock): on PostgreSQL when the federation's coordinator keeps its state there."""
        from oda_fed.coordinator.postgres import database_url
        from oda_fed.coordinator.store import Store

        if self.database:
            return Store(database_url(self.database))
        return Store(self.workdir / "coordinator" / "state" / "coordinator.sqlite")

    @property
    def fingerprint(self) -> str:
        from oda_fed.config import fingerprint_bytes

        return fingerprint_bytes((self.workdir / "project.toml").read_bytes())

    def start_round(self) -> str:
        admin = self.admin()
        try:
            return admin.start_round().round_id
        finally:
            admin.close()

    def admin(self) -> AdminClient:
        from oda_fed.config import load_coordinator_config
        from oda_fed.coordinator.admin import AdminClient

        return AdminClient(
            load_coordinator_config(self.coordinator_config), address=f"127.0.0.1:{self.port}"
        )

    def agent(self, partner: str, config: Path | None = None) -> NodeAgent:
        from oda_fed.config import load_node_config
        from oda_fed.node.agent import NodeAgent

        path = config or self.node_config(partner)
        return NodeAgent(load_node_config(path), config_path=path)

    def edit_source(self, partner: str, edit: Callable[[dict, Path], None]) -> None:
        """Edit ``partner``'s node.toml ``[source]`` table (``edit`` gets it and the node's
        folder), as its IT team would."""
        path = self.node_config(partner)
        doc = tomllib.loads(path.read_text())
        edit(doc["source"], path.parent)
        path.write_text(tomli_w.dumps(doc))

    def extract(self, partner: str) -> pd.DataFrame:
        """The partner's extract as its node reads it."""
        path = self.node_config(partner)
        source = tomllib.loads(path.read_text())["source"]
        return pd.read_csv((path.parent / source["path"]).resolve(), dtype=str,
                           keep_default_na=False)  # fmt: skip

    def write_events(self, partner: str, events: pd.DataFrame, *, name: str = "incidents") -> None:
        """Give ``partner``'s node an event table (columns ``person``, ``on`` and ``kind``) as
        ``[[source.events]]``, with a path relative to node.toml."""

        def edit(source: dict, folder: Path) -> None:
            events.to_csv(folder / f"{name}.csv", index=False)
            source["events"] = [
                {"name": name, "path": f"{name}.csv", "record_id": "person", "date": "on",
                 "type": "kind"}
            ]  # fmt: skip

        self.edit_source(partner, edit)

    def entity_ids(self, partner: str, *, unmask: bool = True) -> dict[str, str]:
        """``partner``'s latest entities.csv: record id -> its pseudonym of the entity id, or,
        with ``unmask``, the coordinator's entity id behind it (which only the coordinator's
        key can give, so partners' files can be joined only here)."""
        from oda_fed.coordinator.pseudonyms import Pseudonyms

        path = self.workdir / "nodes" / partner / "state" / "entities.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        ids = dict(zip(frame.record_id, frame.entity_id, strict=True))
        if unmask:
            names = Pseudonyms.load(self.workdir / "coordinator" / "state")
            ids = {r: names.unmask(partner, p) for r, p in ids.items()}
        return ids

    def node_stub(self, partner: str):
        """A channel and a raw Coordinator stub with ``partner``'s certificate, to send what its
        node never would."""
        from oda_fed.config import TlsFiles
        from oda_fed.proto.v1 import coordinator_pb2_grpc
        from oda_fed.transport.channel import create_channel

        tls = TlsFiles(
            ca=self.workdir / "nodes" / partner / "tls" / "ca.crt",
            cert=self.workdir / "nodes" / partner / "tls" / f"{partner}.crt",
            key=self.workdir / "nodes" / partner / "tls" / f"{partner}.key",
        )
        channel = create_channel(address=f"127.0.0.1:{self.port}", tls=tls, server_name="localhost")
        return channel, coordinator_pb2_grpc.CoordinatorStub(channel)

    @contextmanager
    def session(self, partner: str, *, cert: Path | None = None, key: Path | None = None):
        """A raw Coordinator stub that holds ``partner``'s live session: its Connect stream is
        open, with a Hello as its node's (the secret file's key check), until the block ends.
        ``cert`` and ``key`` present another certificate for the partner."""
        from oda_fed.config import TlsFiles
        from oda_fed.coordinator.servicer import SESSION_HEADER
        from oda_fed.pki import read_secret
        from oda_fed.pki.secret import key_check
        from oda_fed.proto.v1 import coordinator_pb2, coordinator_pb2_grpc
        from oda_fed.transport.channel import create_channel

        node = self.workdir / "nodes" / partner
        tls = TlsFiles(ca=node / "tls" / "ca.crt", cert=cert or node / "tls" / f"{partner}.crt",
                       key=key or node / "tls" / f"{partner}.key")  # fmt: skip
        channel = create_channel(address=f"127.0.0.1:{self.port}", tls=tls, server_name="localhost")
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        check = key_check(read_secret(node / "linkage.secret"), fingerprint=self.fingerprint,
                          version=0)  # fmt: skip
        hello = coordinator_pb2.Hello(partner_id=partner, project_fingerprint=self.fingerprint,
                                      key_check=check)  # fmt: skip
        outgoing: queue.Queue = queue.Queue()
        outgoing.put(coordinator_pb2.NodeEvent(hello=hello))
        stream = stub.Connect(iter(outgoing.get, None))
        try:
            assert dict(stream.initial_metadata()).get(SESSION_HEADER) == "live"
            yield stub
        finally:
            outgoing.put(None)
            stream.cancel()
            channel.close()

    def analyse(self, *, key: Path) -> Path:
        """``oda-fed analyse`` on the partners' extracts, with a --sources file made of each
        node's node.toml [source] table, and the rounding key file ``key``; its output folder."""
        from typer.testing import CliRunner

        from oda_fed.cli import app
        from oda_fed.config import load_node_config

        work = self.workdir / "analyse"
        state = work / "products.state"
        state.mkdir(parents=True)
        shutil.copy(key, state / "disclosure.key")
        sources = {p: load_node_config(self.node_config(p)).source for p in self.partners}
        (work / "sources.toml").write_text(
            tomli_w.dumps(
                {"source": {p: s.model_dump(mode="json", exclude_none=True)
                            for p, s in sources.items()}}
            )
        )  # fmt: skip
        result = CliRunner().invoke(
            app,
            ["analyse", "--project", str(self.workdir / "project.toml"),
             "--secret-file", str(self.workdir / "nodes" / "council" / "linkage.secret"),
             "--sources", str(work / "sources.toml"), "--out", str(work / "products")],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return work / "products"

    def run_round(self):
        """Run one round with every node to its end (or to awaiting its release); its status,
        once every node has stopped without error."""
        threads = [self.run_node(p) for p in self.partners]
        admin = self.admin()
        try:
            status = admin.wait(admin.start_round().round_id, timeout=120)
        finally:
            admin.close()
        for thread, errors in threads:
            thread.join(timeout=60)
            assert not errors, errors
        return status

    def run_node(self, partner: str, *, rounds: int = 1) -> tuple[threading.Thread, list]:
        """Run a node in a thread; the returned list collects any exception it raised."""
        errors: list[BaseException] = []
        agent = self.agent(partner)

        def target() -> None:
            try:
                agent.run(rounds=rounds, give_up_after=20)
            except BaseException as exc:
                errors.append(exc)
            finally:
                agent.close()

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread, errors


def _federation(
    tmp_path: Path,
    *,
    agree_secret: bool,
    database: str | None = None,
    prepare: Callable[[Federation], None] | None = None,
) -> Iterator[Federation]:
    from oda_fed.demo import setup

    synthetic, _ = setup(
        tmp_path / "fed", population=400, seed=11, errors="low", agree_secret=agree_secret
    )
    fed = Federation(workdir=tmp_path / "fed", synthetic=synthetic, database=database)
    if database:
        doc = tomllib.loads(fed.coordinator_config.read_text())
        fed.coordinator_config.write_text(tomli_w.dumps({**doc, "database": database}))
    if prepare is not None:
        prepare(fed)
    fed.start_coordinator()
    yield fed
    fed.stop_coordinator()


@pytest.fixture
def federation(tmp_path: Path):
    """A three-partner federation folder with a coordinator serving on a free loopback port; the
    nodes share one secret file, as partners who exchanged it themselves would."""
    yield from _federation(tmp_path, agree_secret=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str | None:
    """Where the coordinator keeps its state, for the tests that run on both: None for SQLite in
    its state_dir, or the URL of a new, empty PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture
def backed_federation(tmp_path: Path, backend: str | None):
    """As ``federation``, on each backend of the coordinator's state in turn."""
    yield from _federation(tmp_path, agree_secret=False, database=backend)


@pytest.fixture
def another_federation(tmp_path: Path) -> Iterator[Callable[..., Federation]]:
    """Makes a further federation in ``tmp_path / name``: ``make(name, database=...,
    prepare=...)``, where ``prepare(federation)`` runs before its coordinator starts. Each is
    stopped at the end of the test."""
    made: list[Iterator[Federation]] = []

    def make(name: str, **kwargs) -> Federation:
        made.append(_federation(tmp_path / name, agree_secret=False, **kwargs))
        return next(made[-1])

    yield make
    for federation in made:
        next(federation, None)


@pytest.fixture
def agreeing_federation(tmp_path: Path):
    """As ``federation``, but the nodes have no secret file: they agree one through the
    coordinator when they first run, as the demo's do."""
    yield from _federation(tmp_path, agree_secret=True)


# --- pages in a real browser ---------------------------------------------------------------------


def chromium_path() -> str:
    """Debian's chromium; the browser tests fail (never skip) without it."""
    found = shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium",) if Path(p).exists()), None
    )
    if found is None:
        pytest.fail(
            "the browser tests need Debian's chromium, which is not installed: run `make test` "
            "(it installs chromium), or leave these tests out with -m 'not browser'",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole session: Playwright drives the system's chromium
    (``executable_path``), never a browser it downloaded."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need playwright: run `make test`", pytrace=False)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@dataclass
class OpenedPage:
    """A page opened from a file, with everything it did that a self-contained page must not."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    #: Every request other than for the page's own file(s) and data: URIs.
    outside_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def goto(self, path: Path) -> None:
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def assert_clean(self) -> None:
        """Nothing went wrong and nothing was fetched: the page stood alone."""
        assert self.console_errors == [], self.console_errors
        assert self.failed_requests == [], self.failed_requests
        assert self.outside_requests == [], self.outside_requests
        assert self.dialogs == [], self.dialogs

    def images(self) -> list[tuple[bool, int]]:
        """``(complete, naturalWidth)`` of every image: a broken data: URI has width 0."""
        return self.page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth])"
        )


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[Path], OpenedPage]]:
    """Open an HTML file in a fresh browser context and record what it does."""
    contexts = []

    def open_(path: Path) -> OpenedPage:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        opened = OpenedPage(page)

        def on_console(message) -> None:
            if message.type == "error":
                opened.console_errors.append(message.text)

        def on_request(request) -> None:
            if not request.url.startswith(("file://", "data:")):
                opened.outside_requests.append(request.url)

        def on_dialog(dialog) -> None:
            opened.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda exc: opened.console_errors.append(str(exc)))
        page.on("request", on_request)
        page.on("requestfailed", lambda request: opened.failed_requests.append(request.url))
        page.on("dialog", on_dialog)
        opened.goto(path)
        return opened

    yield open_
    for context in contexts:
        context.close()


# -- PostgreSQL ------------------------------------------------------------------------------------
#: Set to the URL of a server whose user may create databases to use it instead of a throwaway one.
POSTGRES_URL_ENV = "ODA_FED_TEST_POSTGRES_URL"


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts[-3])
    on_path = shutil.which("pg_ctl")
    if found:
        return found[-1].parent
    if on_path:
        return Path(on_path).parent
    pytest.fail(
        "the PostgreSQL tests need a PostgreSQL server's binaries (initdb, pg_ctl, postgres), and "
        "none are installed: run `bash scripts/ensure_postgres.sh` (make test does), or set "
        f"{POSTGRES_URL_ENV} to a server's URL"
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL of a real PostgreSQL server for this test session: a throwaway cluster in a
    temporary folder on a free loopback port (run as the ``postgres`` user when the tests run as
    root, as PostgreSQL refuses root), stopped and deleted afterwards."""
    import os
    import socket
    import subprocess
    import tempfile

    if os.environ.get(POSTGRES_URL_ENV):
        yield os.environ[POSTGRES_URL_ENV]
        return
    bin_dir = _postgres_bin()
    user = None
    if os.geteuid() == 0:
        import pwd

        user = next(
            (name for name in ("postgres", "nobody") if _has_user(pwd, name)),
            None,
        )
    folder = Path(tempfile.mkdtemp(prefix="oda-fed-postgres-"))
    if user:
        shutil.chown(folder, user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"

    def run(*args: str) -> None:
        done = subprocess.run(args, user=user, capture_output=True, text=True, check=False)
        if done.returncode:
            pytest.fail(f"{args[0]} failed for the test PostgreSQL server: {done.stderr.strip()}")

    run(
        str(bin_dir / "initdb"), "-D", str(data), "-U", "oda_fed", "-A", "trust", "-E", "UTF8",
        "--no-locale", "--no-sync",
    )  # fmt: skip
    # The admin trusted, every other role by password: so that a wrong password is refused.
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all oda_fed 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql+psycopg://oda_fed@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            user=user, capture_output=True, check=False,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(pwd, name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database on the test server, dropped after the test."""
    import uuid

    import sqlalchemy as sa

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as db:
            db.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


#: A LocalCluster in a process of its own, as a cluster is: its scheduler's sockets are not the
#: test process's (tests check which ports the coordinator opens).
_CLUSTER = """
import sys
from distributed import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the tests close this pipe
cluster.close()
"""


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """A real ``distributed.LocalCluster`` of 2 worker processes, one thread each, started once
    in a process of its own: the scheduler's address, for matching on a cluster."""
    import subprocess
    import sys

    cluster = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        address = cluster.stdout.readline().strip()
        if not address.startswith("tcp://"):
            pytest.fail(f"the test LocalCluster did not start (exit code {cluster.poll()})")
        yield address
    finally:
        cluster.stdin.close()
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()


@pytest.fixture(scope="session")
def dask_executor(dask_address: str, tmp_path_factory: pytest.TempPathFactory):
    """An executor on the session's LocalCluster, its shared folder in a temporary folder."""
    from oda_fed.matching.executor import open_executor

    with open_executor(dask_address, shared_dir=tmp_path_factory.mktemp("dask")) as executor:
        yield executor
