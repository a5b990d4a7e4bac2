"""logsvc: memlog's replicated transaction log service.

A generic, append-only log of opaque byte records, replicated by Raft over three zones and
fsync'd on a majority before an append is acknowledged. It knows nothing about Redis. The
consensus core is the pure state machine in `logsvc.raft`; the asyncio driver, RocksDB
storage and the gRPC API arrive with the log service.
"""

__version__ = "0.1.0"
