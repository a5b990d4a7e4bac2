"""gRPC channel options of the log's peers and clients, apart from logsvc.transport so that a
client (logsvc.client, and so every shim at its start) does not import the Raft core with it."""

from __future__ import annotations

# Reconnect fast to a restarted peer (gRPC's default backoff grows to two minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]
# A node that stops answering without closing its connections (stopped, hung, its host
# gone from the network) is found by HTTP/2 keepalive: a ping after KEEPALIVE_TIME_MS of
# silence, the connection given up KEEPALIVE_TIMEOUT_MS later, so a Read stream that would
# wait forever fails instead, and LogClient goes on from another node. Pings go on while a
# call is open even if the client sends nothing (a follow Read sends nothing after asking).
KEEPALIVE_TIME_MS = 1000
KEEPALIVE_TIMEOUT_MS = 2000
CLIENT_CHANNEL_OPTIONS = [
    *CHANNEL_OPTIONS,
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    # gRPC 1.85 times a keepalive ping out by this one (default: 60 s), not the one above.
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.http2.max_pings_without_data", 0),
]
# What a node accepts from such clients: gRPC's default answers a ping more often than every
# five minutes with GOAWAY ("too_many_pings") after two strikes.
SERVER_KEEPALIVE_OPTIONS = [
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
]
