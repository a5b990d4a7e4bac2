/* The write path's per-record work in C: reading the shape of a log record.
 *
 * plain_args(payload) -> list of bytes, or None. `payload` is a serialized
 * cacheshim.v1.Record (proto/cacheshim/v1/record.proto) that protobuf has already decoded
 * without error. When it is a plain record, the one command of a write outside a
 * transaction, written the way the shim writes it (cacheshim.server.writer: record_for and
 * encode_command_record), it returns that command's arguments; for anything else it returns
 * None and apply takes its general path (cacheshim.apply.record_problem and friends).
 *
 * Plain means: fields in ascending order of number, each at most once, of these only:
 * db (1), time_ms (2), shim_id (3), proposal_id (4), one Command (5) whose only fields are
 * one or more args (1), user (12); each with its declared wire type, nothing after the
 * last byte. No transaction, watched keys, unblock or chunk fields, and no unknown field:
 * so such a record always passes record_problem (but for its db's range, which apply checks)
 * and its arguments are `record.commands[0].args`. The Python side is the specification:
 * tests/cacheshim/test_records.py checks both agree on random and mutated records.
 *
 * encode_command_record (further down) writes such a record. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* A varint at *pos (at most 10 bytes); moves *pos past it. -1: malformed or past the end. */
static int read_varint(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos,
                       unsigned long long *value) {
    unsigned long long result = 0;
    int shift = 0;
    Py_ssize_t p = *pos;
    while (p < end && shift < 70) {
        unsigned char byte = buf[p++];
        result |= (unsigned long long)(byte & 0x7F) << shift;
        if ((byte & 0x80) == 0) {
            *pos = p;
            *value = result;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

/* A length-delimited field's extent at *pos: its start, and *pos past it. -1: malformed. */
static int read_length(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *pos,
                       Py_ssize_t *start) {
    unsigned long long size;
    if (read_varint(buf, end, pos, &size) < 0 || size > (unsigned long long)(end - *pos)) {
        return -1;
    }
    *start = *pos;
    *pos += (Py_ssize_t)size;
    return 0;
}

/* The args of the Command at buf[start:stop] as a new list; NULL with no error set: not
 * plain; NULL with an error set: out of memory. */
static PyObject *command_args(const unsigned char *buf, Py_ssize_t start, Py_ssize_t stop) {
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t p = start;
    while (p < stop) {
        if (buf[p++] != 0x0A) { /* field 1, length-delimited */
            goto not_plain;
        }
        Py_ssize_t arg_start;
        if (read_length(buf, stop, &p, &arg_start) < 0) {
            goto not_plain;
        }
        PyObject *arg = PyBytes_FromStringAndSize((const char *)buf + arg_start, p - arg_start);
        if (arg == NULL || PyList_Append(list, arg) < 0) {
            Py_XDECREF(arg);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(arg);
    }
    if (PyList_GET_SIZE(list) > 0) {
        return list;
    }
not_plain:
    Py_DECREF(list);
    return NULL;
}

static PyObject *plain_args(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *buf = view.buf;
    const Py_ssize_t end = view.len;
    Py_ssize_t p = 0;
    unsigned long long last_field = 0;
    PyObject *args = NULL;
    while (p < end) {
        unsigned long long tag;
        if (read_varint(buf, end, &p, &tag) < 0) {
            goto not_plain;
        }
        unsigned long long field = tag >> 3;
        unsigned int wire = (unsigned int)(tag & 7);
        if (field <= last_field) {
            goto not_plain;
        }
        last_field = field;
        unsigned long long number;
        Py_ssize_t start;
        switch (field) {
        case 1: /* db */
        case 2: /* time_ms */
        case 4: /* proposal_id */
            if (wire != 0 || read_varint(buf, end, &p, &number) < 0) {
                goto not_plain;
            }
            break;
        case 3:  /* shim_id */
        case 12: /* user */
            if (wire != 2 || read_length(buf, end, &p, &start) < 0) {
                goto not_plain;
            }
            break;
        case 5: /* the command */
            if (wire != 2 || read_length(buf, end, &p, &start) < 0) {
                goto not_plain;
            }
            args = command_args(buf, start, p);
            if (args == NULL) {
                if (PyErr_Occurred()) {
                    PyBuffer_Release(&view);
                    return NULL;
                }
                goto not_plain;
            }
            break;
        default:
            goto not_plain;
        }
    }
    PyBuffer_Release(&view);
    if (args == NULL) {
        Py_RETURN_NONE;
    }
    return args;

not_plain:
    Py_XDECREF(args);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* ---- encode_command_record: a plain record, written ---------------------------------------
 *
 * encode_command_record(db, time_ms, shim_id, proposal_id, args, user) -> bytes: the same
 * bytes as cacheshim.server.writer.encode_command_record (its specification; protobuf's
 * encoding of a Record of one command, fields in order, zero values left out, time_ms as
 * int64's two's complement), in one pass into one buffer. */

static Py_ssize_t varint_size(unsigned long long value) {
    Py_ssize_t size = 1;
    while (value > 0x7F) {
        value >>= 7;
        size++;
    }
    return size;
}

static char *put_varint(char *at, unsigned long long value) {
    while (value > 0x7F) {
        *at++ = (char)((value & 0x7F) | 0x80);
        value >>= 7;
    }
    *at++ = (char)value;
    return at;
}

static PyObject *encode_command_record(PyObject *self, PyObject *args) {
    unsigned long long db;
    long long time_ms;
    const char *shim;
    Py_ssize_t shim_size;
    unsigned long long proposal_id;
    PyObject *command;
    PyObject *user;
    (void)self;
    if (!PyArg_ParseTuple(args, "KLs#KOO", &db, &time_ms, &shim, &shim_size, &proposal_id,
                          &command, &user)) {
        return NULL;
    }
    PyObject *fast = PySequence_Fast(command, "args must be a sequence of bytes");
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    Py_ssize_t command_size = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *arg = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(arg)) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_TypeError, "every argument must be bytes");
            return NULL;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(arg);
        command_size += 1 + varint_size((unsigned long long)size) + size;
    }
    const char *user_data = NULL;
    Py_ssize_t user_size = 0;
    if (user != Py_None) {
        if (!PyBytes_Check(user)) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_TypeError, "user must be bytes or None");
            return NULL;
        }
        user_data = PyBytes_AS_STRING(user);
        user_size = PyBytes_GET_SIZE(user);
    }
    unsigned long long time_bits = (unsigned long long)time_ms;
    Py_ssize_t total = 1 + varint_size((unsigned long long)command_size) + command_size;
    if (db) {
        total += 1 + varint_size(db);
    }
    if (time_ms) {
        total += 1 + varint_size(time_bits);
    }
    if (shim_size) {
        total += 1 + varint_size((unsigned long long)shim_size) + shim_size;
    }
    if (proposal_id) {
        total += 1 + varint_size(proposal_id);
    }
    if (user_size) {
        total += 1 + varint_size((unsigned long long)user_size) + user_size;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        Py_DECREF(fast);
        return NULL;
    }
    char *at = PyBytes_AS_STRING(out);
    if (db) {
        *at++ = 0x08;
        at = put_varint(at, db);
    }
    if (time_ms) {
        *at++ = 0x10;
        at = put_varint(at, time_bits);
    }
    if (shim_size) {
        *at++ = 0x1A;
        at = put_varint(at, (unsigned long long)shim_size);
        memcpy(at, shim, (size_t)shim_size);
        at += shim_size;
    }
    if (proposal_id) {
        *at++ = 0x20;
        at = put_varint(at, proposal_id);
    }
    *at++ = 0x2A;
    at = put_varint(at, (unsigned long long)command_size);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *arg = PySequence_Fast_GET_ITEM(fast, i);
        Py_ssize_t size = PyBytes_GET_SIZE(arg);
        *at++ = 0x0A;
        at = put_varint(at, (unsigned long long)size);
        memcpy(at, PyBytes_AS_STRING(arg), (size_t)size);
        at += size;
    }
    if (user_size) {
        *at++ = 0x62;
        at = put_varint(at, (unsigned long long)user_size);
        memcpy(at, user_data, (size_t)user_size);
        at += user_size;
    }
    Py_DECREF(fast);
    return out;
}

static PyMethodDef methods[] = {
    {"plain_args", plain_args, METH_O,
     "plain_args(payload) -> the arguments of a plain one-command record, or None"},
    {"encode_command_record", encode_command_record, METH_VARARGS,
     "encode_command_record(db, time_ms, shim_id, proposal_id, args, user) -> bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cacheshim._records",
    "The write path's per-record work in C (the shape of a log record).", -1, methods,
};

PyMODINIT_FUNC PyInit__records(void) { return PyModule_Create(&module); }
