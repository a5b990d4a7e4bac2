"""The shim: a Redis server whose writes go through the log and whose reads come from memory.

    connections --(writes: records)--> Writer --Append--> logsvc leader
    logsvc (zone-local node) --Read(follow)--> apply loop --> Applier (keyspace)
                                                   '--> the waiting client's reply

A write's reply is the result of applying its record in this shim after commit, so a
client's later reads on this shim always see it. Reads run against local memory at once.

The package, in the order a write crosses it: `connection` (the asyncio protocol, the GET
fast path, client limits), `dispatch` (the central checks and routing), `sessions` and
`transactions` (the commands that change the connection), `writer` (records batched into
Appends, large ones in pieces), `replica` (the log applied), `shim` (the parts put
together; `tls` builds the TLS listener's context from the tls-* settings).
docs/architecture.md follows one SET through them.
"""

from cacheshim.config.defaults import REDIS_VERSION
from cacheshim.server.clock import wall_ms
from cacheshim.server.connection import (
    OUTPUT_CHECK_BYTES,
    READ_BUFFER_BYTES,
    SUBSCRIPTION_COMMANDS,
    Connection,
)
from cacheshim.server.replica import READ_BATCH_RECORDS_MAX
from cacheshim.server.sessions import Session
from cacheshim.server.shim import Shim, ShimConfig
from cacheshim.server.writer import (
    APPEND_BYTES_MAX,
    APPEND_LINGER_S,
    APPEND_RECORDS_MAX,
    APPENDS_IN_FLIGHT_MAX,
    PIECE_BYTES,
    WRITE_BYTES_MAX,
    Writer,
    encode_command_record,
    record_for,
)

__all__ = [
    "APPENDS_IN_FLIGHT_MAX",
    "APPEND_BYTES_MAX",
    "APPEND_LINGER_S",
    "APPEND_RECORDS_MAX",
    "OUTPUT_CHECK_BYTES",
    "PIECE_BYTES",
    "READ_BATCH_RECORDS_MAX",
    "READ_BUFFER_BYTES",
    "REDIS_VERSION",
    "SUBSCRIPTION_COMMANDS",
    "WRITE_BYTES_MAX",
    "Connection",
    "Session",
    "Shim",
    "ShimConfig",
    "Writer",
    "encode_command_record",
    "record_for",
    "wall_ms",
]
