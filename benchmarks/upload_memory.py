"""Peak memory of a coordinator while 9 uploads at once send it the largest messages it reads.

    PYTHONPATH=. .venv/bin/python benchmarks/upload_memory.py [--uploads 9] [--seconds 20]

A real coordinator (mutual TLS, SQLite, audit log) serves the demo project in its own process.
Each of its three partners holds its session and runs ``--uploads / 3`` CLK uploads at once, over
and over for ``--seconds``; each upload streams chunks as large as the coordinator reads (its
receive limit: 32 MiB before it was derived from the project), which it refuses once read. The
coordinator's peak resident memory (VmHWM) over its memory before the uploads is printed. Run it
on two trees to compare them: the figures of one machine, one run each.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from oda_fed.config import TlsFiles, fingerprint_bytes, load_coordinator_config, load_project
from oda_fed.coordinator.admin import AdminClient
from oda_fed.demo import setup
from oda_fed.pki import read_secret
from oda_fed.pki.secret import key_check
from oda_fed.proto.v1 import coordinator_pb2 as wire
from oda_fed.proto.v1 import coordinator_pb2_grpc
from oda_fed.transport.channel import create_channel

_SERVE = """
import sys, threading
from pathlib import Path
from oda_fed.config import load_coordinator_config
from oda_fed.coordinator.server import serve
config = Path(sys.argv[1])
serve(load_coordinator_config(config), config_path=config, port_file=Path(sys.argv[2]))
"""


def _memory(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in bytes."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    found = {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in lines)
             if k in ("VmRSS", "VmHWM")}  # fmt: skip
    return found


def _limit(config: Path) -> int:
    """The coordinator's receive limit: derived from the project where this tree derives it."""
    try:
        from oda_fed.coordinator.server import receive_limit
    except ImportError:  # a tree from before: one fixed limit
        return load_coordinator_config(config).max_message_mb << 20
    cfg = load_coordinator_config(config)
    return receive_limit(cfg, load_project(cfg.project).project)


def _tls(work: Path, partner: str) -> TlsFiles:
    tls = work / "nodes" / partner / "tls"
    return TlsFiles(ca=tls / "ca.crt", cert=tls / f"{partner}.crt", key=tls / f"{partner}.key")


def _partner(work: Path, port: int, partner: str, *, uploads: int, size: int, until: float,
             round_id: str, counts: dict[str, int], lock: threading.Lock) -> None:  # fmt: skip
    channel = create_channel(address=f"127.0.0.1:{port}", tls=_tls(work, partner),
                             server_name="localhost", max_message_mb=64)  # fmt: skip
    stub = coordinator_pb2_grpc.CoordinatorStub(channel)
    fingerprint = fingerprint_bytes((work / "project.toml").read_bytes())
    secret = read_secret(work / "nodes" / partner / "linkage.secret")
    hello = wire.NodeEvent(hello=wire.Hello(partner_id=partner, project_fingerprint=fingerprint,
        key_check=key_check(secret, fingerprint=fingerprint, version=0)))  # fmt: skip
    stop = threading.Event()

    def events():
        yield hello
        stop.wait()

    session = stub.Connect(events())
    session.initial_metadata()  # the session is open
    # As large as the coordinator reads: 1 kB of the limit for the other fields and framing.
    chunk = wire.ClkChunk(round_id=round_id, project_fingerprint=fingerprint, chunk_index=0,
                          total_chunks=1, records=1, total_records=1, clk_bits=1024,
                          clks=b"\xa5" * (size - 1024))  # fmt: skip

    def upload() -> None:
        while time.monotonic() < until:
            try:
                stub.UploadClks(iter([chunk] * 3), timeout=30)
                outcome = "OK"
            except grpc.RpcError as exc:
                outcome = exc.code().name
            with lock:
                counts[outcome] = counts.get(outcome, 0) + 1

    threads = [threading.Thread(target=upload) for _ in range(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    session.cancel()
    channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "fed"
        synthetic, _ = setup(work, population=200, seed=5, errors="low")
        config = work / "coordinator" / "coordinator.toml"
        port_file = work / "coordinator" / "port"
        # Run from the folder, so that the server imports the oda_fed of PYTHONPATH, as we do.
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(config), str(port_file)], cwd=tmp
        )
        try:
            while not port_file.exists():
                time.sleep(0.1)
            port = int(port_file.read_text())
            admin = AdminClient(load_coordinator_config(config), address=f"127.0.0.1:{port}")
            round_id = admin.start_round().round_id
            admin.close()
            time.sleep(1.0)
            before = _memory(server.pid)["VmRSS"]
            size = _limit(config)
            partners = [p.id for p in synthetic.profiles]
            counts: dict[str, int] = {}
            lock = threading.Lock()
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=_partner, args=(work, port, p), kwargs=dict(
                    uploads=args.uploads // len(partners), size=size, until=until,
                    round_id=round_id, counts=counts, lock=lock))
                for p in partners
            ]  # fmt: skip
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak = _memory(server.pid)["VmHWM"]
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=30)
    print(f"receive limit {size / 2**20:.2f} MiB; {args.uploads} uploads at once for "
          f"{args.seconds:.0f} s; answers {dict(sorted(counts.items()))}")  # fmt: skip
    print(f"coordinator RSS before {before / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB: "
          f"+{(peak - before) / 2**20:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
