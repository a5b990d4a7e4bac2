"""cacheshim: memlog's RESP (Redis protocol) front.

Parses RESP2/RESP3, serves reads from memory, and turns writes into records appended to
logsvc, replying with the result of applying them after commit.
"""

import logsvc  # noqa: F401  (first: it sets gRPC's settings before grpc is imported)
