"""Load test: a coordinator serving 25 nodes on loopback while hostile callers hold streams and
flood it. Prints the latency of the legitimate calls (goal: p99 under 1 s).

    .venv/bin/python benchmarks/load.py [--nodes 25] [--seconds 20]

A real coordinator (mutual TLS, SQLite, audit log) serves a project of ``--nodes`` partners. For
``--seconds``:

- every partner's node holds its control stream (a Hello with the right key check) and asks for
  its upload status every 0.2 s;
- the operator asks for a round's status every 0.5 s;
- two more partners are hostile: each tries to hold 30 health-watch streams and floods unknown
  methods; a certificate of the partnership CA that names no partner does the same.

Latency is measured per legitimate call, end to end (TLS channel already open). Refused hostile
calls are counted. The machines are shared and noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import grpc
import tomli_w
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oda_fed.config import TlsFiles, fingerprint_bytes, load_coordinator_config
from oda_fed.coordinator.admin import AdminClient
from oda_fed.coordinator.server import serve
from oda_fed.demo import setup
from oda_fed.pki import issue, read_secret
from oda_fed.pki.secret import key_check
from oda_fed.proto.v1 import coordinator_pb2, coordinator_pb2_grpc
from oda_fed.transport.channel import create_channel

GOAL_P99 = 1.0


def _federation(work: Path, nodes: int) -> tuple[Path, list[str], str]:
    """A demo federation folder widened to ``nodes`` partners; the coordinator config, the
    partner ids and the fingerprint."""
    setup(work, population=200, seed=5, errors="low")
    project = work / "project.toml"
    doc = tomllib.loads(project.read_text())
    extra = [f"p{i:02d}" for i in range(len(doc["partners"]) + 1, nodes + 3)]  # two turn hostile
    doc["partners"] += [{"id": p, "name": f"Partner {p}"} for p in extra]
    project.write_text(tomli_w.dumps(doc))
    fingerprint = fingerprint_bytes(project.read_bytes())
    config = work / "coordinator" / "coordinator.toml"
    coordinator = tomllib.loads(config.read_text())
    coordinator.update(project_fingerprint=fingerprint, listen="127.0.0.1:0")
    config.write_text(tomli_w.dumps(coordinator))
    return config, [p["id"] for p in doc["partners"]], fingerprint


def _tls(work: Path, name: str) -> TlsFiles:
    folder = work / "load-tls"
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    if not cert.exists():
        issue(ca_dir=work / "ca", name=name, role="node", out_dir=folder)
    return TlsFiles(ca=work / "ca" / "ca.crt", cert=cert, key=key)


class Run:
    def __init__(self, work: Path, port: int, fingerprint: str, seconds: float) -> None:
        self.work, self.port, self.fingerprint = work, port, fingerprint
        self.until = time.monotonic() + seconds
        self.latencies: dict[str, list[float]] = {"node": [], "operator": []}
        self.failures: dict[str, int] = {"node": 0, "operator": 0}
        self.refused = 0
        self.held = 0
        self.lock = threading.Lock()
        self.secret = read_secret(work / "nodes" / "council" / "linkage.secret")

    def channel(self, name: str) -> grpc.Channel:
        return create_channel(address=f"127.0.0.1:{self.port}", tls=_tls(self.work, name),
                              server_name="localhost")  # fmt: skip

    def _timed(self, who: str, call) -> None:
        started = time.monotonic()
        try:
            call()
        except grpc.RpcError:
            with self.lock:
                self.failures[who] += 1
            return
        with self.lock:
            self.latencies[who].append(time.monotonic() - started)

    def node(self, partner: str) -> None:
        channel = self.channel(partner)
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        hello = coordinator_pb2.NodeEvent(hello=coordinator_pb2.Hello(
            partner_id=partner, project_fingerprint=self.fingerprint, key_version=0,
            key_check=key_check(self.secret, fingerprint=self.fingerprint, version=0)))  # fmt: skip
        stop = threading.Event()

        def events():
            yield hello
            stop.wait()  # the stream stays open, as a node's does, until the run ends

        stream = stub.Connect(events())

        def read() -> None:
            with contextlib.suppress(grpc.RpcError):
                for _ in stream:
                    pass

        threading.Thread(target=read, daemon=True).start()
        asked = coordinator_pb2.UploadStatusRequest(
            round_id="r1", project_fingerprint=self.fingerprint
        )
        while time.monotonic() < self.until:
            self._timed("node", lambda: stub.GetUploadStatus(asked, timeout=10))
            time.sleep(0.2)
        stop.set()
        stream.cancel()
        channel.close()

    def operator(self, config: Path) -> None:
        admin = AdminClient(load_coordinator_config(config), address=f"127.0.0.1:{self.port}")
        round_id = admin.start_round().round_id
        while time.monotonic() < self.until:
            self._timed("operator", lambda: admin.get_round(round_id))
            time.sleep(0.5)
        admin.close()

    def hostile(self, name: str) -> None:
        channel = self.channel(name)
        health = health_pb2_grpc.HealthStub(channel)
        streams = []
        for _ in range(30):
            call = health.Watch(health_pb2.HealthCheckRequest(service=""))
            try:
                next(call)
                streams.append(call)
            except grpc.RpcError:
                with self.lock:
                    self.refused += 1
        with self.lock:
            self.held += len(streams)
        nope = channel.unary_unary("/oda_fed.proto.v1.Coordinator/NoSuchMethod")
        while time.monotonic() < self.until:
            try:
                nope(b"", timeout=5)
            except grpc.RpcError:
                with self.lock:
                    self.refused += 1
        for call in streams:
            call.cancel()
        channel.close()


def _summary(name: str, values: list[float], failures: int) -> str:
    if not values:
        return f"{name:>9}: no calls succeeded ({failures} failed)"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"{name:>9}: {len(values):6d} calls, p50 {statistics.median(ordered) * 1000:7.1f} ms, "
        f"p99 {p99 * 1000:7.1f} ms, max {ordered[-1] * 1000:7.1f} ms, {failures} failed"
        + ("" if p99 < GOAL_P99 else f"  (ABOVE the {GOAL_P99:.0f} s goal)")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config, partners, fingerprint = _federation(work, args.nodes)
        stop, port_file = threading.Event(), work / "port"
        server = threading.Thread(
            target=serve,
            args=(load_coordinator_config(config),),
            kwargs={
                "config_path": config,
                "port_file": port_file,
                "stop_event": stop,
                "grace": 1.0,
            },
            daemon=True,
        )
        server.start()
        while not port_file.exists():
            time.sleep(0.05)
        run = Run(work, int(port_file.read_text()), fingerprint, args.seconds)
        honest, hostile = partners[: args.nodes], [*partners[args.nodes :], "intruder"]
        threads = [threading.Thread(target=run.node, args=(p,)) for p in honest]
        threads += [threading.Thread(target=run.operator, args=(config,))]
        threads += [threading.Thread(target=run.hostile, args=(n,)) for n in hostile]
        print(f"{len(honest)} nodes, 1 operator, {len(hostile)} hostile callers, {args.seconds:.0f} s "
              f"on {os.cpu_count()} cores")  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        server.join(timeout=30)
        log = next(work.rglob("coordinator.jsonl"))
        refusals = sum(b'"kind":"refused:' in line for line in log.read_bytes().splitlines())
    print(_summary("nodes", run.latencies["node"], run.failures["node"]))
    print(_summary("operator", run.latencies["operator"], run.failures["operator"]))
    print(f"  hostile: {run.held} streams held, {run.refused} calls refused, "
          f"written to the audit log as {refusals} entries")  # fmt: skip


if __name__ == "__main__":
    main()
