"""hashes commands (Redis 7.0): being written for issue 5."""
