"""One session on the control stream: say hello, then take instructions until told to stop.

Every instruction in, and every result out, is written to the node's audit log as it crosses.
"""

from __future__ import annotations

import logging
import queue

from oda_fed import __version__
from oda_fed.errors import OdaFedError
from oda_fed.node import tasks
from oda_fed.node.client import CoordinatorClient
from oda_fed.node.state import NodeState
from oda_fed.proto.v1 import coordinator_pb2_grpc
from oda_fed.transport import serde
from oda_fed.transport.messages import Hello, Instruction
from oda_fed.transport.protocol import COORDINATOR, INSTRUCTION_KINDS, AuditKind

log = logging.getLogger(__name__)


def run_session(
    state: NodeState, stub: coordinator_pb2_grpc.CoordinatorStub, *, rounds: int | None
) -> None:
    """Hold one Connect stream until ``rounds`` rounds have ended or the stream breaks.

    Raises the :class:`~oda_fed.errors.OdaFedError` of an instruction that failed on this node
    in a way a retry cannot fix, after its result has reached the coordinator.
    """
    client = CoordinatorClient(stub, state)
    outgoing: queue.Queue = queue.Queue()
    hello = Hello(
        partner_id=state.partner,
        project_fingerprint=state.fingerprint,
        software_version=__version__,
        key_version=state.key_version,
        key_check=state.key_check,
    )
    event, payload = serde.node_event(hello)
    state.crossings.record(
        sender=state.partner, recipient=COORDINATOR, kind=AuditKind.HELLO, payload=payload
    )
    outgoing.put(event)
    stream = stub.Connect(iter(outgoing.get, None))
    finishing = False
    failure: OdaFedError | None = None
    try:
        for message in stream:
            got = serde.received(message)
            instruction: Instruction = got.message
            name = instruction.body_name
            # While finishing, an instruction is dropped unread: logged as discarded, it is
            # logged as delivered when the coordinator sends it again next session.
            state.crossings.record(
                sender=COORDINATOR,
                recipient=state.partner,
                kind=AuditKind.EMPTY_INSTRUCTION if name is None else INSTRUCTION_KINDS[name][0],
                payload=got.payload,
                round_id=instruction.round_id,
                detail=instruction.audit_detail(),
                discarded=finishing,
            )
            if finishing:
                continue
            result, failure = tasks.handle(state, client, instruction)
            event, payload = serde.node_event(result)
            state.crossings.record(
                sender=state.partner,
                recipient=COORDINATOR,
                kind=AuditKind.INSTRUCTION_RESULT,
                payload=payload,
                round_id=instruction.round_id,
                records=result.records,
            )
            outgoing.put(event)
            if failure is not None or (rounds is not None and state.rounds_closed >= rounds):
                # Half-close and let the coordinator end the stream, so our last result is
                # delivered (and logged on both sides) rather than cut off by a cancel.
                finishing = True
                outgoing.put(None)
    except BaseException:
        stream.cancel()
        raise
    finally:
        outgoing.put(None)
    if failure is not None:
        raise failure
