"""cacheshim: memlog's RESP (Redis protocol) front.

Parses RESP2/RESP3, serves reads from memory, and turns writes into records appended to
logsvc, replying with the result of applying them after commit.
"""

from logsvc import use_grpc_settings

# First, before anything of cacheshim imports grpc (the log client does).
use_grpc_settings()
