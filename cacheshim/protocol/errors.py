"""Every error text cacheshim sends, spelled exactly as Redis 7.0 spells it.

An error reply is ``-`` + text + CRLF; the text starts with its code (``ERR``, ``WRONGTYPE``,
``NOAUTH``, ...). The constants here hold the whole text, code included, so a handler returns
``Error(errors.SYNTAX_ERROR)`` and the wire carries ``-ERR syntax error\\r\\n``.

Texts that echo client bytes (command names, arguments) are built by the functions below,
which reproduce Redis's C formatting byte for byte: ``%s`` stops at the first NUL byte,
``%.128s`` also cuts at 128 bytes (possibly inside a UTF-8 sequence). Client bytes are carried
inside ``str`` with the ``surrogateescape`` error handler (see :func:`text_from_bytes`), so
any byte survives the round trip; the encoder (``protocol.resp``) writes them back with the
same handler and maps CR and LF to spaces, as Redis does for every formatted error.

Where each text comes from (Redis 7.0; checked against the source and a live 7.0.15 server):

- ``src/networking.c``: ``processMultibulkBuffer``, ``processInlineBuffer`` (protocol errors),
  ``readQueryFromClient`` (query buffer limit: the client is closed without a reply).
- ``src/server.c``: ``processCommand`` (unknown command or subcommand, arity, ``NOAUTH``),
  ``createSharedObjects`` (``WRONGTYPE``, ``syntax error``).
- ``src/object.c``: ``getLongLongFromObjectOrReply``, ``getDoubleFromObjectOrReply``.
- ``src/networking.c`` ``helloCommand`` (``NOPROTO``), ``src/db.c`` ``selectCommand``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

# --- Protocol errors: the reply is sent, then the connection is closed. ---------------------

PROTOCOL_INVALID_MULTIBULK_LENGTH: Final = "ERR Protocol error: invalid multibulk length"
PROTOCOL_INVALID_BULK_LENGTH: Final = "ERR Protocol error: invalid bulk length"
# Formatted with the offending byte, see expected_dollar().
PROTOCOL_EXPECTED_DOLLAR: Final = "ERR Protocol error: expected '$', got '%s'"
PROTOCOL_TOO_BIG_INLINE_REQUEST: Final = "ERR Protocol error: too big inline request"
PROTOCOL_TOO_BIG_MBULK_COUNT: Final = "ERR Protocol error: too big mbulk count string"
PROTOCOL_TOO_BIG_BULK_COUNT: Final = "ERR Protocol error: too big bulk count string"
PROTOCOL_UNBALANCED_QUOTES: Final = "ERR Protocol error: unbalanced quotes in request"
# Only while the connection has not authenticated (requirepass / ACL), since Redis 6.2.6.
PROTOCOL_UNAUTHENTICATED_MULTIBULK_LENGTH: Final = (
    "ERR Protocol error: unauthenticated multibulk length"
)
PROTOCOL_UNAUTHENTICATED_BULK_LENGTH: Final = "ERR Protocol error: unauthenticated bulk length"
# Never sent: Redis logs this and closes the connection without a reply.
QUERY_BUFFER_LIMIT_REACHED: Final = "Closing client that reached max query buffer length"

# --- Command errors: the reply is sent and the connection stays open. -----------------------

# Formatted by unknown_command(): name cut at 128 bytes, then each argument as '%.*s'
# followed by one space while the argument part is shorter than 128 bytes.
UNKNOWN_COMMAND: Final = "ERR unknown command '%s', with args beginning with: %s"
# Formatted by unknown_subcommand(): the container command upper-cased.
UNKNOWN_SUBCOMMAND: Final = "ERR unknown subcommand '%s'. Try %s HELP."
# Formatted by wrong_number_of_arguments() with the command's full lower-case name from the
# command table, "get" or "config|get" (not the client's spelling).
WRONG_NUMBER_OF_ARGUMENTS: Final = "ERR wrong number of arguments for '%s' command"
WRONGTYPE: Final = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_AN_INTEGER: Final = "ERR value is not an integer or out of range"
NOT_A_VALID_FLOAT: Final = "ERR value is not a valid float"
SYNTAX_ERROR: Final = "ERR syntax error"
NOAUTH: Final = "NOAUTH Authentication required."
NOPROTO: Final = "NOPROTO unsupported protocol version"
# processCommand while the data set is (re)loaded: here, while a shim the log was trimmed past
# restores the newest snapshot (cacheshim.server.replica).
LOADING: Final = "LOADING Redis is loading the dataset in memory"
# A replica whose link to its master is down, with replica-serve-stale-data no; memlog's
# shims answer it to local reads past --max-staleness-ms without word from the log.
MASTERDOWN: Final = (
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
)
DB_INDEX_OUT_OF_RANGE: Final = "ERR DB index is out of range"

# --- Keys and strings (db.c, expire.c, t_string.c, object.c) --------------------------------

NO_SUCH_KEY: Final = "ERR no such key"
SAME_OBJECT: Final = "ERR source and destination objects are the same"
# getIntFromObjectOrReply: a number that parses as 64-bit but not as a C int.
NOT_AN_INT32: Final = "ERR value is out of range, value must between -2147483648 and 2147483647"
# Formatted by invalid_expire_time() with the command's full name.
INVALID_EXPIRE_TIME: Final = "ERR invalid expire time in '%s' command"
# Formatted with the option as C prints it (up to a NUL byte), see unsupported_option().
EXPIRE_UNSUPPORTED_OPTION: Final = "ERR Unsupported option %s"
EXPIRE_NX_AND_OTHERS: Final = "ERR NX and XX, GT or LT options at the same time are not compatible"
EXPIRE_GT_AND_LT: Final = "ERR GT and LT options at the same time are not compatible"
INCR_OVERFLOW: Final = "ERR increment or decrement would overflow"
DECRBY_OVERFLOW: Final = "ERR decrement would overflow"
INCR_NAN_OR_INFINITY: Final = "ERR increment would produce NaN or Infinity"
STRING_TOO_LONG: Final = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_OUT_OF_RANGE: Final = "ERR offset is out of range"
INVALID_CURSOR: Final = "ERR invalid cursor"
LCS_NOT_STRINGS: Final = "ERR The specified keys must contain string values"
LCS_LEN_AND_IDX: Final = "ERR If you want both the length and indexes, please just use IDX."
LCS_STRING_TOO_LONG: Final = "ERR String too long for LCS"
LCS_TABLE_TOO_BIG: Final = (
    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
)
OBJECT_FREQ_WITHOUT_LFU: Final = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
    "that when switching between policies at runtime LRU and LFU data will take some time to "
    "adjust."
)

# Redis formats these names and arguments with %.128s and a 128-byte budget.
_ECHO_BYTES_MAX: Final = 128


class RespError(Exception):
    """An error whose :attr:`message` is the exact text Redis would send (code first)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CommandError(RespError):
    """One command failed; reply ``-<message>`` and keep serving the connection.

    Handlers may raise it from deep inside argument parsing instead of returning an
    ``Error`` value; the server turns it into the same reply.
    """


class ProtocolError(RespError):
    """The request stream is malformed: reply ``-<message>``, then close the connection.

    Redis sets ``CLIENT_CLOSE_AFTER_REPLY``: commands parsed before the error still run and
    are answered first, nothing after it is read.
    """

    # Whether the server sends the error reply before closing.
    send_reply: ClassVar[bool] = True


class QueryBufferLimitError(ProtocolError):
    """Unparsed input exceeded ``client-query-buffer-limit``: close without any reply.

    Redis's ``readQueryFromClient`` logs the client and frees it; nothing is written.
    """

    send_reply: ClassVar[bool] = False

    def __init__(self, buffered_bytes: int, limit_bytes: int) -> None:
        super().__init__(QUERY_BUFFER_LIMIT_REACHED)
        self.buffered_bytes = buffered_bytes
        self.limit_bytes = limit_bytes


def text_from_bytes(data: bytes) -> str:
    """Client bytes as ``str``, losslessly (undecodable bytes become lone surrogates)."""
    return data.decode("utf-8", "surrogateescape")


def _c_string(data: bytes, precision: int | None = None) -> bytes:
    """What C's ``%s`` (or ``%.Ns``) prints for this buffer: up to the first NUL, cut to N."""
    nul = data.find(0)
    if nul >= 0:
        data = data[:nul]
    if precision is not None:
        data = data[:precision]
    return data


def expected_dollar(got: int) -> str:
    """``expected '$', got 'x'`` for the byte found where a bulk header should start."""
    return PROTOCOL_EXPECTED_DOLLAR % text_from_bytes(bytes((got,)))


def unknown_command(name: bytes, args: Sequence[bytes]) -> str:
    """Redis's unknown-command text; ``args`` are the arguments after the name."""
    echoed = bytearray()
    for arg in args:
        if len(echoed) >= _ECHO_BYTES_MAX:
            break
        echoed += b"'" + _c_string(arg, _ECHO_BYTES_MAX - len(echoed)) + b"' "
    return UNKNOWN_COMMAND % (
        text_from_bytes(_c_string(name, _ECHO_BYTES_MAX)),
        text_from_bytes(bytes(echoed)),
    )


def unknown_subcommand(container: bytes, subcommand: bytes) -> str:
    """``unknown subcommand 'x'. Try CONFIG HELP.`` for a container command (CONFIG, CLIENT)."""
    return UNKNOWN_SUBCOMMAND % (
        text_from_bytes(_c_string(subcommand, _ECHO_BYTES_MAX)),
        text_from_bytes(_c_string(container).upper()),
    )


def wrong_number_of_arguments(full_name: str) -> str:
    """Arity error; ``full_name`` is the table's lower-case name, ``"config|get"`` for a
    subcommand."""
    return WRONG_NUMBER_OF_ARGUMENTS % full_name


def invalid_expire_time(full_name: str) -> str:
    """``invalid expire time in 'set' command``, with the command's full lower-case name."""
    return INVALID_EXPIRE_TIME % full_name


def unsupported_option(option: bytes) -> str:
    """EXPIRE's ``Unsupported option x``: the option as C's ``%s`` prints it."""
    return EXPIRE_UNSUPPORTED_OPTION % text_from_bytes(_c_string(option))


# --- Pub/sub (pubsub.c, server.c processCommand) --------------------------------------------

# Formatted by not_allowed_when_subscribed() with the command's full lower-case name.
NOT_ALLOWED_WHEN_SUBSCRIBED: Final = (
    "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are "
    "allowed in this context"
)
# SSUBSCRIBE inside MULTI/EXEC (a client that may not block).
SSUBSCRIBE_DENY_BLOCKING: Final = "ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client"
# Formatted by subcommand_syntax_error(): the subcommand as given, the container upper-cased.
SUBCOMMAND_SYNTAX_ERROR: Final = (
    "ERR unknown subcommand or wrong number of arguments for '%s'. Try %s HELP."
)


def not_allowed_when_subscribed(full_name: str) -> str:
    """A RESP2 client in subscribed mode sent another command (``get``, ``client|id``)."""
    return NOT_ALLOWED_WHEN_SUBSCRIBED % full_name


def subcommand_syntax_error(container: bytes, subcommand: bytes) -> str:
    """addReplySubcommandSyntaxError: ``PUBSUB CHANNELS a b`` and the like."""
    return SUBCOMMAND_SYNTAX_ERROR % (
        text_from_bytes(_c_string(subcommand, _ECHO_BYTES_MAX)),
        text_from_bytes(_c_string(container).upper()),
    )


# --- Hashes, sets, SORT (t_hash.c, t_set.c, sort.c, object.c) -----------------------------

HASH_VALUE_NOT_AN_INTEGER: Final = "ERR hash value is not an integer"
HASH_VALUE_NOT_A_FLOAT: Final = "ERR hash value is not a float"
# HINCRBYFLOAT's increment is itself infinite.
VALUE_IS_NAN_OR_INFINITY: Final = "ERR value is NaN or Infinity"
# HRANDFIELD ... WITHVALUES with a count whose reply length would overflow.
VALUE_OUT_OF_RANGE: Final = "ERR value is out of range"
# getPositiveLongFromObjectOrReply's default text (SPOP's count).
VALUE_MUST_BE_POSITIVE: Final = "ERR value is out of range, must be positive"
# Formatted by long_out_of_range(): getRangeLongFromObjectOrReply's default text.
LONG_OUT_OF_RANGE: Final = "ERR value is out of range, value must between %d and %d"
NUMKEYS_NOT_POSITIVE: Final = "ERR numkeys should be greater than 0"
NUMKEYS_OVER_ARGS: Final = "ERR Number of keys can't be greater than number of args"
LIMIT_IS_NEGATIVE: Final = "ERR LIMIT can't be negative"
SORT_SCORE_NOT_A_DOUBLE: Final = "ERR One or more scores can't be converted into double"


def long_out_of_range(low: int, high: int) -> str:
    """``value is out of range, value must between -9223372036854775807 and ...``."""
    return LONG_OUT_OF_RANGE % (low, high)


# --- Sorted sets (t_zset.c; timeouts: timeout.c) ---------------------------------------------

ZADD_XX_AND_NX: Final = "ERR XX and NX options at the same time are not compatible"
ZADD_GT_LT_NX: Final = "ERR GT, LT, and/or NX options at the same time are not compatible"
ZADD_INCR_ONE_PAIR: Final = "ERR INCR option supports a single increment-element pair"
# ZINCRBY / ZADD INCR adding -inf to inf.
ZSET_SCORE_NAN: Final = "ERR resulting score is not a number (NaN)"
ZSET_MIN_MAX_NOT_FLOAT: Final = "ERR min or max is not a float"
ZSET_LEX_RANGE_NOT_VALID: Final = "ERR min or max not valid string range item"
ZRANGE_LIMIT_WITH_RANK: Final = (
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
)
ZRANGE_WITHSCORES_WITH_LEX: Final = (
    "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
)
WEIGHT_NOT_A_FLOAT: Final = "ERR weight value is not a float"
# ZMPOP/BZMPOP's COUNT (getRangeLongFromObjectOrReply with this text).
COUNT_NOT_POSITIVE: Final = "ERR count should be greater than 0"
# Formatted by at_least_one_input_key() with the command's full name.
AT_LEAST_ONE_INPUT_KEY: Final = "ERR at least 1 input key is needed for '%s' command"
# A blocking command's timeout (getTimeoutFromObjectOrReply, seconds as a long double).
TIMEOUT_NOT_A_FLOAT: Final = "ERR timeout is not a float or out of range"
TIMEOUT_IS_NEGATIVE: Final = "ERR timeout is negative"


def at_least_one_input_key(full_name: str) -> str:
    """ZUNION/ZINTER/ZDIFF (and STORE forms, ZINTERCARD) with numkeys below 1."""
    return AT_LEAST_ONE_INPUT_KEY % full_name


# --- Bitmaps, HyperLogLog, geo (bitops.c, hyperloglog.c, geo.c) -------------------------------

BIT_OFFSET_NOT_AN_INTEGER: Final = "ERR bit offset is not an integer or out of range"
BIT_NOT_AN_INTEGER: Final = "ERR bit is not an integer or out of range"
BITPOS_BIT_NOT_0_OR_1: Final = "ERR The bit argument must be 1 or 0."
BITOP_NOT_ONE_KEY: Final = "ERR BITOP NOT must be called with a single source key."
BITFIELD_INVALID_TYPE: Final = (
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but "
    "i64 is."
)
BITFIELD_INVALID_OVERFLOW: Final = "ERR Invalid OVERFLOW type specified"
BITFIELD_RO_ONLY_GET: Final = "ERR BITFIELD_RO only supports the GET subcommand"
HLL_WRONGTYPE: Final = "WRONGTYPE Key is not a valid HyperLogLog string value."
HLL_CORRUPTED: Final = "INVALIDOBJ Corrupted HLL object detected"
HLL_SPARSE_TOO_BIG: Final = "ERR HLL sparse encoding is corrupted or too big"
GEO_INVALID_LONLAT: Final = "ERR invalid longitude,latitude pair %f,%f"
GEO_XX_AND_NX: Final = "ERR XX and NX options at the same time are not compatible"
GEO_UNSUPPORTED_UNIT: Final = "ERR unsupported unit provided. please use M, KM, FT, MI"
GEO_MEMBER_NOT_FOUND: Final = "ERR could not decode requested zset member"
GEO_NEED_RADIUS_OR_BOX: Final = (
    "ERR exactly one of BYRADIUS and BYBOX arguments must be provided for GEOSEARCH"
)


# --- Lists and blocking (t_list.c, blocked.c, networking.c CLIENT UNBLOCK) -------------------

LIST_INDEX_OUT_OF_RANGE: Final = "ERR index out of range"
LPOS_RANK_ZERO: Final = (
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or "
    "use negative to start from the end of the list"
)
# LPOS's COUNT and MAXLEN: the same text answers a negative number and a non-number.
LPOS_COUNT_NEGATIVE: Final = "ERR COUNT can't be negative"
LPOS_MAXLEN_NEGATIVE: Final = "ERR MAXLEN can't be negative"
# What a client blocked in BLPOP (or another blocking command) gets from CLIENT UNBLOCK id
# ERROR; the code is UNBLOCKED, not ERR.
UNBLOCKED: Final = "UNBLOCKED client unblocked via CLIENT UNBLOCK"


# --- Streams (t_stream.c, blocked.c) ----------------------------------------------------------

STREAM_INVALID_ID: Final = "ERR Invalid stream ID specified as stream command argument"
STREAM_MAXLEN_AND_MINID: Final = (
    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
)
STREAM_MAXLEN_NEGATIVE: Final = "ERR The MAXLEN argument must be >= 0."
STREAM_LIMIT_NEGATIVE: Final = "ERR The LIMIT argument must be >= 0."
STREAM_LIMIT_WITHOUT_STRATEGY: Final = (
    "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
)
STREAM_XTRIM_WITHOUT_STRATEGY: Final = (
    "ERR syntax error, XTRIM must be called with a trimming strategy"
)
STREAM_LIMIT_WITHOUT_APPROX: Final = (
    "ERR syntax error, LIMIT cannot be used without the special ~ option"
)
STREAM_XADD_ID_ZERO: Final = "ERR The ID specified in XADD must be greater than 0-0"
STREAM_EXHAUSTED: Final = (
    "ERR The stream has exhausted the last possible ID, unable to add more items"
)
STREAM_XADD_ID_TOO_SMALL: Final = (
    "ERR The ID specified in XADD is equal or smaller than the target stream top item"
)
STREAM_INVALID_START: Final = "ERR invalid start ID for the interval"
STREAM_INVALID_END: Final = "ERR invalid end ID for the interval"
STREAM_XREAD_UNBALANCED: Final = (
    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
)
STREAM_GROUP_ONLY_XREADGROUP: Final = (
    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
)
STREAM_NOACK_ONLY_XREADGROUP: Final = (
    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
)
STREAM_MISSING_GROUP: Final = "ERR Missing GROUP option for XREADGROUP"
STREAM_NOGROUP_XREADGROUP: Final = (
    "NOGROUP No such key '%s' or consumer group '%s' in XREADGROUP with GROUP option"
)
STREAM_DOLLAR_IN_XREADGROUP: Final = (
    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history "
    "of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ "
    "ID would just return an empty result set."
)
STREAM_GT_ONLY_XREADGROUP: Final = (
    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> "
    "<consumer> option."
)
# Formatted with the command's name as the script spelled it (lower case here).
STREAM_BLOCK_IN_SCRIPT: Final = "ERR %s command is not allowed with BLOCK option from scripts"
STREAM_BLOCK_TIMEOUT_NOT_INTEGER: Final = "ERR timeout is not an integer or out of range"
STREAM_ENTRIESREAD_NEGATIVE: Final = "ERR value for ENTRIESREAD must be positive or -1"
STREAM_XGROUP_NEEDS_KEY: Final = (
    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want "
    "to use the MKSTREAM option to create an empty stream automatically."
)
STREAM_NOGROUP_FOR_KEY: Final = "NOGROUP No such consumer group '%s' for key name '%s'"
STREAM_BUSYGROUP: Final = "BUSYGROUP Consumer Group name already exists"
STREAM_ENTRIES_ADDED_NEGATIVE: Final = "ERR entries_added must be positive"
STREAM_XSETID_BELOW_MAX_DELETED: Final = (
    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"
)
STREAM_XSETID_BELOW_TOP: Final = (
    "ERR The ID specified in XSETID is smaller than the target stream top item"
)
STREAM_XSETID_ENTRIES_ADDED_SMALL: Final = (
    "ERR The entries_added specified in XSETID is smaller than the target stream length"
)
STREAM_NOGROUP: Final = "NOGROUP No such key '%s' or consumer group '%s'"
STREAM_XCLAIM_MIN_IDLE: Final = "ERR Invalid min-idle-time argument for XCLAIM"
STREAM_XCLAIM_IDLE: Final = "ERR Invalid IDLE option argument for XCLAIM"
STREAM_XCLAIM_TIME: Final = "ERR Invalid TIME option argument for XCLAIM"
STREAM_XCLAIM_RETRYCOUNT: Final = "ERR Invalid RETRYCOUNT option argument for XCLAIM"
STREAM_XCLAIM_UNKNOWN_OPTION: Final = "ERR Unrecognized XCLAIM option '%s'"
STREAM_XAUTOCLAIM_MIN_IDLE: Final = "ERR Invalid min-idle-time argument for XAUTOCLAIM"
STREAM_XAUTOCLAIM_COUNT: Final = "ERR COUNT must be > 0"
# What a client blocked in XREADGROUP gets when its group or its key goes away.
STREAM_BLOCKED_GROUP_GONE: Final = (
    "NOGROUP the consumer group this client was blocked on no longer exists"
)
STREAM_BLOCKED_KEY_GONE: Final = "UNBLOCKED the stream key no longer exists"
