/* The read fast path of the shim: a run of plain GETs answered without leaving C.
 *
 * serve_gets(data, values, expires, now_ms, resp3) looks at the start of `data` (bytes just
 * read from a client whose parser holds nothing) and answers every complete
 * `*2\r\n$3\r\nGET\r\n$<n>\r\n<key>\r\n` request it finds there, in order, from the
 * database's dicts: a string value, or nil when the key is absent or expired as of now_ms.
 * It stops, consuming nothing more, at the first byte it does not fully understand: another
 * command, an inline command, an incomplete request, an odd spelling of a length, a key
 * holding another type (WRONGTYPE), or a key longer than KEY_BYTES_MAX. The Python path
 * (cacheshim.protocol.resp.RequestParser and the command table) then takes over from there, so every
 * error and every unusual case keeps its one implementation.
 *
 * Returns (consumed_bytes, replies, commands_served). `cacheshim/protocol/fastread.py` holds the same
 * function in Python; tests/cacheshim/protocol/test_fastread.py checks that both agree byte for byte.
 *
 * encode_reply (below) encodes the common replies of the other fast reads
 * (cacheshim/protocol/fastreads.py) for the Python encoder, which stays their specification.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define KEY_BYTES_MAX (64 * 1024)
#define STACK_OUT_BYTES 8192

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    char stack[STACK_OUT_BYTES];
} OutBuf;

static int out_reserve(OutBuf *out, Py_ssize_t extra) {
    if (out->len + extra <= out->cap) {
        return 0;
    }
    Py_ssize_t cap = out->cap * 2;
    while (cap < out->len + extra) {
        cap *= 2;
    }
    char *grown;
    if (out->data == out->stack) {
        grown = PyMem_Malloc((size_t)cap);
        if (grown != NULL) {
            memcpy(grown, out->data, (size_t)out->len);
        }
    } else {
        grown = PyMem_Realloc(out->data, (size_t)cap);
    }
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out->data = grown;
    out->cap = cap;
    return 0;
}

static void out_free(OutBuf *out) {
    if (out->data != out->stack) {
        PyMem_Free(out->data);
    }
}

/* A decimal length in Redis's strict spelling: "0" or digits without a leading zero, at
 * most 9 digits, ended by \r\n. Returns the number and moves *pos past the \r\n; -1 when
 * the bytes are anything else (or incomplete). */
static Py_ssize_t parse_length(const char *buf, Py_ssize_t end, Py_ssize_t *pos) {
    Py_ssize_t p = *pos;
    Py_ssize_t value = 0;
    Py_ssize_t digits = 0;
    while (p < end && buf[p] >= '0' && buf[p] <= '9') {
        if (digits == 9) {
            return -1;
        }
        value = value * 10 + (buf[p] - '0');
        digits++;
        p++;
    }
    if (digits == 0 || (digits > 1 && buf[*pos] == '0')) {
        return -1;
    }
    if (p + 1 >= end || buf[p] != '\r' || buf[p + 1] != '\n') {
        return -1;
    }
    *pos = p + 2;
    return value;
}

static PyObject *serve_gets(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *values;
    PyObject *expires;
    long long now_ms;
    int resp3;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O!O!Lp", &view, &PyDict_Type, &values, &PyDict_Type,
                          &expires, &now_ms, &resp3)) {
        return NULL;
    }
    const char *buf = view.buf;
    const Py_ssize_t end = view.len;
    const int check_expiry = PyDict_GET_SIZE(expires) > 0;
    const char *nil = resp3 ? "_\r\n" : "$-1\r\n";
    const Py_ssize_t nil_len = resp3 ? 3 : 5;
    OutBuf out;
    out.data = out.stack;
    out.len = 0;
    out.cap = STACK_OUT_BYTES;
    Py_ssize_t consumed = 0;
    Py_ssize_t served = 0;

    while (consumed < end) {
        Py_ssize_t p = consumed;
        /* "*2\r\n$3\r\n" then GET in any case, then "\r\n$" */
        if (end - p < 14 || memcmp(buf + p, "*2\r\n$3\r\n", 8) != 0) {
            break;
        }
        p += 8;
        if ((buf[p] | 0x20) != 'g' || (buf[p + 1] | 0x20) != 'e' || (buf[p + 2] | 0x20) != 't' ||
            buf[p + 3] != '\r' || buf[p + 4] != '\n' || buf[p + 5] != '$') {
            break;
        }
        p += 6;
        Py_ssize_t key_len = parse_length(buf, end, &p);
        if (key_len < 0 || key_len > KEY_BYTES_MAX || end - p < key_len + 2) {
            break;
        }
        if (buf[p + key_len] != '\r' || buf[p + key_len + 1] != '\n') {
            break;
        }
        PyObject *key = PyBytes_FromStringAndSize(buf + p, key_len);
        if (key == NULL) {
            goto fail;
        }
        PyObject *value = PyDict_GetItemWithError(values, key); /* borrowed */
        if (value == NULL && PyErr_Occurred()) {
            Py_DECREF(key);
            goto fail;
        }
        if (value != NULL && !PyBytes_Check(value)) {
            Py_DECREF(key);
            break; /* another type: WRONGTYPE comes from the Python path */
        }
        if (value != NULL && check_expiry) {
            PyObject *when = PyDict_GetItemWithError(expires, key); /* borrowed */
            if (when == NULL && PyErr_Occurred()) {
                Py_DECREF(key);
                goto fail;
            }
            if (when != NULL) {
                long long when_ms = PyLong_AsLongLong(when);
                if (when_ms == -1 && PyErr_Occurred()) {
                    Py_DECREF(key);
                    goto fail;
                }
                if (when_ms <= now_ms) {
                    value = NULL; /* expired by this clock: hidden, as a read does */
                }
            }
        }
        Py_DECREF(key);
        if (value == NULL) {
            if (out_reserve(&out, nil_len) < 0) {
                goto fail;
            }
            memcpy(out.data + out.len, nil, (size_t)nil_len);
            out.len += nil_len;
        } else {
            Py_ssize_t value_len = PyBytes_GET_SIZE(value);
            if (out_reserve(&out, value_len + 32) < 0) {
                goto fail;
            }
            out.len += sprintf(out.data + out.len, "$%zd\r\n", value_len);
            memcpy(out.data + out.len, PyBytes_AS_STRING(value), (size_t)value_len);
            out.len += value_len;
            out.data[out.len++] = '\r';
            out.data[out.len++] = '\n';
        }
        consumed = p + key_len + 2;
        served++;
    }
    PyBuffer_Release(&view);
    PyObject *replies = PyBytes_FromStringAndSize(out.data, out.len);
    out_free(&out);
    if (replies == NULL) {
        return NULL;
    }
    return Py_BuildValue("(nNn)", consumed, replies, served);

fail:
    PyBuffer_Release(&view);
    out_free(&out);
    return NULL;
}

/* ---- encode_reply: the common reply shapes of the fast reads, in C ---------------------
 *
 * encode_reply(value, resp3) -> bytes, or None for a value it does not handle. It handles
 * exactly: bytes, None, int (64-bit), and list, tuple and dict (exact types) made of those,
 * nested at most REPLY_DEPTH_MAX deep, and writes them as cacheshim.protocol.resp.encode
 * does (RESP2: a dict as a flat array of 2N; RESP3: a map, None as "_"). Anything else
 * (a subclass, a float, a Status, a set, ...) is left to the Python encoder, which is the
 * specification; tests/cacheshim/protocol/test_fastreads.py checks both agree byte for byte. */

#define REPLY_DEPTH_MAX 8

static int out_put(OutBuf *out, const char *data, Py_ssize_t len) {
    if (out_reserve(out, len) < 0) {
        return -1;
    }
    memcpy(out->data + out->len, data, (size_t)len);
    out->len += len;
    return 0;
}

/* kind, the number in decimal, CRLF (sprintf costs more than the rest of a short element). */
static int out_header(OutBuf *out, char kind, long long number) {
    if (out_reserve(out, 32) < 0) {
        return -1;
    }
    char digits[24];
    int count = 0;
    unsigned long long rest = number < 0 ? 0ULL - (unsigned long long)number
                                         : (unsigned long long)number;
    do {
        digits[count++] = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest != 0);
    char *at = out->data + out->len;
    *at++ = kind;
    if (number < 0) {
        *at++ = '-';
    }
    while (count > 0) {
        *at++ = digits[--count];
    }
    *at++ = '\r';
    *at++ = '\n';
    out->len = at - out->data;
    return 0;
}

/* 0: written; 1: a value this encoder leaves to Python; -1: a Python error is set. */
static int put_reply(OutBuf *out, PyObject *value, int resp3, int depth) {
    if (PyBytes_CheckExact(value)) {
        Py_ssize_t size = PyBytes_GET_SIZE(value);
        if (out_header(out, '$', size) < 0 || out_reserve(out, size + 2) < 0) {
            return -1;
        }
        memcpy(out->data + out->len, PyBytes_AS_STRING(value), (size_t)size);
        out->len += size;
        out->data[out->len++] = '\r';
        out->data[out->len++] = '\n';
        return 0;
    }
    if (value == Py_None) {
        return resp3 ? out_put(out, "_\r\n", 3) : out_put(out, "$-1\r\n", 5);
    }
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow != 0) {
            return 1; /* the Python encoder raises its own error */
        }
        if (number == -1 && PyErr_Occurred()) {
            return -1;
        }
        return out_header(out, ':', number);
    }
    if (depth >= REPLY_DEPTH_MAX) {
        return 1;
    }
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value)) {
        Py_ssize_t size = PySequence_Fast_GET_SIZE(value);
        if (out_header(out, '*', size) < 0) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < size; i++) {
            /* a list can change size only by Python code, and none runs here */
            int done = put_reply(out, PySequence_Fast_GET_ITEM(value, i), resp3, depth + 1);
            if (done != 0) {
                return done;
            }
        }
        return 0;
    }
    if (PyDict_CheckExact(value)) {
        Py_ssize_t size = PyDict_GET_SIZE(value);
        if (out_header(out, resp3 ? '%' : '*', resp3 ? size : 2 * size) < 0) {
            return -1;
        }
        Py_ssize_t pos = 0;
        PyObject *key;
        PyObject *item;
        while (PyDict_Next(value, &pos, &key, &item)) {
            int done = put_reply(out, key, resp3, depth + 1);
            if (done == 0) {
                done = put_reply(out, item, resp3, depth + 1);
            }
            if (done != 0) {
                return done;
            }
        }
        return 0;
    }
    return 1;
}

static PyObject *encode_reply(PyObject *self, PyObject *args) {
    PyObject *value;
    int resp3;
    (void)self;
    if (!PyArg_ParseTuple(args, "Op", &value, &resp3)) {
        return NULL;
    }
    OutBuf out;
    out.data = out.stack;
    out.len = 0;
    out.cap = STACK_OUT_BYTES;
    int done = put_reply(&out, value, resp3, 0);
    if (done != 0) {
        out_free(&out);
        if (done < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *encoded = PyBytes_FromStringAndSize(out.data, out.len);
    out_free(&out);
    return encoded;
}

/* ---- parse_request: one canonical request, for the fast reads ---------------------------
 *
 * parse_request(data, pos, args_max, arg_bytes_max) -> (args, next_pos), or None: the same
 * function as cacheshim.protocol.fastreads.parse_request_py (its specification): a `*N`
 * array (N from 1 to args_max, written without a leading zero) of bulk strings each at most
 * arg_bytes_max long, complete in data; None for anything else. */

static PyObject *parse_request(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos;
    Py_ssize_t args_max;
    Py_ssize_t arg_bytes_max;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &pos, &args_max, &arg_bytes_max)) {
        return NULL;
    }
    const char *buf = view.buf;
    const Py_ssize_t end = view.len;
    PyObject *list = NULL;
    if (pos < 0 || pos >= end || buf[pos] != '*') {
        goto none;
    }
    Py_ssize_t p = pos + 1;
    Py_ssize_t count = parse_length(buf, end, &p);
    if (count < 1 || count > args_max) {
        goto none;
    }
    list = PyList_New(count);
    if (list == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (p >= end || buf[p] != '$') {
            goto none;
        }
        p++;
        Py_ssize_t size = parse_length(buf, end, &p);
        if (size < 0 || size > arg_bytes_max || end - p < size + 2 || buf[p + size] != '\r' ||
            buf[p + size + 1] != '\n') {
            goto none;
        }
        PyObject *arg = PyBytes_FromStringAndSize(buf + p, size);
        if (arg == NULL) {
            Py_DECREF(list);
            PyBuffer_Release(&view);
            return NULL;
        }
        PyList_SET_ITEM(list, i, arg);
        p += size + 2;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(Nn)", list, p);

none:
    Py_XDECREF(list);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* ---- mget: MGET's answer, for the fast reads -------------------------------------------
 *
 * mget(keys, values, expires, now_ms, resp3) -> bytes, or None: the reply of MGET keys as
 * cacheshim.commands.strings.mget gives it (a string's value; nil for a missing key or one of
 * another type), or None when a key is expired by now_ms (the general path answers then). */

static PyObject *mget(PyObject *self, PyObject *args) {
    PyObject *keys;
    PyObject *values;
    PyObject *expires;
    long long now_ms;
    int resp3;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!Lp", &PyList_Type, &keys, &PyDict_Type, &values,
                          &PyDict_Type, &expires, &now_ms, &resp3)) {
        return NULL;
    }
    const int check_expiry = PyDict_GET_SIZE(expires) > 0;
    OutBuf out;
    out.data = out.stack;
    out.len = 0;
    out.cap = STACK_OUT_BYTES;
    Py_ssize_t count = PyList_GET_SIZE(keys);
    if (out_header(&out, '*', count) < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (check_expiry) {
            PyObject *when = PyDict_GetItemWithError(expires, key); /* borrowed */
            if (when == NULL && PyErr_Occurred()) {
                goto fail;
            }
            if (when != NULL) {
                long long when_ms = PyLong_AsLongLong(when);
                if (when_ms == -1 && PyErr_Occurred()) {
                    goto fail;
                }
                if (when_ms <= now_ms) {
                    out_free(&out);
                    Py_RETURN_NONE;
                }
            }
        }
        PyObject *value = PyDict_GetItemWithError(values, key); /* borrowed */
        if (value == NULL && PyErr_Occurred()) {
            goto fail;
        }
        if (value == NULL || !PyBytes_Check(value)) {
            if ((resp3 ? out_put(&out, "_\r\n", 3) : out_put(&out, "$-1\r\n", 5)) < 0) {
                goto fail;
            }
            continue;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(value);
        if (out_header(&out, '$', size) < 0 || out_reserve(&out, size + 2) < 0) {
            goto fail;
        }
        memcpy(out.data + out.len, PyBytes_AS_STRING(value), (size_t)size);
        out.len += size;
        out.data[out.len++] = '\r';
        out.data[out.len++] = '\n';
    }
    PyObject *encoded = PyBytes_FromStringAndSize(out.data, out.len);
    out_free(&out);
    return encoded;

fail:
    out_free(&out);
    return NULL;
}

/* ---- lrange and hgetall: their answers, for the fast reads -------------------------------
 *
 * lrange(args, values, expires, now_ms, resp3, list_type) and
 * hgetall(args, values, expires, now_ms, resp3, hash_type) -> bytes, or None: the replies of
 * LRANGE key start stop and HGETALL key as cacheshim.commands.lists.lrange and
 * cacheshim.commands.hashes.hgetall give them (args: the arguments after the name). None,
 * and the general path answers, for anything out of the ordinary: the key expired by
 * now_ms, a value of another type (WRONGTYPE), an index not spelled as a plain decimal of at
 * most 18 digits (the handler's parse_int is the specification of everything else). */

/* A plain decimal: an optional '-', then "0" or 1-18 digits without a leading zero (no
 * "-0"). 0 and the number in *value; -1 for any other spelling. */
static int plain_index(PyObject *arg, long long *value) {
    if (!PyBytes_CheckExact(arg)) {
        return -1;
    }
    const char *text = PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);
    int negative = size > 0 && text[0] == '-';
    Py_ssize_t digits = size - negative;
    if (digits < 1 || digits > 18 || (text[negative] == '0' && (digits > 1 || negative))) {
        return -1;
    }
    long long number = 0;
    for (Py_ssize_t i = negative; i < size; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return -1;
        }
        number = number * 10 + (text[i] - '0');
    }
    *value = negative ? -number : number;
    return 0;
}

/* The live value at key, of exactly `kind`: 0 and *value (borrowed, NULL: no such key);
 * 1: the general path answers (expired, another type); -1: an error is set. */
static int live_value(PyObject *key, PyObject *values, PyObject *expires, long long now_ms,
                      PyObject *kind, PyObject **value) {
    if (PyDict_GET_SIZE(expires) > 0) {
        PyObject *when = PyDict_GetItemWithError(expires, key); /* borrowed */
        if (when == NULL && PyErr_Occurred()) {
            return -1;
        }
        if (when != NULL) {
            long long when_ms = PyLong_AsLongLong(when);
            if (when_ms == -1 && PyErr_Occurred()) {
                return -1;
            }
            if (when_ms <= now_ms) {
                return 1;
            }
        }
    }
    *value = PyDict_GetItemWithError(values, key); /* borrowed */
    if (*value == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return Py_TYPE(*value) == (PyTypeObject *)kind ? 0 : 1;
}

static PyObject *finish(OutBuf *out) {
    PyObject *encoded = PyBytes_FromStringAndSize(out->data, out->len);
    out_free(out);
    return encoded;
}

static PyObject *lrange(PyObject *self, PyObject *args) {
    PyObject *request, *values, *expires, *list_type;
    long long now_ms;
    int resp3;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!LpO", &PyList_Type, &request, &PyDict_Type, &values,
                          &PyDict_Type, &expires, &now_ms, &resp3, &list_type)) {
        return NULL;
    }
    long long start, end;
    if (PyList_GET_SIZE(request) != 3 || plain_index(PyList_GET_ITEM(request, 1), &start) < 0 ||
        plain_index(PyList_GET_ITEM(request, 2), &end) < 0) {
        Py_RETURN_NONE;
    }
    PyObject *value = NULL;
    int found = live_value(PyList_GET_ITEM(request, 0), values, expires, now_ms, list_type,
                           &value);
    if (found != 0) {
        if (found < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    OutBuf out;
    out.data = out.stack;
    out.len = 0;
    out.cap = STACK_OUT_BYTES;
    long long size = value == NULL ? 0 : (long long)PyObject_Length(value);
    if (size < 0) {
        return NULL;
    }
    /* index_span: negatives from the end, clamped; nothing when start > end or past it */
    if (start < 0) {
        start += size;
    }
    if (end < 0) {
        end += size;
    }
    if (start < 0) {
        start = 0;
    }
    if (value == NULL || start > end || start >= size) {
        if (out_put(&out, "*0\r\n", 4) < 0) {
            goto fail;
        }
        return finish(&out);
    }
    if (end >= size) {
        end = size - 1;
    }
    long long count = end - start + 1;
    if (out_header(&out, '*', count) < 0) {
        goto fail;
    }
    /* Walk from the nearer end, as ListValue.span does; from the tail, the elements come
     * last first and are written back to front. */
    int from_tail = start >= size - (end + 1);
    PyObject *iterator = from_tail ? PyObject_CallMethod(value, "__reversed__", NULL)
                                   : PyObject_GetIter(value);
    if (iterator == NULL) {
        goto fail;
    }
    long long skip = from_tail ? size - (end + 1) : start;
    PyObject **items = PyMem_Malloc(sizeof(PyObject *) * (size_t)count);
    if (items == NULL) {
        Py_DECREF(iterator);
        PyErr_NoMemory();
        goto fail;
    }
    long long taken = 0;
    long long seen = 0;
    PyObject *item;
    while (taken < count && (item = PyIter_Next(iterator)) != NULL) {
        if (seen++ < skip) {
            Py_DECREF(item);
            continue;
        }
        items[from_tail ? count - 1 - taken : taken] = item; /* owned */
        taken++;
    }
    Py_DECREF(iterator);
    int bad = PyErr_Occurred() != NULL || taken != count;
    for (long long i = 0; i < taken; i++) {
        PyObject *element = items[from_tail ? count - taken + i : i];
        if (!bad) {
            if (!PyBytes_Check(element)) {
                bad = 1;
            } else {
                Py_ssize_t length = PyBytes_GET_SIZE(element);
                if (out_header(&out, '$', length) < 0 || out_reserve(&out, length + 2) < 0) {
                    bad = 1;
                } else {
                    memcpy(out.data + out.len, PyBytes_AS_STRING(element), (size_t)length);
                    out.len += length;
                    out.data[out.len++] = '\r';
                    out.data[out.len++] = '\n';
                }
            }
        }
        Py_DECREF(element);
    }
    PyMem_Free(items);
    if (bad) {
        if (PyErr_Occurred()) {
            goto fail;
        }
        out_free(&out);
        Py_RETURN_NONE;
    }
    return finish(&out);

fail:
    out_free(&out);
    return NULL;
}

static PyObject *hgetall(PyObject *self, PyObject *args) {
    PyObject *request, *values, *expires, *hash_type;
    long long now_ms;
    int resp3;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!LpO", &PyList_Type, &request, &PyDict_Type, &values,
                          &PyDict_Type, &expires, &now_ms, &resp3, &hash_type)) {
        return NULL;
    }
    if (PyList_GET_SIZE(request) != 1) {
        Py_RETURN_NONE;
    }
    PyObject *value = NULL;
    int found = live_value(PyList_GET_ITEM(request, 0), values, expires, now_ms, hash_type,
                           &value);
    if (found != 0) {
        if (found < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    OutBuf out;
    out.data = out.stack;
    out.len = 0;
    out.cap = STACK_OUT_BYTES;
    if (value == NULL) {
        if ((resp3 ? out_put(&out, "%0\r\n", 4) : out_put(&out, "*0\r\n", 4)) < 0) {
            goto fail;
        }
        return finish(&out);
    }
    PyObject *fields = PyObject_GetAttrString(value, "_fields"); /* HashValue's dict */
    if (fields == NULL) {
        goto fail;
    }
    if (!PyDict_CheckExact(fields)) {
        Py_DECREF(fields);
        out_free(&out);
        Py_RETURN_NONE;
    }
    int done = put_reply(&out, fields, resp3, 0);
    Py_DECREF(fields);
    if (done != 0) {
        if (done < 0) {
            goto fail;
        }
        out_free(&out);
        Py_RETURN_NONE;
    }
    return finish(&out);

fail:
    out_free(&out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"serve_gets", serve_gets, METH_VARARGS,
     "serve_gets(data, values, expires, now_ms, resp3) -> (consumed, replies, served)"},
    {"parse_request", parse_request, METH_VARARGS,
     "parse_request(data, pos, args_max, arg_bytes_max) -> (args, next_pos), or None"},
    {"mget", mget, METH_VARARGS,
     "mget(keys, values, expires, now_ms, resp3) -> the reply, or None (an expired key)"},
    {"lrange", lrange, METH_VARARGS,
     "lrange(args, values, expires, now_ms, resp3, list_type) -> the reply, or None"},
    {"hgetall", hgetall, METH_VARARGS,
     "hgetall(args, values, expires, now_ms, resp3, hash_type) -> the reply, or None"},
    {"encode_reply", encode_reply, METH_VARARGS,
     "encode_reply(value, resp3) -> bytes, or None for a value left to the Python encoder"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cacheshim.protocol._fastread",
    "The shim's read fast path: runs of GET, and the encoder of the common read replies.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fastread(void) { return PyModule_Create(&module); }
