"""Blocking commands (BLPOP, BLMOVE, BZPOPMIN, ...): the contract between apply and the server.

A blocking command is a write: it goes through the log like any other. Its handler, run in
apply, either serves it (pops, moves) and returns the reply, or, when there is nothing to
serve and it is not inside MULTI/EXEC (`ctx.in_transaction`), returns `WouldBlock` and
changes nothing. The shim that proposed the record then parks the client, locally, until one
of the keys changes (by any shim's write) or its timeout passes, and proposes the command
again. Nothing about waiting clients is replicated, so a shim that dies leaves no ghosts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WouldBlock:
    """Apply's answer to a blocking command with nothing to serve: wait for these keys."""

    keys: tuple[bytes, ...]
