"""logsvc: memlog's replicated transaction log service.

A generic, append-only log of opaque byte records, replicated by Raft over three zones and
fsync'd on a majority before an append is acknowledged. It knows nothing about Redis. The
consensus core is the pure state machine in `logsvc.raft`; `logsvc.node` is the asyncio
driver around it, `logsvc.server` the gRPC API, `logsvc.client` the client library.
"""

import os

__version__ = "0.1.0"

# gRPC's core reads GRPC_EXPERIMENTS once, when `grpc` is first imported, so this has to run
# before that: importing any part of logsvc first does it (below), and a program that uses
# logsvc's client calls `use_grpc_settings()` itself, first. With its EventEngine paths (client
# channels, listeners, the callback completion queue) off, one unbatched Append over
# AppendStream went from 2.1-2.7 ms to 1.8-2.2 ms p50 in paired runs, and the transport's
# floor (bench/grpc_floor.py) from 1.44-1.57 to 1.12-1.35 ms (docs/logsvc.md). A value the
# operator sets is left alone.
GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener,-event_engine_callback_cq"


def use_grpc_settings() -> None:
    """Set gRPC's experiments for this process unless the operator set them. Only takes
    effect before `grpc` is first imported; a program that imported it earlier keeps gRPC's
    defaults."""
    os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)


use_grpc_settings()
