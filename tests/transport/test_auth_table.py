"""The auth table covers exactly the methods the server offers: nothing unlisted, nothing stale."""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from oda_fed.proto.v1 import admin_pb2, coordinator_pb2, keys_pb2
from oda_fed.transport.auth import PARTNER, ROLES_BY_METHOD


def _methods(file_descriptor, service: str) -> set[str]:
    svc = file_descriptor.services_by_name[service]
    return {f"/{svc.full_name}/{m.name}" for m in svc.methods}


def test_table_covers_exactly_the_generated_services() -> None:
    served = (
        _methods(coordinator_pb2.DESCRIPTOR, "Coordinator")
        | _methods(admin_pb2.DESCRIPTOR, "Admin")
        | _methods(keys_pb2.DESCRIPTOR, "Keys")
        | _methods(health_pb2.DESCRIPTOR, "Health")
    )
    assert set(ROLES_BY_METHOD) == served


def test_roles_are_least_privilege() -> None:
    for method, roles in ROLES_BY_METHOD.items():
        if "/oda_fed.proto.v1.Coordinator/" in method:
            assert roles == {"node"}, method
        if "/oda_fed.proto.v1.Keys/" in method:
            assert roles == {"node"}, method
        if "/oda_fed.proto.v1.Admin/" in method:
            assert roles == {"operator"}, method
        if "/grpc.health.v1.Health/" in method:  # a node only as a partner of the project
            assert roles == {PARTNER, "operator", "coordinator"}, method
