"""Who may call what: one table maps every RPC to the roles allowed to call it.

The caller's identity comes from its TLS client certificate (``context.auth_context()``), never from a
field the client fills in. A gRPC interceptor cannot see the certificate, so the interceptor here
refuses unknown methods outright and wraps every known handler in a check that runs with the call's
context, before any servicer code. That check also refuses a certificate the partnership CA has
revoked (:class:`~oda_fed.pki.register.RevocationList`), whatever it calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import grpc
from cryptography import x509

from oda_fed.errors import AuthError
from oda_fed.pki import Identity, identity_from_cert
from oda_fed.pki.register import cert_fingerprint, serial_hex

_COORD = "/oda_fed.proto.v1.Coordinator/"
_ADMIN = "/oda_fed.proto.v1.Admin/"
_KEYS = "/oda_fed.proto.v1.Keys/"
_HEALTH = "/grpc.health.v1.Health/"
_ANY = frozenset({"node", "operator", "coordinator"})

#: Every RPC the coordinator serves, and the certificate roles allowed to call it.
ROLES_BY_METHOD: dict[str, frozenset[str]] = {
    _COORD + "Connect": frozenset({"node"}),
    _COORD + "UploadClks": frozenset({"node"}),
    _COORD + "GetUploadStatus": frozenset({"node"}),
    _COORD + "UploadAttribute": frozenset({"node"}),
    _COORD + "FetchEntities": frozenset({"node"}),
    _COORD + "UploadTable": frozenset({"node"}),
    _KEYS + "PublishKey": frozenset({"node"}),
    _KEYS + "GetKeys": frozenset({"node"}),
    _KEYS + "PublishSecret": frozenset({"node"}),
    _KEYS + "FetchSecret": frozenset({"node"}),
    _ADMIN + "StartRound": frozenset({"operator"}),
    _ADMIN + "GetRound": frozenset({"operator"}),
    _ADMIN + "ReleaseRound": frozenset({"operator"}),
    _ADMIN + "CancelRound": frozenset({"operator"}),
    _HEALTH + "Check": _ANY,
    _HEALTH + "Watch": _ANY,
    _HEALTH + "List": _ANY,
}

RefusalHook = Callable[[str | None, str, str], None]
"""Called as ``hook(caller_name_or_None, method, reason)`` for every refused call."""


@dataclass(frozen=True)
class Peer:
    """Who a call comes from: the identity in its verified client certificate, and which
    certificate it is (two certificates may name the same partner)."""

    identity: Identity
    serial: int
    fingerprint: str

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.serial)


@lru_cache(maxsize=256)
def _peer(pem: bytes) -> Peer:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise AuthError("the client certificate is not a PEM certificate") from None
    return Peer(identity_from_cert(cert), cert.serial_number, cert_fingerprint(cert))


def peer(context: grpc.ServicerContext) -> Peer:
    """The caller's verified client certificate: its identity, serial and fingerprint.

    Raises
    ------
    AuthError
        When the call carries no client certificate or the certificate has no oda-fed identity.
    """
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        raise AuthError("the call carries no client certificate")
    return _peer(bytes(pems[0]))


def peer_identity(context: grpc.ServicerContext) -> Identity:
    """The identity in the caller's verified client certificate (see :func:`peer`)."""
    return peer(context).identity


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses methods outside :data:`ROLES_BY_METHOD` and checks roles on the rest."""

    def __init__(
        self,
        *,
        on_refused: RefusalHook | None = None,
        revoked: Callable[[int], bool] | None = None,
    ) -> None:
        self._on_refused = on_refused
        self._revoked = revoked

    def _refuse(self, who: str | None, method: str, reason: str) -> None:
        if self._on_refused is not None:
            self._on_refused(who, method, reason)

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        method = handler_call_details.method
        roles = ROLES_BY_METHOD.get(method)
        if roles is None:
            self._refuse(None, method, "unknown method")

            def deny(_request: Any, context: grpc.ServicerContext) -> None:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f"method {method} is not offered")

            return grpc.unary_unary_rpc_method_handler(deny)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap(handler, self._authorise(method, roles))

    def _authorise(self, method: str, roles: frozenset[str]) -> Callable[[Any], None]:
        def check(context: grpc.ServicerContext) -> None:
            try:
                caller = peer(context)
            except AuthError as exc:
                self._refuse(None, method, str(exc))
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            ident = caller.identity
            if self._revoked is not None and self._revoked(caller.serial):
                reason = (
                    f"the partnership CA has revoked this {ident.role} certificate for "
                    f"'{ident.name}' (serial {caller.serial_hex}); nothing it sends is accepted. "
                    "Ask the CA holder for a new one (`oda-fed pki request`, then `pki sign`)"
                )
                self._refuse(ident.name, method, reason)
                context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            if ident.role not in roles:
                reason = (
                    f"a {ident.role} certificate ('{ident.name}') may not call {method}; "
                    f"allowed: {', '.join(sorted(roles))}"
                )
                self._refuse(ident.name, method, reason)
                context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)

        return check


def _wrap(handler: grpc.RpcMethodHandler, check: Callable[[Any], None]) -> grpc.RpcMethodHandler:
    ser = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        fn_uu = handler.unary_unary

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            check(context)
            return fn_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **ser)
    if handler.unary_stream is not None:
        fn_us = handler.unary_stream

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            check(context)
            yield from fn_us(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **ser)
    if handler.stream_unary is not None:
        fn_su = handler.stream_unary

        def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            check(context)
            return fn_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **ser)
    fn_ss = handler.stream_stream

    def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        check(context)
        yield from fn_ss(requests, context)

    return grpc.stream_stream_rpc_method_handler(stream_stream, **ser)
