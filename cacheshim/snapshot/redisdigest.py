"""Redis's own DEBUG DIGEST, computed over a memlog keyspace (Redis's ``debug.c``
algorithm), so that a keyspace can be compared with a redis-server holding the same data.

memlog's `Keyspace.digest` (what the shim's DEBUG DIGEST answers) is a different function:
it hashes the expiry times themselves, where Redis only notes that a key has one. Both are
order-independent; this one equals redis-server 7.0's answer for the same keys, values and
set-or-not expiries.

The scheme: SHA-1 throughout. "xor" folds the SHA-1 of some bytes into a 20-byte digest by
XOR (order does not matter); "mix" does that and then replaces the digest by its own SHA-1
(order matters). Per key: mix the key, mix the type number (4 bytes, big-endian), then the
value: a string is mixed; a list's elements are mixed in order; a set's members are
xor-ed; a hash's pairs and a sorted set's (member, score as "%.17g") pairs are each mixed
into a fresh digest that is then xor-ed in; a stream's entries are mixed in order, each as
"ms.seq" then its fields and values (its groups are not part of it). A key with an expiry
xors the text "!!expire!!". Per non-empty database: mix its number into the total, then
xor each key's digest (as bytes) into it.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from cacheshim.snapshot import model

_EXPIRE: Final = b"!!expire!!"
_U32_BE: Final = struct.Struct(">I")


def _sha1(data: bytes) -> int:
    return int.from_bytes(hashlib.sha1(data).digest(), "big")


def _xor(digest: int, data: bytes) -> int:
    return digest ^ _sha1(data)


def _mix(digest: int, data: bytes) -> int:
    return _sha1((digest ^ _sha1(data)).to_bytes(20, "big"))


def _value_digest(digest: int, value: object, has_expiry: bool) -> int:
    kind = model.kind(value)
    digest = _mix(digest, _U32_BE.pack(kind))
    if kind == model.STRING:
        assert isinstance(value, bytes)
        digest = _mix(digest, bytes(value))
    elif kind == model.LIST:
        assert isinstance(value, model.ListValue)
        for element in value:
            digest = _mix(digest, element)
    elif kind == model.SET:
        assert isinstance(value, model.SetValue)
        for member in model.set_members(value):
            digest = _xor(digest, member)
    elif kind == model.ZSET:
        assert isinstance(value, model.ZSet)
        for score, member in model.zset_entries(value):
            pair = _mix(_mix(0, member), b"%.17g" % score)
            digest = _xor(digest, pair.to_bytes(20, "big"))
    elif kind == model.STREAM:
        assert isinstance(value, model.Stream)
        for (ms, seq), data in value.entries.items():
            digest = _mix(digest, b"%d.%d" % (ms, seq))
            for part in data:
                digest = _mix(digest, part)
    else:
        assert isinstance(value, model.HashValue)
        for name, item in model.hash_pairs(value):
            pair = _mix(_mix(0, name), item)
            digest = _xor(digest, pair.to_bytes(20, "big"))
    if has_expiry:
        digest = _xor(digest, _EXPIRE)
    return digest


def redis_digest(keyspace: model.Keyspace) -> str:
    """What redis-server's DEBUG DIGEST answers for this data: 40 hex digits, all zeros
    when there are no keys."""
    total = 0
    for db in keyspace.dbs:
        if not db.data:
            continue
        total = _mix(total, _U32_BE.pack(db.index))
        expires = db.expires
        for key, value in db.data.items():
            key_digest = _value_digest(_mix(0, key), value, key in expires)
            total = _xor(total, key_digest.to_bytes(20, "big"))
    return f"{total:040x}"
