/* The snapshot writer's key loop in C: the twin of the loop in cacheshim/snapshot/rdb.py
 * (write_rdb over a database's keys: per batch of KEYS_PER_META keys a memlog-keys field from
 * _meta_blob, then each key as _write_key writes it). rdb.py is the specification; this file
 * must give the same bytes (tests/cacheshim/test_snapshot_native_write.py fuzzes the two
 * against each other), and rdb.py uses its own loop when this is not built
 * (MEMLOG_PURE_PYTHON=1).
 *
 *   configure(string_classes, list_cls, set_cls, hash_cls, zset_cls, key_meta, encode_value)
 *   write_keys(write, db_index, data, expires, changed_at, memlog, keys_per_meta,
 *              big_bytes, chunk_bytes)
 *   scan_positions(buckets, data)   model.scan_order_positions over the SCAN table's buckets
 *   gone_pairs(changed_at, data)    the pairs of memlog-gone, before they are sorted
 *
 * write_keys walks `data` (a dict, in insertion order, as list(db.data) does) and hands the
 * bytes to `write` in pieces of about chunk_bytes; a string of big_bytes or more goes to
 * `write` as the object itself, never copied. Only the value classes it knows are encoded
 * here, and only while they hold what it expects (a sorted set's SortedList of lists, the
 * slots below). Any other value, or an unexpected inside, is handed to rdb.py for that key:
 * key_meta(value) gives its shape bytes for memlog-keys, encode_value(value) its RDB type
 * and body pieces. That is also where a value kept in its encoded form (a value packed until
 * touched) can be copied out as is: rdb.encode_value decides, this loop only forwards.
 *
 * A separate extension from _native.c (the loader), so that each can change on its own. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cacheshim.snapshot._native_write assumes a little-endian host"
#endif

/* RDB opcodes and types, as rdb.py names them. */
#define OP_AUX 250
#define OP_EXPIRETIME_MS 252
#define T_STRING 0
#define T_SET 2
#define T_HASH 4
#define T_ZSET_2 5
#define T_LIST_QUICKLIST_2 18
#define LIST_NODE_BYTES_MAX 8192
#define LISTPACK_HEADER_BYTES 6
#define STRING_INLINE_MAX 1024 /* encode_value: shorter strings may take an int encoding */
#define HASH_PICKS 4

static PyObject *g_string_classes; /* tuple: bytes, RawString, PlainString, PrivateInt */
static PyObject *g_list_cls, *g_set_cls, *g_hash_cls, *g_zset_cls;
static PyObject *g_key_meta, *g_encode_value;
static PyObject *s_members, *s_fields, *s_order, *s_hashtable, *s_listpack, *s_scores, *s_items,
    *s_lists;

/* -- a growable byte buffer ------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more) cap *= 2;
    unsigned char *p = PyMem_Realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int put(Buf *b, const void *data, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static inline int put_byte(Buf *b, unsigned char c) {
    if (buf_reserve(b, 1) < 0) return -1;
    b->p[b->len++] = c;
    return 0;
}

/* Hand the buffer to write() and empty it. */
static int flush(Buf *b, PyObject *write) {
    if (!b->len) return 0;
    PyObject *chunk = PyBytes_FromStringAndSize((const char *)b->p, (Py_ssize_t)b->len);
    if (!chunk) return -1;
    PyObject *r = PyObject_CallOneArg(write, chunk);
    Py_DECREF(chunk);
    if (!r) return -1;
    Py_DECREF(r);
    b->len = 0;
    return 0;
}

/* -- small encodings (rdb.encode_length, encode_string, varint; packed.listpack_entry) ---- */

static int put_length(Buf *b, uint64_t n) {
    unsigned char t[9];
    if (n < 0x40) return put_byte(b, (unsigned char)n);
    if (n < 0x4000) {
        t[0] = (unsigned char)(0x40 | (n >> 8));
        t[1] = (unsigned char)(n & 0xFF);
        return put(b, t, 2);
    }
    if (n <= 0xFFFFFFFFULL) {
        t[0] = 0x80;
        for (int i = 0; i < 4; i++) t[1 + i] = (unsigned char)(n >> (8 * (3 - i)));
        return put(b, t, 5);
    }
    t[0] = 0x81;
    for (int i = 0; i < 8; i++) t[1 + i] = (unsigned char)(n >> (8 * (7 - i)));
    return put(b, t, 9);
}

static int put_varint(Buf *b, long long n) {
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "a negative number %lld in a memlog field", n);
        return -1;
    }
    unsigned long long u = (unsigned long long)n;
    unsigned char t[10];
    int k = 0;
    while (u >= 0x80) {
        t[k++] = (unsigned char)((u & 0x7F) | 0x80);
        u >>= 7;
    }
    t[k++] = (unsigned char)u;
    return put(b, t, (size_t)k);
}

/* model.strict_int (Redis's string2ll): ASCII digits, an optional '-', no leading zero, no
 * "-0", 1 to 20 bytes, within 64 bits. 1 and *out set when it is one. */
static int strict_int(const unsigned char *s, Py_ssize_t n, long long *out) {
    if (n <= 0 || n > 20) return 0;
    Py_ssize_t i = 0;
    int negative = 0;
    if (s[0] == '-') {
        negative = 1;
        i = 1;
        if (n == 1) return 0;
    }
    if (s[i] == '0' && n > 1) return 0; /* leading zero, "-0" and "-05" */
    unsigned long long v = 0;
    for (; i < n; i++) {
        unsigned char c = s[i];
        if (c < '0' || c > '9') return 0;
        unsigned long long d = (unsigned long long)(c - '0');
        if (v > (ULLONG_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (negative) {
        if (v > (unsigned long long)LLONG_MAX + 1ULL) return 0;
        *out = v == (unsigned long long)LLONG_MAX + 1ULL ? LLONG_MIN : -(long long)v;
    } else {
        if (v > (unsigned long long)LLONG_MAX) return 0;
        *out = (long long)v;
    }
    return 1;
}

/* rdb.encode_string: an integer encoding for a strict integer of at most 11 bytes that fits
 * 32 bits, else length-prefixed. */
static int put_string(Buf *b, const unsigned char *s, Py_ssize_t n) {
    if (n <= 11 && n > 0 && s[n - 1] >= 0x30 && s[n - 1] <= 0x39 && s[0] >= 0x2D && s[0] <= 0x39) {
        long long v;
        if (strict_int(s, n, &v)) {
            unsigned char t[5];
            if (v >= -128 && v <= 127) {
                t[0] = 0xC0;
                t[1] = (unsigned char)(v & 0xFF);
                return put(b, t, 2);
            }
            if (v >= -32768 && v <= 32767) {
                uint16_t u = (uint16_t)(v & 0xFFFF);
                t[0] = 0xC1;
                memcpy(t + 1, &u, 2);
                return put(b, t, 3);
            }
            if (v >= -2147483648LL && v <= 2147483647LL) {
                uint32_t u = (uint32_t)(v & 0xFFFFFFFF);
                t[0] = 0xC2;
                memcpy(t + 1, &u, 4);
                return put(b, t, 5);
            }
        }
    }
    if (put_length(b, (uint64_t)n) < 0) return -1;
    return put(b, s, (size_t)n);
}

static int put_string_obj(Buf *b, PyObject *o) {
    if (!PyBytes_Check(o)) {
        PyErr_Format(PyExc_TypeError, "a %.100s where bytes were expected", Py_TYPE(o)->tp_name);
        return -1;
    }
    return put_string(b, (const unsigned char *)PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
}

/* packed.listpack_entry into t (room for 5 + 9 + n bytes); its length. */
static size_t listpack_entry(unsigned char *t, const unsigned char *s, Py_ssize_t n) {
    size_t body = 0;
    long long v;
    int maybe = n > 0 && s[n - 1] >= 0x30 && s[n - 1] <= 0x39 && s[0] >= 0x2D && s[0] <= 0x39;
    if (maybe && strict_int(s, n, &v)) {
        if (v >= 0 && v <= 127) {
            t[0] = (unsigned char)v;
            body = 1;
        } else if (v >= -4096 && v <= 4095) {
            unsigned int u = (unsigned int)(v & 0x1FFF);
            t[0] = (unsigned char)(0xC0 | (u >> 8));
            t[1] = (unsigned char)(u & 0xFF);
            body = 2;
        } else if (v >= -32768 && v <= 32767) {
            int16_t x = (int16_t)v;
            t[0] = 0xF1;
            memcpy(t + 1, &x, 2);
            body = 3;
        } else if (v >= -8388608 && v <= 8388607) {
            uint32_t u = (uint32_t)(v & 0xFFFFFF);
            t[0] = 0xF2;
            t[1] = (unsigned char)(u & 0xFF);
            t[2] = (unsigned char)((u >> 8) & 0xFF);
            t[3] = (unsigned char)((u >> 16) & 0xFF);
            body = 4;
        } else if (v >= -2147483648LL && v <= 2147483647LL) {
            int32_t x = (int32_t)v;
            t[0] = 0xF3;
            memcpy(t + 1, &x, 4);
            body = 5;
        } else {
            t[0] = 0xF4;
            memcpy(t + 1, &v, 8);
            body = 9;
        }
    } else {
        size_t size = (size_t)n;
        if (size < 64) {
            t[0] = (unsigned char)(0x80 | size);
            body = 1;
        } else if (size < 4096) {
            t[0] = (unsigned char)(0xE0 | (size >> 8));
            t[1] = (unsigned char)(size & 0xFF);
            body = 2;
        } else {
            uint32_t u = (uint32_t)size;
            t[0] = 0xF0;
            memcpy(t + 1, &u, 4);
            body = 5;
        }
        memcpy(t + body, s, size);
        body += size;
    }
    /* The trailing length (packed._backlen): 7 bits a byte, the first without its top bit. */
    int count;
    if (body <= 127) count = 1;
    else if (body < 16383) count = 2;
    else if (body < 2097151) count = 3;
    else if (body < 268435455) count = 4;
    else count = 5;
    for (int i = 0; i < count; i++) {
        int shift = 7 * (count - 1 - i);
        t[body + (size_t)i] = (unsigned char)(((body >> shift) & 0x7F) | (i ? 0x80 : 0));
    }
    return body + (size_t)count;
}

/* -- values --------------------------------------------------------------------------- */

enum { K_OTHER = -1, K_STRING = 0, K_LIST = 1, K_SET = 2, K_ZSET = 3, K_HASH = 4 };

/* The kind of a value this loop encodes itself; K_OTHER for anything else. For a string,
 * *string_shape is its class's place in string_classes (model.shape). */
static int kind_of(PyObject *v, int *string_shape) {
    PyTypeObject *t = Py_TYPE(v);
    Py_ssize_t n = PyTuple_GET_SIZE(g_string_classes);
    for (Py_ssize_t i = 0; i < n; i++)
        if ((PyObject *)t == PyTuple_GET_ITEM(g_string_classes, i)) {
            *string_shape = (int)i;
            return K_STRING;
        }
    if ((PyObject *)t == g_list_cls) return K_LIST;
    if ((PyObject *)t == g_set_cls) return K_SET;
    if ((PyObject *)t == g_hash_cls) return K_HASH;
    if ((PyObject *)t == g_zset_cls) return K_ZSET;
    return K_OTHER;
}

/* An attribute that must be a list / dict (exact); NULL without an error when it is not
 * (the caller hands the key to rdb.py). A new reference. */
static PyObject *attr_exact(PyObject *o, PyObject *name, PyTypeObject *type) {
    PyObject *a = PyObject_GetAttr(o, name);
    if (!a) {
        PyErr_Clear();
        return NULL;
    }
    if (Py_TYPE(a) != type) {
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static int truth(PyObject *o, PyObject *name) {
    PyObject *a = PyObject_GetAttr(o, name);
    if (!a) return -1;
    int r = PyObject_IsTrue(a);
    Py_DECREF(a);
    return r;
}

/* The lists of a sorted set's SortedList (ZSet._order._items._lists), a new reference, or
 * NULL (no error) when it is not shaped so. */
static PyObject *zset_lists(PyObject *z) {
    PyObject *order = PyObject_GetAttr(z, s_order);
    if (!order) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *items = PyObject_GetAttr(order, s_items);
    Py_DECREF(order);
    if (!items) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *lists = attr_exact(items, s_lists, &PyList_Type);
    Py_DECREF(items);
    if (!lists) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lists); i++)
        if (!PyList_CheckExact(PyList_GET_ITEM(lists, i))) {
            Py_DECREF(lists);
            return NULL;
        }
    return lists;
}

/* model.shape and the pick order of _meta_blob, for a value of a known kind: 1 done, 0 hand
 * the key to rdb.py's key_meta, -1 error. */
static int put_shape(Buf *b, PyObject *v, int kind, int string_shape) {
    switch (kind) {
    case K_STRING:
        return put_byte(b, (unsigned char)string_shape) < 0 ? -1 : 1;
    case K_LIST:
        return put_byte(b, 0) < 0 ? -1 : 1;
    case K_SET: {
        int h = truth(v, s_hashtable);
        if (h < 0) return -1;
        return put_byte(b, (unsigned char)h) < 0 ? -1 : 1;
    }
    case K_ZSET: {
        int lp = truth(v, s_listpack);
        if (lp < 0) return -1;
        return put_byte(b, (unsigned char)lp) < 0 ? -1 : 1;
    }
    case K_HASH: {
        int h = truth(v, s_hashtable);
        if (h < 0) return -1;
        if (h) {
            /* A pick order of its own (model.hash_pick_order) when _order is not the
             * fields' order: rdb.py writes that case. */
            PyObject *fields = attr_exact(v, s_fields, &PyDict_Type);
            PyObject *order = fields ? attr_exact(v, s_order, &PyList_Type) : NULL;
            int same = 0;
            if (fields && order && PyList_GET_SIZE(order) == PyDict_GET_SIZE(fields)) {
                Py_ssize_t pos = 0, i = 0;
                PyObject *k, *val;
                same = 1;
                while (PyDict_Next(fields, &pos, &k, &val)) {
                    PyObject *o = PyList_GET_ITEM(order, i++);
                    if (o == k) continue;
                    int eq = PyObject_RichCompareBool(o, k, Py_EQ);
                    if (eq < 0) {
                        Py_DECREF(fields);
                        Py_DECREF(order);
                        return -1;
                    }
                    if (!eq) {
                        same = 0;
                        break;
                    }
                }
            }
            Py_XDECREF(fields);
            Py_XDECREF(order);
            if (!same) return 0;
        }
        return put_byte(b, (unsigned char)h) < 0 ? -1 : 1;
    }
    }
    return 0;
}

/* Ask rdb.py for the shape bytes of a value (key_meta). */
static int put_shape_py(Buf *b, PyObject *v) {
    PyObject *r = PyObject_CallOneArg(g_key_meta, v);
    if (!r) return -1;
    if (!PyBytes_Check(r)) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "key_meta must return bytes");
        return -1;
    }
    int rc = put(b, PyBytes_AS_STRING(r), (size_t)PyBytes_GET_SIZE(r));
    Py_DECREF(r);
    return rc;
}

static int put_list(Buf *b, PyObject *v) {
    /* _list_nodes: listpack nodes of at most LIST_NODE_BYTES_MAX bytes (an entry bigger than
     * that alone in its node), at most 65535 entries each; first the node count, so the
     * nodes are built in a buffer of their own. */
    Buf nodes = {0};
    Buf node = {0};
    Py_ssize_t node_count = 0, entries = 0;
    size_t size = LISTPACK_HEADER_BYTES + 1;
    unsigned char small[128];
    int rc = -1;
    PyObject *it = PyObject_GetIter(v);
    if (!it) return -1;
    PyObject *item;
#define CLOSE_NODE()                                                                        \
    do {                                                                                    \
        uint32_t total = (uint32_t)(LISTPACK_HEADER_BYTES + node.len + 1);                  \
        uint16_t cnt = (uint16_t)(entries < 65535 ? entries : 65535);                       \
        unsigned char head[6];                                                              \
        memcpy(head, &total, 4);                                                            \
        memcpy(head + 4, &cnt, 2);                                                          \
        if (put_byte(&nodes, 0x02) < 0 || put_length(&nodes, total) < 0 ||                 \
            put(&nodes, head, 6) < 0 || put(&nodes, node.p, node.len) < 0 ||                \
            put_byte(&nodes, 0xFF) < 0)                                                     \
            goto done;                                                                      \
        node_count++;                                                                       \
        node.len = 0;                                                                       \
        entries = 0;                                                                        \
        size = LISTPACK_HEADER_BYTES + 1;                                                   \
    } while (0)
    while ((item = PyIter_Next(it))) {
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "a list holds a %.100s", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            goto done;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(item);
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(item);
        unsigned char *t = small;
        if ((size_t)n + 14 > sizeof small) {
            t = PyMem_Malloc((size_t)n + 14);
            if (!t) {
                Py_DECREF(item);
                PyErr_NoMemory();
                goto done;
            }
        }
        size_t len = listpack_entry(t, s, n);
        Py_DECREF(item);
        if (entries && (size + len > LIST_NODE_BYTES_MAX || entries >= 65535)) CLOSE_NODE();
        int bad = put(&node, t, len);
        if (t != small) PyMem_Free(t);
        if (bad < 0) goto done;
        entries++;
        size += len;
    }
    if (PyErr_Occurred()) goto done;
    if (entries) CLOSE_NODE();
#undef CLOSE_NODE
    if (put_length(b, (uint64_t)node_count) < 0 || put(b, nodes.p, nodes.len) < 0) goto done;
    rc = 0;
done:
    Py_DECREF(it);
    PyMem_Free(nodes.p);
    PyMem_Free(node.p);
    return rc;
}

/* The body of a value of a known kind (encode_value's pieces) and, in *type, its RDB type.
 * 1 done, 0 hand the key to rdb.py (the caller drops what was put), -1 error. Big strings
 * are the caller's (it checks them first). */
static int put_value(Buf *b, PyObject *v, int kind, unsigned char *type) {
    switch (kind) {
    case K_STRING: {
        *type = T_STRING;
        Py_ssize_t n = PyBytes_GET_SIZE(v);
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(v);
        if (n < STRING_INLINE_MAX) return put_string(b, s, n) < 0 ? -1 : 1;
        if (put_length(b, (uint64_t)n) < 0 || put(b, s, (size_t)n) < 0) return -1;
        return 1;
    }
    case K_LIST:
        *type = T_LIST_QUICKLIST_2;
        return put_list(b, v) < 0 ? -1 : 1;
    case K_SET: {
        PyObject *members = attr_exact(v, s_members, &PyList_Type);
        if (!members) return 0;
        int rc = -1;
        Py_ssize_t n = PyList_GET_SIZE(members);
        *type = T_SET;
        if (put_length(b, (uint64_t)n) < 0) goto set_done;
        for (Py_ssize_t i = 0; i < n; i++)
            if (put_string_obj(b, PyList_GET_ITEM(members, i)) < 0) goto set_done;
        rc = 1;
    set_done:
        Py_DECREF(members);
        return rc;
    }
    case K_HASH: {
        PyObject *fields = attr_exact(v, s_fields, &PyDict_Type);
        if (!fields) return 0;
        int rc = -1;
        *type = T_HASH;
        if (put_length(b, (uint64_t)PyDict_GET_SIZE(fields)) < 0)
            goto hash_done;
        Py_ssize_t pos = 0;
        PyObject *k, *val;
        while (PyDict_Next(fields, &pos, &k, &val))
            if (put_string_obj(b, k) < 0 || put_string_obj(b, val) < 0) goto hash_done;
        rc = 1;
    hash_done:
        Py_DECREF(fields);
        return rc;
    }
    case K_ZSET: {
        PyObject *scores = attr_exact(v, s_scores, &PyDict_Type);
        if (!scores) return 0;
        PyObject *lists = zset_lists(v);
        if (!lists) {
            Py_DECREF(scores);
            return 0;
        }
        int rc = -1;
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lists); i++)
            total += PyList_GET_SIZE(PyList_GET_ITEM(lists, i));
        if (total != PyDict_GET_SIZE(scores)) {
            rc = 0; /* not as expected: rdb.py writes what it makes of it */
            goto zset_done;
        }
        *type = T_ZSET_2;
        if (put_length(b, (uint64_t)total) < 0) goto zset_done;
        /* Highest score first: the lists from the last, each from its end. */
        for (Py_ssize_t i = PyList_GET_SIZE(lists) - 1; i >= 0; i--) {
            PyObject *sub = PyList_GET_ITEM(lists, i);
            for (Py_ssize_t j = PyList_GET_SIZE(sub) - 1; j >= 0; j--) {
                PyObject *entry = PyList_GET_ITEM(sub, j);
                if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
                    PyErr_SetString(PyExc_TypeError, "a sorted set entry is not a pair");
                    goto zset_done;
                }
                double score = PyFloat_AsDouble(PyTuple_GET_ITEM(entry, 0));
                if (score == -1.0 && PyErr_Occurred()) goto zset_done;
                if (put_string_obj(b, PyTuple_GET_ITEM(entry, 1)) < 0 ||
                    put(b, &score, 8) < 0)
                    goto zset_done;
            }
        }
        rc = 1;
    zset_done:
        Py_DECREF(scores);
        Py_DECREF(lists);
        return rc;
    }
    }
    return 0;
}

/* rdb.py's encode_value for this value: the type byte, the key, then the body pieces (one
 * of big_bytes or more goes to write() directly, not copied). */
static int put_key_py(Buf *b, PyObject *key, PyObject *v, PyObject *write, Py_ssize_t big_bytes) {
    PyObject *r = PyObject_CallOneArg(g_encode_value, v);
    if (!r) return -1;
    int rc = -1;
    PyObject *kind_obj, *pieces;
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
        PyErr_SetString(PyExc_TypeError, "encode_value must return (type, pieces)");
        goto done;
    }
    kind_obj = PyTuple_GET_ITEM(r, 0);
    pieces = PyTuple_GET_ITEM(r, 1);
    long kind = PyLong_AsLong(kind_obj);
    if (kind == -1 && PyErr_Occurred()) goto done;
    if (!PyList_Check(pieces)) {
        PyErr_SetString(PyExc_TypeError, "encode_value must return a list of pieces");
        goto done;
    }
    if (kind < 0 || kind > 255) {
        PyErr_SetString(PyExc_ValueError, "encode_value gave a type out of range");
        goto done;
    }
    if (put_byte(b, (unsigned char)kind) < 0 || put_string_obj(b, key) < 0) goto done;
    Py_ssize_t n = PyList_GET_SIZE(pieces);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *piece = PyList_GET_ITEM(pieces, i);
        if (!PyBytes_Check(piece)) {
            PyErr_SetString(PyExc_TypeError, "encode_value's pieces must be bytes");
            goto done;
        }
        if (PyBytes_GET_SIZE(piece) >= big_bytes) {
            if (flush(b, write) < 0) goto done;
            PyObject *w = PyObject_CallOneArg(write, piece);
            if (!w) goto done;
            Py_DECREF(w);
        } else if (put(b, PyBytes_AS_STRING(piece), (size_t)PyBytes_GET_SIZE(piece)) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_DECREF(r);
    return rc;
}

/* -- the loop ----------------------------------------------------------------------------- */

static const unsigned char AUX_KEYS[] = "memlog-keys";

static PyObject *py_write_keys(PyObject *self, PyObject *args) {
    PyObject *write, *data, *expires, *changed_at;
    long long db_index;
    int memlog;
    Py_ssize_t per_meta, big_bytes, chunk_bytes;
    (void)self;
    if (!PyArg_ParseTuple(args, "OLO!O!O!pnnn", &write, &db_index, &PyDict_Type, &data,
                          &PyDict_Type, &expires, &PyDict_Type, &changed_at, &memlog,
                          &per_meta, &big_bytes, &chunk_bytes))
        return NULL;
    if (!g_string_classes) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (per_meta < 1 || big_bytes < 1 || chunk_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "sizes must be positive");
        return NULL;
    }
    Py_INCREF(data);
    Buf out = {0}, meta = {0};
    Py_ssize_t pos = 0, keys = 0;
    Py_ssize_t total = PyDict_GET_SIZE(data);
    PyObject *key, *value;
    while (keys < total) {
        Py_ssize_t batch_pos = pos;
        Py_ssize_t batch = total - keys < per_meta ? total - keys : per_meta;
        if (memlog) {
            /* _meta_blob: the db, the count, per key its last change + 1 (0: none) and its
             * shape; then the field as an AUX (name, then the blob as a string). */
            meta.len = 0;
            if (put_varint(&meta, db_index) < 0 || put_varint(&meta, batch) < 0) goto fail;
            Py_ssize_t p = batch_pos;
            for (Py_ssize_t i = 0; i < batch; i++) {
                if (!PyDict_Next(data, &p, &key, &value)) goto changed;
                PyObject *changed = PyDict_GetItemWithError(changed_at, key);
                long long c = 0;
                if (changed) {
                    c = PyLong_AsLongLong(changed);
                    if (c == -1 && PyErr_Occurred()) goto fail;
                    c += 1;
                } else if (PyErr_Occurred()) {
                    goto fail;
                }
                if (put_varint(&meta, c) < 0) goto fail;
                int string_shape = 0;
                int kind = kind_of(value, &string_shape);
                int done = kind == K_OTHER ? 0 : put_shape(&meta, value, kind, string_shape);
                if (done < 0) goto fail;
                if (!done && put_shape_py(&meta, value) < 0) goto fail;
            }
            if (put_byte(&out, OP_AUX) < 0 ||
                put_string(&out, AUX_KEYS, (Py_ssize_t)(sizeof AUX_KEYS - 1)) < 0 ||
                put_string(&out, meta.p, (Py_ssize_t)meta.len) < 0)
                goto fail;
        }
        for (Py_ssize_t i = 0; i < batch; i++) {
            if (!PyDict_Next(data, &pos, &key, &value)) goto changed;
            if (!PyBytes_Check(key)) {
                PyErr_SetString(PyExc_TypeError, "a key that is not bytes");
                goto fail;
            }
            PyObject *when = PyDict_GetItemWithError(expires, key);
            if (when) {
                long long ms = PyLong_AsLongLong(when);
                if (ms == -1 && PyErr_Occurred()) goto fail;
                if (put_byte(&out, OP_EXPIRETIME_MS) < 0 || put(&out, &ms, 8) < 0) goto fail;
            } else if (PyErr_Occurred()) {
                goto fail;
            }
            int string_shape = 0;
            int kind = kind_of(value, &string_shape);
            if (kind == K_STRING && PyBytes_GET_SIZE(value) >= big_bytes) {
                /* Its head here, its bytes straight to write(). */
                if (put_byte(&out, T_STRING) < 0 || put_string_obj(&out, key) < 0 ||
                    put_length(&out, (uint64_t)PyBytes_GET_SIZE(value)) < 0 ||
                    flush(&out, write) < 0)
                    goto fail;
                PyObject *w = PyObject_CallOneArg(write, value);
                if (!w) goto fail;
                Py_DECREF(w);
            } else {
                int done = 0;
                if (kind != K_OTHER) {
                    /* The type byte's place, the key, the body; the type put in after. */
                    size_t at = out.len;
                    unsigned char type = 0;
                    if (put_byte(&out, 0) < 0 || put_string_obj(&out, key) < 0) goto fail;
                    done = put_value(&out, value, kind, &type);
                    if (done < 0) goto fail;
                    if (done) out.p[at] = type;
                    else out.len = at; /* rdb.py writes this one */
                }
                if (!done && put_key_py(&out, key, value, write, big_bytes) < 0) goto fail;
            }
            if (out.len >= (size_t)chunk_bytes && flush(&out, write) < 0) goto fail;
        }
        keys += batch;
    }
    if (flush(&out, write) < 0) goto fail;
    PyMem_Free(out.p);
    PyMem_Free(meta.p);
    Py_DECREF(data);
    return PyLong_FromSsize_t(keys);
changed:
    PyErr_SetString(PyExc_RuntimeError, "the keyspace changed while it was written");
fail:
    PyMem_Free(out.p);
    PyMem_Free(meta.p);
    Py_DECREF(data);
    return NULL;
}

/* -- a database's other fields -------------------------------------------------------- */

/* model.scan_order_positions over the SCAN table's buckets (None, a key, or a tuple of keys):
 * for each key in bucket order its position in data's insertion order; None when every
 * bucket lists its keys in that order. Positions are found through a table of the keys'
 * (cached) hashes. */
typedef struct {
    PyObject *key;
    Py_hash_t hash;
    Py_ssize_t pos;
} Slot;

static Py_ssize_t slot_find(Slot *t, size_t mask, PyObject *key, Py_hash_t h) {
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        if (!t[i].key) return -1;
        if (t[i].hash != h) continue;
        if (t[i].key == key) return t[i].pos;
        Py_ssize_t n = PyBytes_GET_SIZE(key);
        if (PyBytes_GET_SIZE(t[i].key) == n &&
            memcmp(PyBytes_AS_STRING(t[i].key), PyBytes_AS_STRING(key), (size_t)n) == 0)
            return t[i].pos;
    }
}

static PyObject *py_scan_positions(PyObject *self, PyObject *args) {
    PyObject *buckets, *data;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &buckets, &PyDict_Type, &data)) return NULL;
    Py_ssize_t n = PyDict_GET_SIZE(data);
    size_t cap = 8;
    while (cap < (size_t)n * 2) cap *= 2;
    Slot *table = PyMem_Calloc(cap, sizeof(Slot));
    Py_ssize_t *out = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    PyObject *result = NULL;
    if (!table || !out) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(data, &pos, &key, &value)) {
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "a key that is not bytes");
            goto done;
        }
        Py_hash_t h = PyObject_Hash(key);
        if (h == -1) goto done;
        size_t j = (size_t)h & (cap - 1);
        while (table[j].key) j = (j + 1) & (cap - 1);
        table[j].key = key;
        table[j].hash = h;
        table[j].pos = i++;
    }
    Py_ssize_t count = 0;
    int ordered = 1;
    for (Py_ssize_t b = 0; b < PyList_GET_SIZE(buckets); b++) {
        PyObject *bucket = PyList_GET_ITEM(buckets, b);
        if (bucket == Py_None) continue;
        PyObject *const *keys = &bucket;
        Py_ssize_t chain = 1;
        if (PyTuple_Check(bucket)) {
            keys = &PyTuple_GET_ITEM(bucket, 0);
            chain = PyTuple_GET_SIZE(bucket);
        }
        Py_ssize_t last = -1;
        for (Py_ssize_t k = 0; k < chain; k++) {
            PyObject *one = keys[k];
            if (!PyBytes_Check(one)) {
                PyErr_SetString(PyExc_TypeError, "a SCAN bucket holds a non-key");
                goto done;
            }
            Py_hash_t h = PyObject_Hash(one);
            if (h == -1) goto done;
            Py_ssize_t here = slot_find(table, cap - 1, one, h);
            if (here < 0 || count >= n) {
                PyErr_SetObject(PyExc_KeyError, one);
                goto done;
            }
            if (here < last) ordered = 0;
            last = here;
            out[count++] = here;
        }
    }
    if (ordered) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyList_New(count);
    if (!result) goto done;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *number = PyLong_FromSsize_t(out[k]);
        if (!number) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, k, number);
    }
done:
    PyMem_Free(table);
    PyMem_Free(out);
    return result;
}

/* The (key, index) pairs of changed_at whose key is not in data (removed keys), in
 * changed_at's order (the caller sorts them). */
static PyObject *py_gone_pairs(PyObject *self, PyObject *args) {
    PyObject *changed_at, *data;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &changed_at, &PyDict_Type, &data))
        return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *index;
    while (PyDict_Next(changed_at, &pos, &key, &index)) {
        int in = PyDict_Contains(data, key);
        if (in < 0) goto fail;
        if (in) continue;
        PyObject *pair = PyTuple_Pack(2, key, index);
        if (!pair) goto fail;
        int rc = PyList_Append(out, pair);
        Py_DECREF(pair);
        if (rc < 0) goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *py_configure(PyObject *self, PyObject *args) {
    PyObject *strings, *list_cls, *set_cls, *hash_cls, *zset_cls, *key_meta, *encode_value;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OOOOOO", &PyTuple_Type, &strings, &list_cls, &set_cls,
                          &hash_cls, &zset_cls, &key_meta, &encode_value))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(strings); i++) {
        PyObject *c = PyTuple_GET_ITEM(strings, i);
        if (!PyType_Check(c) || !PyType_IsSubtype((PyTypeObject *)c, &PyBytes_Type)) {
            PyErr_SetString(PyExc_TypeError, "string classes must be bytes types");
            return NULL;
        }
    }
    if (PyTuple_GET_SIZE(strings) > 127) {
        PyErr_SetString(PyExc_ValueError, "too many string classes");
        return NULL;
    }
    Py_INCREF(strings);
    Py_INCREF(list_cls);
    Py_INCREF(set_cls);
    Py_INCREF(hash_cls);
    Py_INCREF(zset_cls);
    Py_INCREF(key_meta);
    Py_INCREF(encode_value);
    Py_XSETREF(g_string_classes, strings);
    Py_XSETREF(g_list_cls, list_cls);
    Py_XSETREF(g_set_cls, set_cls);
    Py_XSETREF(g_hash_cls, hash_cls);
    Py_XSETREF(g_zset_cls, zset_cls);
    Py_XSETREF(g_key_meta, key_meta);
    Py_XSETREF(g_encode_value, encode_value);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", py_configure, METH_VARARGS,
     "configure(string_classes, list, set, hash, zset, key_meta, encode_value)."},
    {"write_keys", py_write_keys, METH_VARARGS,
     "write_keys(write, db_index, data, expires, changed_at, memlog, keys_per_meta, "
     "big_bytes, chunk_bytes) -> keys written."},
    {"scan_positions", py_scan_positions, METH_VARARGS,
     "scan_positions(buckets, data) -> model.scan_order_positions's list, or None."},
    {"gone_pairs", py_gone_pairs, METH_VARARGS,
     "gone_pairs(changed_at, data) -> [(key, index)] of the keys not in data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native_write", "The snapshot writer's key loop (see the file head).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native_write(void) {
#define INTERN(var, text)                                                                   \
    if (!(var = PyUnicode_InternFromString(text))) return NULL;
    INTERN(s_members, "_members")
    INTERN(s_fields, "_fields")
    INTERN(s_order, "_order")
    INTERN(s_hashtable, "hashtable")
    INTERN(s_listpack, "listpack")
    INTERN(s_scores, "scores")
    INTERN(s_items, "_items")
    INTERN(s_lists, "_lists")
#undef INTERN
    return PyModule_Create(&module);
}
