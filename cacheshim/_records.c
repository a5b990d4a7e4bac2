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
 * tests/cacheshim/test_records.py checks both agree on random and mutated records. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

static PyMethodDef methods[] = {
    {"plain_args", plain_args, METH_O,
     "plain_args(payload) -> the arguments of a plain one-command record, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cacheshim._records",
    "The write path's per-record work in C (the shape of a log record).", -1, methods,
};

PyMODINIT_FUNC PyInit__records(void) { return PyModule_Create(&module); }
