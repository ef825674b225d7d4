"""Who may call what: one table maps every RPC to the roles allowed to call it.

The caller's identity comes from its TLS client certificate (``context.auth_context()``), never from a
field the client fills in. A gRPC interceptor cannot see the certificate, so the interceptor here
refuses unknown methods outright and wraps every known handler in a check that runs with the call's
context, before any servicer code. That check also refuses a certificate the partnership CA has
revoked (:class:`~oda_fed.pki.register.RevocationList`), whatever it calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
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
#: Not a certificate's role but what a node certificate naming a partner of the project is too.
PARTNER = "partner"
# The coordinator's health is for the project's own: a certificate of the partnership CA that
# names no partner (another project's node) may not watch it, nor hold a stream for it.
_MEMBERS = frozenset({PARTNER, "operator", "coordinator"})

#: Every RPC the coordinator serves, and the certificate roles allowed to call it
#: (:data:`PARTNER`: a node of a partner of the project).
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
    _HEALTH + "Check": _MEMBERS,
    _HEALTH + "Watch": _MEMBERS,
    _HEALTH + "List": _MEMBERS,
}

#: An unknown method's name is shown, and logged, cut to this length.
MAX_METHOD_CHARS = 100

RefusalHook = Callable[[str | None, str, str, grpc.StatusCode], None]
"""Called as ``hook(caller_name_or_None, method, reason, code)`` for every refused call."""


@dataclass(frozen=True)
class Peer:
    """Who a call comes from: the identity in its verified client certificate, and which
    certificate it is (two certificates may name the same partner)."""

    identity: Identity
    serial: int
    fingerprint: str
    #: When the certificate expires (UTC).
    not_after: datetime

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.serial)


@lru_cache(maxsize=256)
def _peer(pem: bytes) -> Peer:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise AuthError("the client certificate is not a PEM certificate") from None
    return Peer(
        identity_from_cert(cert),
        cert.serial_number,
        cert_fingerprint(cert),
        cert.not_valid_after_utc,
    )


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


class CallLimits:
    """How many calls each certificate may have in progress at once, so no caller can take every
    worker thread and starve the rest (streams held open, health watches, floods).

    Each partner and each operator has its own budget; certificates of the partnership CA that
    name no partner of the project share one small budget between them all.
    """

    def __init__(self, *, partners: Iterable[str], per_caller: int, strangers: int) -> None:
        self._partners = frozenset(partners)
        self._per_caller = per_caller
        self._strangers = strangers
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()

    @property
    def workers(self) -> int:
        """Threads enough for every budget at once, with a few to spare."""
        return self._per_caller * (len(self._partners) + 2) + self._strangers + 4

    def _bucket(self, ident: Identity) -> tuple[str, int]:
        if ident.role != "node" or ident.name in self._partners:
            return f"{ident.role}:{ident.name}", self._per_caller
        return "strangers", self._strangers

    def enter(self, ident: Identity) -> str | None:
        """Take a place for a call of ``ident``: the bucket to :meth:`leave`, or None if full."""
        bucket, limit = self._bucket(ident)
        with self._lock:
            if self._open[bucket] >= limit:
                return None
            self._open[bucket] += 1
        return bucket

    def leave(self, bucket: str) -> None:
        with self._lock:
            self._open[bucket] -= 1


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses methods outside :data:`ROLES_BY_METHOD`, checks roles on the rest, and keeps each
    caller within its :class:`CallLimits`. A node certificate has the role :data:`PARTNER`
    too when it names one of ``partners``.

    Every refusal is reported from the call's own thread, under the caller's name: never from
    the server's one polling thread, which runs :meth:`intercept_service` for every call, and
    where reporting (which may write to disk) would hold up all of them.
    """

    def __init__(
        self,
        *,
        on_refused: RefusalHook | None = None,
        limits: CallLimits | None = None,
        revoked: Callable[[int], bool] | None = None,
        partners: Iterable[str] | None = None,
    ) -> None:
        self._on_refused = on_refused
        self._limits = limits
        self._revoked = revoked
        self._partners = frozenset(partners or ())

    def _roles(self, ident: Identity) -> frozenset[str]:
        if ident.role == "node" and ident.name in self._partners:
            return frozenset({ident.role, PARTNER})
        return frozenset({ident.role})

    def _refuse(self, who: str | None, method: str, reason: str, code: grpc.StatusCode) -> None:
        if self._on_refused is not None:
            self._on_refused(who, method, reason, code)

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        method = handler_call_details.method
        roles = ROLES_BY_METHOD.get(method)
        if roles is None:
            shown = method[:MAX_METHOD_CHARS] if isinstance(method, str) else "?"

            def deny(_request: Any, context: grpc.ServicerContext) -> None:
                try:
                    who: str | None = peer_identity(context).name
                except AuthError:
                    who = None
                self._refuse(who, shown, "unknown method", grpc.StatusCode.UNIMPLEMENTED)
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f"method {shown} is not offered")

            return grpc.unary_unary_rpc_method_handler(deny)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap(handler, self._authorise(method, roles), self._done)

    def _authorise(self, method: str, roles: frozenset[str]) -> Callable[[Any], str | None]:
        def check(context: grpc.ServicerContext) -> str | None:
            try:
                caller = peer(context)
            except AuthError as exc:
                self._refuse(None, method, str(exc), grpc.StatusCode.UNAUTHENTICATED)
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            ident = caller.identity
            if self._revoked is not None and self._revoked(caller.serial):
                reason = (
                    f"the partnership CA has revoked this {ident.role} certificate for "
                    f"'{ident.name}' (serial {caller.serial_hex}); nothing it sends is accepted. "
                    "Ask the CA holder for a new one (`oda-fed pki request`, then `pki sign`)"
                )
                self._refuse(ident.name, method, reason, grpc.StatusCode.PERMISSION_DENIED)
                context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            if not self._roles(ident) & roles:
                reason = (
                    f"a {ident.role} certificate ('{ident.name}') may not call {method}; "
                    f"allowed: {', '.join(sorted(roles))}"
                )
                if PARTNER in roles and ident.role == "node":
                    reason += f" ('{ident.name}' is no partner of this project)"
                self._refuse(ident.name, method, reason, grpc.StatusCode.PERMISSION_DENIED)
                context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            if self._limits is None:
                return None
            bucket = self._limits.enter(ident)
            if bucket is None:
                reason = (
                    f"'{ident.name}' already has as many calls in progress as it may; finish or "
                    "cancel one first (a node needs only a few at once)"
                )
                self._refuse(ident.name, method, reason, grpc.StatusCode.RESOURCE_EXHAUSTED)
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
            return bucket

        return check

    def _done(self, bucket: str | None) -> None:
        if bucket is not None and self._limits is not None:
            self._limits.leave(bucket)


def _wrap(
    handler: grpc.RpcMethodHandler,
    check: Callable[[Any], str | None],
    done: Callable[[str | None], None],
) -> grpc.RpcMethodHandler:
    """``handler`` behind ``check``, whose place is given back (``done``) when the call ends."""
    ser = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        fn_uu = handler.unary_unary

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            place = check(context)
            try:
                return fn_uu(request, context)
            finally:
                done(place)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **ser)
    if handler.unary_stream is not None:
        fn_us = handler.unary_stream

        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            place = check(context)
            try:
                yield from fn_us(request, context)
            finally:
                done(place)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **ser)
    if handler.stream_unary is not None:
        fn_su = handler.stream_unary

        def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            place = check(context)
            try:
                return fn_su(requests, context)
            finally:
                done(place)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **ser)
    fn_ss = handler.stream_stream

    def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        place = check(context)
        try:
            yield from fn_ss(requests, context)
        finally:
            done(place)

    return grpc.stream_stream_rpc_method_handler(stream_stream, **ser)
