"""The wire: RESP2/RESP3 parsing and encoding (`resp`), the error texts and exceptions shared
by every layer (`errors`), and the GET fast path with its C twin (`fastread`, `_fastread.c`).
Nothing here knows about keys, commands or the log."""
