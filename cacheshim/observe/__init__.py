"""What a shim tells about itself: per-command counters and latency histograms (INFO),
SLOWLOG, the latency monitor (LATENCY), and the Prometheus metrics."""
