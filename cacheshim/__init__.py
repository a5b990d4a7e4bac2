"""cacheshim: memlog's RESP (Redis protocol) front.

Parses RESP2/RESP3, serves reads from memory, and turns writes into records appended to
logsvc, replying with the result of applying them after commit. Arrives in issue 4; this
package is an empty placeholder until then.
"""
