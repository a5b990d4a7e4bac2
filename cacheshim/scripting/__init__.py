"""Lua scripts and functions (EVAL, EVALSHA, FCALL, ...), run in a real Lua 5.1 (lupa's
`lua51` module), deterministic by construction: see docs/decisions/0004-lua.md.

- `engine.py`: the Lua runtime, Redis's sandbox, the `redis` library, the conversions
  between Lua values and replies, the instruction budget.
- `libs.py`: `cjson`, `bit`, `struct` and `cmsgpack`, which lupa's Lua does not bundle.
- `state.py`: the scripting state apply keeps (the script cache, the function libraries):
  deterministic like the keyspace, replicated through the log and part of the snapshot.
"""
