"""The data: the keyspace (`keyspace`: databases, expiry, the key index) and one module per
value type (strings live in `keyspace`; `listvalue`, `setvalue`, `hashvalue`, `zsetvalue`),
with the helpers they share (`longdouble` for Redis's float texts, `glob` for patterns).
Nothing here knows about connections, the log or the command table."""
