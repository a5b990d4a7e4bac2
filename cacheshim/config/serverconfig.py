"""One shim's CONFIG parameters: what CONFIG GET answers and CONFIG SET validates.

Every parameter Redis 7.0 has is here (the list, defaults and kinds are data, in
:mod:`cacheshim.config.defaults`), so tools that read or tune a Redis server find what they
expect. Settings are local to the shim, as they are local to a Redis node: CONFIG SET is not a
write and does not go through the log. Many settings tune Redis internals the shim does not
have (rehashing, defragmentation, replication buffers); those are validated as Redis validates
them, stored and echoed. Persistence is the log's: ``save`` stays empty and ``appendonly`` no
(the shim writes no RDB or AOF file of its own), and CONFIG SET refuses to turn either on
rather than answer OK and do nothing. ``maxclients`` and ``client-output-buffer-limit`` are
enforced as Redis enforces them (:mod:`cacheshim.clientlimits`). The ones that describe the
shim (``port``, ``bind``, ``dir``, ...) start from the shim's own values.

One deliberate difference: ``port`` and ``bind`` cannot be changed (the shim listens where
``--listen`` says). ``requirepass`` is not a setting of this shim: it is the default ACL
user's password, replicated through the log with the other users (CONFIG SET sends it there,
see cacheshim.commands.configcmd); it cannot be given at startup (use an ACL file). The
``tls-*`` parameters are set at startup (``cacheshim serve --tls-port ...``); CONFIG SET of
those that describe the TLS listener's context (certificate, key, CAs, client
authentication, protocols, ciphers) rebuilds it for new connections, as Redis does
(``tls_reload``, set by the shim: cacheshim.server.tls); the others (``tls-port``, and those of
replication, cluster links and session caching) are refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final

from cacheshim.clientlimits import MAXCLIENTS_TOO_MANY_FOR_OS, fit_open_files
from cacheshim.config.defaults import (
    ALIASES,
    BOOL,
    ENUM,
    IMMUTABLE,
    INT,
    MEMORY,
    MEMORY_OR_PERCENT,
    PARAMS,
    PROTECTED,
    SPECIAL,
    ULLONG_MAX,
    Param,
)
from cacheshim.protocol.errors import CommandError, text_from_bytes

# CONFIG SET's errors (config.c): the parameter is quoted as the client spelled it.
SET_FAILED: Final = "ERR CONFIG SET failed (possibly related to argument '%s') - %s"
UNKNOWN_OPTION: Final = "ERR Unknown option or number of arguments for CONFIG SET - '%s'"

CANNOT_SET_IMMUTABLE: Final = "can't set immutable config"
CANNOT_SET_PROTECTED: Final = "can't set protected config"
DUPLICATE_PARAMETER: Final = "duplicate parameter"
NOT_YES_OR_NO: Final = "argument must be 'yes' or 'no'"
NOT_AN_INTEGER: Final = "argument couldn't be parsed into an integer"
NOT_A_MEMORY_VALUE: Final = "argument must be a memory value"
NOT_A_MEMORY_OR_PERCENT_VALUE: Final = "argument must be a memory or percent value"
PERCENT_TOO_BIG: Final = "percentage argument must be less or equal to 100"
OUT_OF_RANGE: Final = "argument must be between %d and %d inclusive"
NOT_ONE_OF: Final = "argument(s) must be one of the following: %s"
INVALID_SAVE: Final = "Invalid save parameters"
OBL_ARGUMENT_COUNT: Final = "Wrong number of arguments in buffer limit configuration."
OBL_CLASS: Final = "Invalid client class specified in buffer limit configuration."
OBL_VALUE: Final = "Error in hard, soft or soft_seconds setting in buffer limit configuration."
EVICTION_UNSUPPORTED: Final = (
    "memlog evicts no keys: with maxmemory set, only maxmemory-policy noeviction is supported "
    "(writes are refused when the shim's memory is over maxmemory)"
)
OOM_ARGUMENT_COUNT: Final = "wrong number of arguments"
OOM_RANGE: Final = "Invalid oom-score-adj-values, elements must be between -2000 and 2000."
PERCENTILES_INVALID: Final = "Invalid latency-tracking-info-percentiles parameters"
PERCENTILES_RANGE: Final = (
    "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
)
EVENTS_INVALID: Final = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."
TITLE_TEMPLATE_INVALID: Final = "template format is invalid or contains unknown variables"
# Ours: what the shim cannot honour.
LISTEN_FIXED: Final = "memlog: the shim listens where its --listen flag says"
TLS_FIXED: Final = (
    "memlog: this TLS setting is fixed at startup (cacheshim serve --tls-...); restart the "
    "shim to change it"
)
NO_TLS_LISTENER: Final = (
    "memlog: the shim has no TLS listener to apply this to (start it with --tls-port)"
)
TLS_UPDATE_FAILED: Final = "Unable to update TLS configuration. Check server logs."
# What CONFIG SET may change on a running TLS listener: the context of new connections.
TLS_RELOADABLE: Final = frozenset(
    {
        "tls-cert-file", "tls-key-file", "tls-key-file-pass", "tls-ca-cert-file",
        "tls-ca-cert-dir", "tls-auth-clients", "tls-protocols", "tls-ciphers",
        "tls-ciphersuites", "tls-prefer-server-ciphers",
    }
)  # fmt: skip
# memlog's own parameters: CONFIG GET shows each by its exact name (not to a pattern, so
# CONFIG GET * lists what Redis lists); they are set by `cacheshim serve` flags only.
MAX_STALENESS: Final = "memlog-max-staleness-ms"
MEMLOG_FIXED: Final = {MAX_STALENESS: "--max-staleness-ms"}
MEMLOG_SET_AT_START: Final = (
    "memlog: this is set when the shim starts (cacheshim serve %s); restart the shim to change it"
)
NO_SAVE_POINTS: Final = (
    "memlog: the shim saves no RDB file; every write is in the replicated log, and snapshots "
    "are made by the snapshotter (memlog snapshot --every-s, --every-records)"
)
NO_AOF: Final = (
    "memlog: the shim writes no AOF; every write is committed to the replicated, fsync'd log "
    "before its reply, which is always on"
)
NO_AUTHENTICATION: Final = (
    "memlog: requirepass is the default ACL user's password, set with CONFIG SET on a "
    "running shim or by an ACL file, not a startup setting"
)

_LLONG_MAX: Final = 2**63 - 1
_DIGITS: Final = re.compile(rb"[0-9]+")
_MEMORY: Final = re.compile(rb"([0-9]+)(b|k|kb|m|mb|g|gb)?", re.IGNORECASE)
_MEMORY_UNITS: Final = {
    b"": 1,
    b"b": 1,
    b"k": 1000,
    b"kb": 1024,
    b"m": 1000**2,
    b"mb": 1024**2,
    b"g": 1000**3,
    b"gb": 1024**3,
}
_C_LONG: Final = re.compile(rb"[+-]?[0-9]+")  # what strtol accepts when it must use it all
_OBL_CLASSES: Final = {
    b"normal": "normal",
    b"slave": "slave",
    b"replica": "slave",
    b"pubsub": "pubsub",
}
_OBL_ORDER: Final = ("normal", "slave", "pubsub")
# notify-keyspace-events: the classes that "A" stands for, in the order CONFIG GET prints them.
_EVENT_CLASSES_ALL: Final = "g$lshzxetd"
_EVENT_CHARS: Final = frozenset("Ag$lshzxeKEtmdn")
_TITLE_VARIABLES: Final = frozenset(
    {"title", "listen-addr", "server-mode", "port", "tls-port", "unixsocket", "config-file"}
)


def _strict_int(arg: bytes) -> int | None:
    """A decimal integer as Redis's string2ll accepts it: no '+', no leading zeros, no
    "-0", no blanks, within 64 bits."""
    if not 0 < len(arg) <= 20:
        return None
    digits = arg[1:] if arg[:1] == b"-" else arg
    if not _DIGITS.fullmatch(digits) or (digits[:1] == b"0" and len(arg) > 1):
        return None
    value = int(arg)
    return value if -(2**63) <= value <= _LLONG_MAX else None


def parse_memory(arg: bytes) -> int | None:
    """A memory amount as Redis's memtoull reads it: digits and an optional unit; a number
    too big for 64 bits saturates, as strtoull does."""
    match = _MEMORY.fullmatch(arg)
    if match is None:
        return None
    value = int(match.group(1))
    if value > ULLONG_MAX:
        value = ULLONG_MAX
    value *= _MEMORY_UNITS[match.group(2).lower() if match.group(2) else b""]
    return value % (ULLONG_MAX + 1)  # unsigned arithmetic wraps, as in C


def _c_long(arg: bytes) -> int | None:
    return int(arg) if _C_LONG.fullmatch(arg) else None


class ServerConfig:
    """The CONFIG parameters of one shim: values by canonical name, validated on set."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, str] = {name: param.default for name, param in PARAMS.items()}
        # Rebuilds the TLS listener's context from the values CONFIG SET would leave, or
        # raises ValueError (the shim sets it when it has a TLS listener).
        self.tls_reload: Callable[[Mapping[str, str]], None] | None = None
        for name, value in (overrides or {}).items():
            self.values[ALIASES.get(name, name)] = value

    @classmethod
    def for_shim(cls, host: str, port: int) -> ServerConfig:
        """The parameters of a shim listening on host:port: Redis's defaults, except those
        that describe the shim itself."""
        return cls(
            {
                "port": str(port),
                "bind": host,
                "dir": os.getcwd(),
                # memlog keeps no snapshot or AOF files: the log is the persistence.
                "save": "",
                "appendonly": "no",
                # DEBUG DIGEST and DEBUG DIGEST-VALUE are served.
                "enable-debug-command": "yes",
            }
        )

    # -- reads ---------------------------------------------------------------------------

    @staticmethod
    def names() -> Iterator[str]:
        """Every parameter name, aliases included (what CONFIG GET * lists)."""
        yield from PARAMS
        yield from ALIASES

    def get(self, name: str) -> str | None:
        """The value of a parameter (any case, aliases too), or None if there is none."""
        name = name.lower()
        return self.values.get(ALIASES.get(name, name))

    def int_value(self, name: str) -> int:
        """A numeric parameter as a number (``maxmemory-clients`` percentages are 0)."""
        value = self.get(name) or "0"
        return 0 if value.endswith("%") else int(value)

    # -- CONFIG SET ---------------------------------------------------------------------------

    def set_many(self, pairs: Sequence[tuple[bytes, bytes]], startup: bool = False) -> None:
        """Set every pair or none (CONFIG SET p1 v1 p2 v2 ...); raise Redis's error.

        A raise of maxclients also raises the process's open files limit, or is refused
        when the system will not allow it (at startup the caller fits it instead: see
        cacheshim.clientlimits.startup_maxclients)."""
        canonical: list[str] = []
        seen: set[str] = set()
        # First every name: unknown, immutable, protected or repeated parameters fail the
        # whole command before any value is looked at, as in Redis.
        for raw_name, _ in pairs:
            spelled = text_from_bytes(raw_name)
            lowered = spelled.lower()
            name = ALIASES.get(lowered, lowered)
            param = PARAMS.get(name)
            if name in MEMLOG_FIXED:
                reason = MEMLOG_SET_AT_START % MEMLOG_FIXED[name]
                raise CommandError(SET_FAILED % (spelled, reason))
            if param is None:
                raise CommandError(UNKNOWN_OPTION % spelled)
            if param.kind == IMMUTABLE:
                raise CommandError(SET_FAILED % (spelled, CANNOT_SET_IMMUTABLE))
            if param.kind == PROTECTED:
                raise CommandError(SET_FAILED % (spelled, CANNOT_SET_PROTECTED))
            if name.startswith("tls-") and not startup:
                if name not in TLS_RELOADABLE:
                    raise CommandError(SET_FAILED % (spelled, TLS_FIXED))
                if self.tls_reload is None:
                    raise CommandError(SET_FAILED % (spelled, NO_TLS_LISTENER))
            if lowered in seen:
                raise CommandError(SET_FAILED % (spelled, DUPLICATE_PARAMETER))
            seen.add(lowered)
            canonical.append(name)
        # Then every value, in order; the first bad one fails the command and nothing is set.
        updates: dict[str, str] = {}
        for (raw_name, raw_value), name in zip(pairs, canonical, strict=True):
            try:
                updates[name] = self._validate(name, PARAMS[name], raw_value)
            except ValueError as exc:
                raise CommandError(SET_FAILED % (text_from_bytes(raw_name), exc)) from None
        # Then what must be applied to succeed (Redis's apply functions).
        for (raw_name, _), name in zip(pairs, canonical, strict=True):
            if name == "maxclients" and not startup:
                wanted = int(updates[name])
                if wanted > self.int_value(name) and (fitted := fit_open_files(wanted)) != wanted:
                    reason = MAXCLIENTS_TOO_MANY_FOR_OS % fitted
                    raise CommandError(SET_FAILED % (text_from_bytes(raw_name), reason))
        _check_eviction({**self.values, **updates}, pairs, canonical)
        # Redis names the first parameter that rebuilds its TLS context (tls-auth-clients
        # does not: it is read per connection), else tls-auth-clients.
        tls_names = sorted(
            (name == "tls-auth-clients", i, raw)
            for i, ((raw, _), name) in enumerate(zip(pairs, canonical, strict=True))
            if name in TLS_RELOADABLE
        )
        if tls_names and not startup and self.tls_reload is not None:
            try:
                self.tls_reload({**self.values, **updates})
            except ValueError:
                raise CommandError(
                    SET_FAILED % (text_from_bytes(tls_names[0][2]), TLS_UPDATE_FAILED)
                ) from None
        self.values.update(updates)

    def _validate(self, name: str, param: Param, raw: bytes) -> str:
        """The value to store for raw, or ValueError with Redis's reason."""
        if param.kind == BOOL:
            lowered = raw.lower()
            if lowered not in (b"yes", b"no"):
                raise ValueError(NOT_YES_OR_NO)
            if name == "appendonly" and lowered == b"yes":
                raise ValueError(NO_AOF)
            return lowered.decode()
        if param.kind == ENUM:
            text = text_from_bytes(raw).lower()
            if text not in param.values:
                raise ValueError(NOT_ONE_OF % ", ".join(param.values))
            return text
        if param.kind == INT:
            value = _strict_int(raw)
            if value is None:
                raise ValueError(NOT_AN_INTEGER)
            self._check_range(param, value)
            if name == "port" and value != self.int_value("port"):
                raise ValueError(LISTEN_FIXED)
            return str(value)
        if param.kind in (MEMORY, MEMORY_OR_PERCENT):
            return self._memory(param, raw)
        if param.kind == SPECIAL:
            return self._special(name, raw)
        if name == "proc-title-template":
            _check_title_template(text_from_bytes(raw))
        return text_from_bytes(raw)

    @staticmethod
    def _check_range(param: Param, value: int) -> None:
        if not param.low <= value <= param.high:
            raise ValueError(OUT_OF_RANGE % (param.low, param.high))

    def _memory(self, param: Param, raw: bytes) -> str:
        percent = param.kind == MEMORY_OR_PERCENT
        if percent and raw.endswith(b"%"):
            value = _strict_int(raw[:-1])
            if value is None or value < 0:
                raise ValueError(NOT_A_MEMORY_OR_PERCENT_VALUE)
            if value > 100:
                raise ValueError(PERCENT_TOO_BIG)
            return f"{value}%" if value else "0"
        amount = parse_memory(raw)
        if amount is None:
            raise ValueError(NOT_A_MEMORY_OR_PERCENT_VALUE if percent else NOT_A_MEMORY_VALUE)
        self._check_range(param, amount)
        return str(amount)

    def _special(self, name: str, raw: bytes) -> str:
        if name == "save":
            if _save(raw):  # (a malformed value gets Redis's error first)
                raise ValueError(NO_SAVE_POINTS)
            return ""
        if name == "client-output-buffer-limit":
            return self._output_buffer_limits(raw)
        if name == "oom-score-adj-values":
            return _oom_score_adj_values(raw)
        if name == "latency-tracking-info-percentiles":
            return _percentiles(raw)
        if name == "notify-keyspace-events":
            return _keyspace_events(text_from_bytes(raw))
        if name == "bind":
            if text_from_bytes(raw) != self.values["bind"]:
                raise ValueError(LISTEN_FIXED)
            return self.values["bind"]
        if name == "requirepass":
            raise ValueError(NO_AUTHENTICATION)
        raise AssertionError(f"no validator for {name}")

    def _output_buffer_limits(self, raw: bytes) -> str:
        fields = raw.split(b" ") if raw else []  # "" sets nothing, as in Redis
        if len(fields) % 4:
            raise ValueError(OBL_ARGUMENT_COUNT)
        current = _split_limits(self.values["client-output-buffer-limit"])
        limits = dict(zip(_OBL_ORDER, current, strict=True))
        for i in range(0, len(fields), 4):
            klass = _OBL_CLASSES.get(fields[i].lower())
            if klass is None:
                raise ValueError(OBL_CLASS)
            hard, soft = parse_memory(fields[i + 1]), parse_memory(fields[i + 2])
            seconds = _c_long(fields[i + 3])
            if hard is None or soft is None or seconds is None or seconds < 0:
                raise ValueError(OBL_VALUE)
            limits[klass] = f"{hard} {soft} {seconds}"
        return " ".join(f"{klass} {limits[klass]}" for klass in _OBL_ORDER)


def _check_eviction(
    values: Mapping[str, str], pairs: Sequence[tuple[bytes, bytes]], canonical: list[str]
) -> None:
    """memlog enforces maxmemory by refusing writes (noeviction) and evicts nothing: every
    shim would have to evict the same keys at the same log index, decided once and logged,
    which does not exist. So a maxmemory with another policy is refused, naming the first
    of the two parameters set. (Without maxmemory a policy evicts nothing, in Redis too; it
    is kept, since an LFU policy is what OBJECT FREQ asks for.)"""
    if values["maxmemory"] == "0" or values["maxmemory-policy"] == "noeviction":
        return
    for (raw_name, _), name in zip(pairs, canonical, strict=True):
        if name in ("maxmemory", "maxmemory-policy"):
            raise CommandError(SET_FAILED % (text_from_bytes(raw_name), EVICTION_UNSUPPORTED))


def _split_limits(value: str) -> list[str]:
    words = value.split(" ")
    return [" ".join(words[i + 1 : i + 4]) for i in range(0, len(words), 4)]


def _save(raw: bytes) -> str:
    if not raw:
        return ""
    fields = raw.split(b" ")
    if len(fields) % 2:
        raise ValueError(INVALID_SAVE)
    numbers: list[int] = []
    for i, field in enumerate(fields):
        value = _c_long(field)
        # Each point is <seconds> (at least 1) <changes> (at least 0).
        if value is None or value < (1 if i % 2 == 0 else 0):
            raise ValueError(INVALID_SAVE)
        numbers.append(value)
    return " ".join(str(n) for n in numbers)


def _oom_score_adj_values(raw: bytes) -> str:
    fields = raw.split(b" ")
    if len(fields) != 3:
        raise ValueError(OOM_ARGUMENT_COUNT)
    values: list[int] = []
    for field in fields:
        value = _c_long(field)
        if value is None or not -2000 <= value <= 2000:
            raise ValueError(OOM_RANGE)
        values.append(value)
    return " ".join(str(v) for v in values)


def _percentiles(raw: bytes) -> str:
    if not raw:
        return ""
    out: list[str] = []
    for field in raw.split(b" "):
        try:
            plain = field and field.strip() == field and b"_" not in field
            value = float(field) if plain else None
        except ValueError:
            value = None
        if value is None or value != value:
            raise ValueError(PERCENTILES_INVALID)
        if not 0.0 <= value <= 100.0:
            raise ValueError(PERCENTILES_RANGE)
        out.append(f"{value:f}".rstrip("0").rstrip("."))
    return " ".join(out)


def _keyspace_events(text: str) -> str:
    if any(c not in _EVENT_CHARS for c in text):
        raise ValueError(EVENTS_INVALID)
    classes = set(text.replace("A", _EVENT_CLASSES_ALL))
    if set(_EVENT_CLASSES_ALL) <= classes:
        out = "A"  # Redis then leaves out 'n' (new key), which 'A' does not cover
    else:
        out = "".join(c for c in _EVENT_CLASSES_ALL + "n" if c in classes)
    return out + "".join(c for c in "KEm" if c in classes)


def _check_title_template(text: str) -> None:
    if not text:
        raise ValueError(TITLE_TEMPLATE_INVALID)
    i = 0
    while i < len(text):
        if text[i] == "{":
            end = text.find("}", i)
            if end < 0 or text[i + 1 : end] not in _TITLE_VARIABLES:
                raise ValueError(TITLE_TEMPLATE_INVALID)
            i = end
        i += 1
