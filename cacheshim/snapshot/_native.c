/* The snapshot code's byte loops in C, each the twin of Python code that is its
 * specification:
 * - crc64(crc, data): CRC-64 (Jones polynomial, reflected, init 0, no final xor) for RDB
 *   files, as cacheshim/snapshot/crc64.py. Eight tables, one per byte position of a 64-bit
 *   word, so each step folds eight bytes. Little-endian hosts only (the build refuses others).
 * - lzf_decompress(data, size): liblzf's format, as cacheshim/snapshot/lzf.py; raises
 *   ValueError on input that does not expand to exactly size bytes.
 * - key_hash(key): cacheshim.types.keyindex.key_hash (BLAKE2b, 8-byte digest), the SCAN
 *   table's hash of a key.
 * - index_rehash(buckets, bits): KeyIndex._resize's loop (a resize of the SCAN table).
 * - populate_arenas(on): pymalloc's new arenas mapped populated (see there), for a load.
 * - load_keys(buffer, position, db, meta, lazy): the loop of rdb.read_rdb over the key records
 *   of a memlog snapshot (see the comment above it), with meta_check for its memlog-keys
 *   fields; lazy, its collections kept packed (keyspace.PackedValue), and decode_value for
 *   their first touch.
 *   rdb.py falls back to its own code for everything this declines, and alone when
 *   MEMLOG_PURE_PYTHON=1 (tests/cacheshim/test_snapshot_native.py fuzzes the two against
 *   each other). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cacheshim.snapshot._native assumes a little-endian host"
#endif

static uint64_t tables[8][256];

static void build_tables(void) {
    const uint64_t poly = 0x95AC9329AC4BC9B5ULL;
    for (int b = 0; b < 256; b++) {
        uint64_t crc = (uint64_t)b;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ poly : crc >> 1;
        tables[0][b] = crc;
    }
    for (int t = 1; t < 8; t++)
        for (int b = 0; b < 256; b++) {
            uint64_t prev = tables[t - 1][b];
            tables[t][b] = (prev >> 8) ^ tables[0][prev & 0xFF];
        }
}

static uint64_t update(uint64_t crc, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        uint64_t x = crc ^ word;
        crc = tables[7][x & 0xFF] ^ tables[6][(x >> 8) & 0xFF] ^
              tables[5][(x >> 16) & 0xFF] ^ tables[4][(x >> 24) & 0xFF] ^
              tables[3][(x >> 32) & 0xFF] ^ tables[2][(x >> 40) & 0xFF] ^
              tables[1][(x >> 48) & 0xFF] ^ tables[0][x >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = tables[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

static PyObject *py_crc64(PyObject *self, PyObject *args) {
    unsigned long long crc;
    Py_buffer data;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ky*", &crc, &data)) return NULL;
    uint64_t result;
    Py_BEGIN_ALLOW_THREADS
    result = update((uint64_t)crc, (const unsigned char *)data.buf, (size_t)data.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLongLong(result);
}

/* Expand liblzf's format from in into exactly size bytes at out; NULL, or what is wrong. */
static const char *lzf_expand(const unsigned char *in, Py_ssize_t in_len, unsigned char *out,
                              Py_ssize_t size) {
    Py_ssize_t ip = 0, op = 0;
    while (ip < in_len) {
        unsigned int ctrl = in[ip++];
        if (ctrl < 32) { /* a literal run of ctrl + 1 bytes */
            Py_ssize_t run = (Py_ssize_t)ctrl + 1;
            if (ip + run > in_len) return "literal run past the end of the input";
            if (op + run > size) return "output longer than expected";
            memcpy(out + op, in + ip, (size_t)run);
            ip += run;
            op += run;
            continue;
        }
        Py_ssize_t length = ctrl >> 5;
        if (length == 7) {
            if (ip >= in_len) return "truncated back reference";
            length += in[ip++];
        }
        if (ip >= in_len) return "truncated back reference";
        Py_ssize_t distance = (Py_ssize_t)((ctrl & 0x1F) << 8) + in[ip++] + 1;
        length += 2;
        if (distance > op) return "back reference before the start of the output";
        if (op + length > size) return "output longer than expected";
        const unsigned char *ref = out + op - distance;
        for (Py_ssize_t k = 0; k < length; k++) out[op + k] = ref[k]; /* may overlap */
        op += length;
    }
    return op == size ? NULL : "output shorter than expected";
}

static PyObject *py_lzf_decompress(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t size;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*n", &data, &size)) return NULL;
    if (size < 0) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    const char *error = lzf_expand((const unsigned char *)data.buf, data.len,
                                   (unsigned char *)PyBytes_AS_STRING(result), size);
    PyBuffer_Release(&data);
    if (error != NULL) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return result;
}

/* ---- BLAKE2b with an 8-byte digest, no key: cacheshim.types.keyindex.key_hash ---------- */

static const uint64_t b2_iv[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const unsigned char b2_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

#define B2_MIX(a, b, c, d, x, y)          \
    do {                                  \
        v[a] = v[a] + v[b] + (x);         \
        v[d] = rotr64(v[d] ^ v[a], 32);   \
        v[c] = v[c] + v[d];               \
        v[b] = rotr64(v[b] ^ v[c], 24);   \
        v[a] = v[a] + v[b] + (y);         \
        v[d] = rotr64(v[d] ^ v[a], 16);   \
        v[c] = v[c] + v[d];               \
        v[b] = rotr64(v[b] ^ v[c], 63);   \
    } while (0)

static void b2_compress(uint64_t h[8], const unsigned char block[128], uint64_t counter, int last) {
    uint64_t m[16], v[16];
    memcpy(m, block, 128); /* little-endian host */
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = b2_iv[i];
    }
    v[12] ^= counter;
    if (last) v[14] = ~v[14];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 12
#endif
    for (int r = 0; r < 12; r++) { /* unrolled: the message word indices become constants */
        const unsigned char *s = b2_sigma[r];
        B2_MIX(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2_MIX(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2_MIX(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2_MIX(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2_MIX(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2_MIX(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2_MIX(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2_MIX(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* The first eight bytes of BLAKE2b-64(data), read as a little-endian number. */
static uint64_t key_hash64(const unsigned char *data, size_t n) {
    uint64_t h[8];
    memcpy(h, b2_iv, sizeof h);
    h[0] ^= 0x01010000ULL ^ 8; /* depth 1, fanout 1, no key, 8-byte digest */
    uint64_t counter = 0;
    while (n > 128) {
        counter += 128;
        b2_compress(h, data, counter, 0);
        data += 128;
        n -= 128;
    }
    unsigned char last[128] = {0};
    memcpy(last, data, n);
    b2_compress(h, last, counter + n, 1);
    return h[0];
}

static PyObject *py_key_hash(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0) return NULL;
    uint64_t h = key_hash64((const unsigned char *)data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLongLong(h);
}

/* ---- the SCAN table (cacheshim.types.keyindex.KeyIndex) ----------------------------------
 *
 * A bucket is None (no key), the key (one key) or a tuple of two keys or more in the order
 * they arrived. */

static int same_bytes(PyObject *a, PyObject *b) {
    return PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b) &&
           memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(a)) == 0;
}

/* *out = a new reference to bucket with key appended (KeyIndex.add's step): 1; 0 when the
 * key is already there or the bucket holds something other than bytes; -1 on an error. */
static int bucket_with(PyObject *bucket, PyObject *key, PyObject **out) {
    if (bucket == Py_None) {
        *out = Py_NewRef(key);
        return 1;
    }
    if (PyBytes_CheckExact(bucket)) {
        if (same_bytes(bucket, key)) return 0;
        *out = PyTuple_Pack(2, bucket, key);
        return *out == NULL ? -1 : 1;
    }
    if (!PyTuple_CheckExact(bucket)) return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(bucket);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(bucket, i);
        if (!PyBytes_CheckExact(item) || same_bytes(item, key)) return 0;
    }
    PyObject *chain = PyTuple_New(n + 1);
    if (chain == NULL) return -1;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(chain, i, Py_NewRef(PyTuple_GET_ITEM(bucket, i)));
    PyTuple_SET_ITEM(chain, n, Py_NewRef(key));
    *out = chain;
    return 1;
}

/* index_rehash(buckets, bits) -> the same keys in a table of 2**bits buckets, each bucket's
 * keys in the order the old table lists them (KeyIndex._resize's Python loop). */
static PyObject *py_index_rehash(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *old;
    int bits;
    if (!PyArg_ParseTuple(args, "O!i", &PyList_Type, &old, &bits)) return NULL;
    if (bits < 0 || bits > 40) {
        PyErr_SetString(PyExc_ValueError, "bits out of range");
        return NULL;
    }
    Py_ssize_t nold = PyList_GET_SIZE(old), n = (Py_ssize_t)1 << bits, total = 0;
    for (Py_ssize_t i = 0; i < nold; i++) {
        PyObject *b = PyList_GET_ITEM(old, i);
        if (b == Py_None) continue;
        if (PyBytes_Check(b)) {
            total++;
            continue;
        }
        if (!PyTuple_CheckExact(b)) goto bad;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(b); k++)
            if (!PyBytes_Check(PyTuple_GET_ITEM(b, k))) goto bad;
        total += PyTuple_GET_SIZE(b);
    }
    uint64_t mask = (uint64_t)n - 1;
    uint64_t *hashes = PyMem_Malloc(((size_t)total + 1) * sizeof(uint64_t));
    uint32_t *counts = PyMem_Calloc((size_t)n, sizeof(uint32_t));
    uint32_t *filled = PyMem_Calloc((size_t)n, sizeof(uint32_t));
    PyObject *out = NULL;
    if (hashes == NULL || counts == NULL || filled == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < nold; i++) {
        PyObject *b = PyList_GET_ITEM(old, i);
        if (b == Py_None) continue;
        int single = !PyTuple_CheckExact(b);
        Py_ssize_t m = single ? 1 : PyTuple_GET_SIZE(b);
        for (Py_ssize_t j = 0; j < m; j++) {
            PyObject *key = single ? b : PyTuple_GET_ITEM(b, j);
            uint64_t h = key_hash64((const unsigned char *)PyBytes_AS_STRING(key),
                                    (size_t)PyBytes_GET_SIZE(key));
            hashes[k++] = h;
            counts[h & mask]++;
        }
    }
    out = PyList_New(n);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (counts[i] == 0) {
            PyList_SET_ITEM(out, i, Py_NewRef(Py_None));
        } else if (counts[i] > 1) {
            PyObject *t = PyTuple_New(counts[i]);
            if (t == NULL) {
                /* the remaining items are NULL, which list dealloc tolerates */
                Py_CLEAR(out);
                goto done;
            }
            PyList_SET_ITEM(out, i, t);
        }
    }
    k = 0;
    for (Py_ssize_t i = 0; i < nold; i++) {
        PyObject *b = PyList_GET_ITEM(old, i);
        if (b == Py_None) continue;
        int single = !PyTuple_CheckExact(b);
        Py_ssize_t m = single ? 1 : PyTuple_GET_SIZE(b);
        for (Py_ssize_t j = 0; j < m; j++) {
            PyObject *key = single ? b : PyTuple_GET_ITEM(b, j);
            Py_ssize_t slot = (Py_ssize_t)(hashes[k++] & mask);
            if (counts[slot] == 1)
                PyList_SET_ITEM(out, slot, Py_NewRef(key));
            else
                PyTuple_SET_ITEM(PyList_GET_ITEM(out, slot), filled[slot]++, Py_NewRef(key));
        }
    }
done:
    PyMem_Free(hashes);
    PyMem_Free(counts);
    PyMem_Free(filled);
    return out;
bad:
    PyErr_SetString(PyExc_TypeError, "not a SCAN table's buckets");
    return NULL;
}

/* ---- the key loader: rdb.read_rdb's loop over keys, in C ---------------------------------
 *
 * load_keys(buffer, position, db, meta) decodes key records from buffer[position:] while they
 * are of the forms memlog writes (strings, sets, hashes, ZSET_2, QUICKLIST_2 lists, each
 * maybe after an EXPIRETIME_MS) and puts them in the Database exactly as rdb.py's loop does
 * (data, expires and its heap, changed_at, the SCAN table). It stops, before the record, at
 * anything else: another opcode, a value type it leaves to Python, a record that runs past
 * the buffer's end, and every malformed or doubtful record (then rdb.py reads the record
 * itself and raises the error it would raise anyway). So Python stays the specification:
 * this only ever takes records Python would have taken the same way. */

static PyObject *g_list_cls, *g_set_cls, *g_hash_cls, *g_zset_cls, *g_pairs_cls;
static PyObject *g_string_classes, *g_heappush, *g_from_sorted, *g_empty;

#define HASH_ENTRIES_MAX 512
#define HASH_VALUE_BYTES_MAX 64
#define INTSET_ENTRIES_MAX 512

typedef struct {
    const unsigned char *buf;
    Py_ssize_t size;
    Py_ssize_t p;
} Cur;

/* Readers return 1 (done), 0 (decline: leave this record to Python) or -1 (a Python error). */

static int cur_length(Cur *c, uint64_t *out) {
    if (c->p >= c->size) return 0;
    const unsigned char *b = c->buf + c->p;
    unsigned first = b[0];
    switch (first >> 6) {
    case 0:
        *out = first & 0x3F;
        c->p += 1;
        return 1;
    case 1:
        if (c->p + 2 > c->size) return 0;
        *out = ((uint64_t)(first & 0x3F) << 8) | b[1];
        c->p += 2;
        return 1;
    default:
        if (first == 0x80) {
            if (c->p + 5 > c->size) return 0;
            *out = ((uint64_t)b[1] << 24) | ((uint64_t)b[2] << 16) | ((uint64_t)b[3] << 8) | b[4];
            c->p += 5;
            return 1;
        }
        if (first == 0x81) {
            if (c->p + 9 > c->size) return 0;
            uint64_t n = 0;
            for (int i = 1; i <= 8; i++) n = (n << 8) | b[i];
            *out = n;
            c->p += 9;
            return 1;
        }
        return 0;
    }
}

static PyObject *int_text(long long v) {
    char text[24];
    int n = snprintf(text, sizeof text, "%lld", v);
    return PyBytes_FromStringAndSize(text, n);
}

static int cur_string(Cur *c, PyObject **out) {
    if (c->p >= c->size) return 0;
    unsigned first = c->buf[c->p];
    if (first >> 6 != 3) {
        uint64_t n;
        if (!cur_length(c, &n)) return 0;
        if (n > (uint64_t)(c->size - c->p)) return 0;
        *out = PyBytes_FromStringAndSize((const char *)c->buf + c->p, (Py_ssize_t)n);
        if (*out == NULL) return -1;
        c->p += (Py_ssize_t)n;
        return 1;
    }
    const unsigned char *b = c->buf + c->p;
    long long v;
    switch (first & 0x3F) {
    case 0:
        if (c->p + 2 > c->size) return 0;
        v = (int8_t)b[1];
        c->p += 2;
        break;
    case 1:
        if (c->p + 3 > c->size) return 0;
        v = (int16_t)(b[1] | (b[2] << 8));
        c->p += 3;
        break;
    case 2:
        if (c->p + 5 > c->size) return 0;
        v = (int32_t)((uint32_t)b[1] | ((uint32_t)b[2] << 8) | ((uint32_t)b[3] << 16) |
                      ((uint32_t)b[4] << 24));
        c->p += 5;
        break;
    case 3: {
        c->p += 1;
        uint64_t packed, size;
        if (!cur_length(c, &packed) || !cur_length(c, &size)) return 0;
        if (packed > (uint64_t)(c->size - c->p) || size > (uint64_t)PY_SSIZE_T_MAX / 2) return 0;
        PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        if (result == NULL) return -1;
        if (lzf_expand(c->buf + c->p, (Py_ssize_t)packed,
                       (unsigned char *)PyBytes_AS_STRING(result), (Py_ssize_t)size) != NULL) {
            Py_DECREF(result);
            return 0;
        }
        c->p += (Py_ssize_t)packed;
        *out = result;
        return 1;
    }
    default:
        return 0;
    }
    *out = int_text(v);
    return *out == NULL ? -1 : 1;
}

/* Redis's strict integer spelling (string2ll), as keyspace.string_as_int. */
static int is_strict_int(const unsigned char *s, Py_ssize_t n) {
    if (n < 1 || n > 20) return 0;
    int negative = s[0] == '-';
    const unsigned char *d = s + negative;
    Py_ssize_t digits = n - negative;
    if (digits == 0) return 0;
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < digits; i++) {
        if (d[i] < '0' || d[i] > '9') return 0;
        unsigned digit = d[i] - '0';
        if (v > (UINT64_MAX - digit) / 10) return 0;
        v = v * 10 + digit;
    }
    if (d[0] == '0' && n > 1) return 0;
    return negative ? v <= (uint64_t)1 << 63 : v <= (uint64_t)INT64_MAX;
}

static int backlen_bytes(Py_ssize_t n) {
    if (n <= 127) return 1;
    if (n < 16383) return 2;
    if (n < 2097151) return 3;
    if (n < 268435455) return 4;
    return 5;
}

static inline int64_t le_signed(const unsigned char *b, int width) {
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = (v << 8) | b[i];
    if (width < 8 && (v >> (8 * width - 1)) & 1) v |= ~(uint64_t)0 << (8 * width);
    return (int64_t)v;
}

/* packed.decode_listpack, appending to out; 0 on a malformed blob. With out NULL, only
 * whether the blob is a listpack packed.decode_listpack takes (1) or not (0). */
static int listpack_into(const unsigned char *b, Py_ssize_t size, PyObject *out) {
    if (size < 7) return 0;
    uint32_t total = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
                     ((uint32_t)b[3] << 24);
    if ((Py_ssize_t)total != size || b[size - 1] != 0xFF) return 0;
    unsigned count = b[4] | (b[5] << 8);
    Py_ssize_t p = 6, end = size - 1, found = 0;
    while (p < end) {
        unsigned e = b[p];
        Py_ssize_t start = p, length = -1, from = 0;
        long long number = 0;
        if (e < 0x80) {
            number = e;
            p += 1;
        } else if (e < 0xC0) {
            length = e & 0x3F;
            from = p + 1;
            p += 1 + length;
        } else if (e < 0xE0) {
            if (p + 2 > end) return 0;
            number = ((e & 0x1F) << 8) | b[p + 1];
            if (number >= 4096) number -= 8192;
            p += 2;
        } else if (e < 0xF0) {
            if (p + 2 > end) return 0;
            length = ((e & 0x0F) << 8) | b[p + 1];
            from = p + 2;
            p += 2 + length;
        } else if (e == 0xF0) {
            if (p + 5 > end) return 0;
            length = (Py_ssize_t)((uint32_t)b[p + 1] | ((uint32_t)b[p + 2] << 8) |
                                  ((uint32_t)b[p + 3] << 16) | ((uint32_t)b[p + 4] << 24));
            from = p + 5;
            if (length > end) return 0;
            p += 5 + length;
        } else if (e >= 0xF1 && e <= 0xF4) {
            static const int widths[4] = {2, 3, 4, 8};
            int width = widths[e - 0xF1];
            if (p + 1 + width > end) return 0;
            number = le_signed(b + p + 1, width);
            p += 1 + width;
        } else {
            return 0;
        }
        if (p > end) return 0;
        p += backlen_bytes(p - start);
        if (out == NULL) { /* a check only (skip_value) */
            found++;
            continue;
        }
        PyObject *item = length >= 0 ? PyBytes_FromStringAndSize((const char *)b + from, length)
                                     : int_text(number);
        if (item == NULL) return -1;
        int failed = PyList_Append(out, item);
        Py_DECREF(item);
        if (failed) return -1;
        found++;
    }
    if (p != end) return 0;
    if (count != 65535 && (Py_ssize_t)count != found) return 0;
    return 1;
}

/* The slots the loader fills, by class: their offsets in the object, from the classes'
 * member descriptors (configure). A fresh object from tp_new has them all NULL. */
enum { SET_MEMBERS, SET_POSITIONS, SET_HASHTABLE, SET_SCAN, SET_SORTED, SET_SLOTS };
enum { HASH_FIELDS, HASH_HASHTABLE, HASH_ORDER, HASH_POSITIONS, HASH_SCAN, HASH_SLOTS };
enum { ZSET_SCORES, ZSET_ORDER, ZSET_LISTPACK, ZSET_SCAN_INDEX, ZSET_SLOTS };
static const char *set_slot_names[SET_SLOTS] = {"_members", "_positions", "hashtable", "_scan",
                                                "_sorted"};
static const char *hash_slot_names[HASH_SLOTS] = {"_fields", "hashtable", "_order", "_positions",
                                                  "_scan"};
static const char *zset_slot_names[ZSET_SLOTS] = {"scores", "_order", "listpack", "_scan_index"};
static Py_ssize_t set_slots[SET_SLOTS], hash_slots[HASH_SLOTS], zset_slots[ZSET_SLOTS];

static int find_slots(PyObject *cls, const char **names, Py_ssize_t *offsets, int n) {
    for (int i = 0; i < n; i++) {
        PyObject *descr = PyObject_GetAttrString(cls, names[i]);
        if (descr == NULL) return -1;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (ok) offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s is not a slot", names[i]);
            return -1;
        }
    }
    return 0;
}

static void set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value) {
    PyObject **slot = (PyObject **)((char *)obj + offset);
    Py_XSETREF(*slot, Py_NewRef(value));
}

static PyObject *new_bare(PyObject *cls) {
    PyTypeObject *type = (PyTypeObject *)cls;
    return type->tp_new(type, g_empty, NULL);
}

#define TRY(expr)                     \
    do {                              \
        int r_ = (expr);              \
        if (r_ != 1) {                \
            status = r_;              \
            goto done;                \
        }                             \
    } while (0)

static int read_list(Cur *c, PyObject **out) {
    int status = 1;
    uint64_t nodes;
    PyObject *items = PyList_New(0), *blob = NULL;
    if (items == NULL) return -1;
    TRY(cur_length(c, &nodes));
    for (uint64_t i = 0; i < nodes; i++) {
        uint64_t container;
        TRY(cur_length(c, &container));
        TRY(cur_string(c, &blob));
        if (container == 2) {
            TRY(listpack_into((const unsigned char *)PyBytes_AS_STRING(blob),
                              PyBytes_GET_SIZE(blob), items));
        } else if (container == 1) {
            if (PyList_Append(items, blob)) {
                status = -1;
                goto done;
            }
        } else {
            status = 0;
            goto done;
        }
        Py_CLEAR(blob);
    }
    *out = PyObject_CallOneArg(g_list_cls, items);
    if (*out == NULL) status = -1;
done:
    Py_XDECREF(blob);
    Py_DECREF(items);
    return status;
}

static int read_set(Cur *c, long shape, PyObject **out) {
    int status = 1;
    uint64_t count;
    PyObject *members = PyList_New(0), *positions = PyDict_New(), *member = NULL;
    if (members == NULL || positions == NULL) {
        status = -1;
        goto done;
    }
    TRY(cur_length(c, &count));
    int natural = count > INTSET_ENTRIES_MAX;
    for (uint64_t i = 0; i < count; i++) {
        TRY(cur_string(c, &member));
        /* One lookup: SetDefault inserts, or finds the member there (the dict's size tells;
         * the objects cannot: small ints and one-byte strings are shared). */
        Py_ssize_t before = PyDict_GET_SIZE(positions);
        PyObject *at = PyLong_FromUnsignedLongLong(i);
        if (at == NULL || PyDict_SetDefault(positions, member, at) == NULL) {
            Py_XDECREF(at);
            status = -1;
            goto done;
        }
        Py_DECREF(at);
        if (PyDict_GET_SIZE(positions) == before) {
            status = 0; /* a member twice: Python's */
            goto done;
        }
        if (PyList_Append(members, member)) {
            status = -1;
            goto done;
        }
        if (!natural && !is_strict_int((const unsigned char *)PyBytes_AS_STRING(member),
                                       PyBytes_GET_SIZE(member)))
            natural = 1;
        Py_CLEAR(member);
    }
    int hashtable = shape < 0 ? natural : (int)(shape & 1);
    if (shape >= 0 && !hashtable && natural) {
        status = 0;
        goto done;
    }
    PyObject *value = new_bare(g_set_cls);
    if (value == NULL) {
        status = -1;
        goto done;
    }
    set_slot(value, set_slots[SET_MEMBERS], members);
    set_slot(value, set_slots[SET_POSITIONS], positions);
    set_slot(value, set_slots[SET_HASHTABLE], hashtable ? Py_True : Py_False);
    set_slot(value, set_slots[SET_SCAN], Py_None);
    set_slot(value, set_slots[SET_SORTED], Py_None);
    *out = value;
done:
    Py_XDECREF(member);
    Py_XDECREF(members);
    Py_XDECREF(positions);
    return status;
}

static int read_hash(Cur *c, long shape, PyObject **out) {
    int status = 1;
    uint64_t count;
    PyObject *fields = PyDict_New(), *name = NULL, *item = NULL, *order = NULL, *positions = NULL;
    if (fields == NULL) return -1;
    TRY(cur_length(c, &count));
    int long_entry = 0;
    for (uint64_t i = 0; i < count; i++) {
        TRY(cur_string(c, &name));
        TRY(cur_string(c, &item));
        Py_ssize_t before = PyDict_GET_SIZE(fields); /* one lookup, as in read_set */
        if (PyDict_SetDefault(fields, name, item) == NULL) {
            status = -1;
            goto done;
        }
        if (PyDict_GET_SIZE(fields) == before) {
            status = 0; /* a field twice: Python's */
            goto done;
        }
        if (PyBytes_GET_SIZE(name) > HASH_VALUE_BYTES_MAX ||
            PyBytes_GET_SIZE(item) > HASH_VALUE_BYTES_MAX)
            long_entry = 1;
        Py_CLEAR(name);
        Py_CLEAR(item);
    }
    int natural = count > HASH_ENTRIES_MAX || long_entry;
    if (shape >= 0 && !(shape & 1) && natural) {
        status = 0;
        goto done;
    }
    int hashtable = natural || (shape >= 0 && (shape & 1));
    order = hashtable ? PyDict_Keys(fields) : PyList_New(0);
    positions = PyDict_New();
    if (order == NULL || positions == NULL) {
        status = -1;
        goto done;
    }
    if (hashtable) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(order); i++) {
            PyObject *at = PyLong_FromSsize_t(i);
            if (at == NULL || PyDict_SetItem(positions, PyList_GET_ITEM(order, i), at)) {
                Py_XDECREF(at);
                status = -1;
                goto done;
            }
            Py_DECREF(at);
        }
    }
    PyObject *value = new_bare(g_hash_cls);
    if (value == NULL) {
        status = -1;
        goto done;
    }
    set_slot(value, hash_slots[HASH_FIELDS], fields);
    set_slot(value, hash_slots[HASH_HASHTABLE], hashtable ? Py_True : Py_False);
    set_slot(value, hash_slots[HASH_ORDER], order);
    set_slot(value, hash_slots[HASH_POSITIONS], positions);
    set_slot(value, hash_slots[HASH_SCAN], Py_None);
    *out = value;
done:
    Py_XDECREF(name);
    Py_XDECREF(item);
    Py_XDECREF(order);
    Py_XDECREF(positions);
    Py_DECREF(fields);
    return status;
}

static int read_zset(Cur *c, long shape, PyObject **out) {
    int status = 1;
    uint64_t count;
    PyObject *entries = PyList_New(0), *member = NULL, *scores = NULL, *order = NULL;
    if (entries == NULL) return -1;
    TRY(cur_length(c, &count));
    for (uint64_t i = 0; i < count; i++) {
        TRY(cur_string(c, &member));
        if (c->p + 8 > c->size) {
            status = 0;
            goto done;
        }
        double score;
        memcpy(&score, c->buf + c->p, 8);
        c->p += 8;
        if (score != score) {
            status = 0;
            goto done;
        }
        PyObject *entry = Py_BuildValue("(dO)", score, member);
        if (entry == NULL || PyList_Append(entries, entry)) {
            Py_XDECREF(entry);
            status = -1;
            goto done;
        }
        Py_DECREF(entry);
        Py_CLEAR(member);
    }
    if (PyList_Sort(entries)) {
        status = -1;
        goto done;
    }
    scores = PyDict_New();
    if (scores == NULL) {
        status = -1;
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (PyDict_SetItem(scores, PyTuple_GET_ITEM(entry, 1), PyTuple_GET_ITEM(entry, 0))) {
            status = -1;
            goto done;
        }
    }
    if (PyDict_GET_SIZE(scores) != PyList_GET_SIZE(entries)) {
        status = 0; /* a member twice */
        goto done;
    }
    if (shape < 0) {
        *out = PyObject_CallOneArg(g_from_sorted, entries);
        if (*out == NULL) status = -1;
        goto done;
    }
    order = PyObject_CallOneArg(g_pairs_cls, entries);
    if (order == NULL) {
        status = -1;
        goto done;
    }
    PyObject *value = new_bare(g_zset_cls);
    if (value == NULL) {
        status = -1;
        goto done;
    }
    set_slot(value, zset_slots[ZSET_SCORES], scores);
    set_slot(value, zset_slots[ZSET_ORDER], order);
    set_slot(value, zset_slots[ZSET_LISTPACK], (shape & 1) ? Py_True : Py_False);
    set_slot(value, zset_slots[ZSET_SCAN_INDEX], Py_None);
    *out = value;
done:
    Py_XDECREF(member);
    Py_XDECREF(scores);
    Py_XDECREF(order);
    Py_DECREF(entries);
    return status;
}

static int read_value(Cur *c, unsigned type, long shape, PyObject **out) {
    switch (type) {
    case 0: {
        PyObject *data;
        int r = cur_string(c, &data);
        if (r != 1) return r;
        if (shape <= 0) {
            *out = data;
            return 1;
        }
        if (shape >= PyTuple_GET_SIZE(g_string_classes)) {
            Py_DECREF(data);
            return 0;
        }
        *out = PyObject_CallOneArg(PyTuple_GET_ITEM(g_string_classes, shape), data);
        Py_DECREF(data);
        return *out == NULL ? -1 : 1;
    }
    case 2:
        return read_set(c, shape, out);
    case 4:
        return read_hash(c, shape, out);
    case 5:
        return read_zset(c, shape, out);
    case 18:
        return read_list(c, out);
    default:
        return 0;
    }
}

/* ---- values kept packed (keyspace.PackedValue) ------------------------------------------
 *
 * With a PackedValue class given (configure_packed) and lazy on, load_keys keeps each
 * list, set, hash and sorted set of a memlog snapshot as a PackedValue: its RDB type, a copy
 * of its bytes and its shape, without building the ~5 objects a member or field costs; the
 * keyspace decodes it on first touch with decode_value (read_value on those bytes, or
 * rdb.py's reader where read_value declines). skip_value checks what it can without making
 * objects: every length and string in bounds, a list's nodes listpacks, no NaN score.
 * Strings in LZF (which memlog's writer never writes) and anything odd: the record is
 * decoded at load as before. What only a decode can see (a member twice, a member that does
 * not fit the shape) surfaces at the first touch instead, as an RdbError. */

static PyObject *g_packed_cls;
enum { PACKED_TYPE, PACKED_PAYLOAD, PACKED_SHAPE, PACKED_SLOTS };
static const char *packed_slot_names[PACKED_SLOTS] = {"rdb_type", "payload", "shape"};
static Py_ssize_t packed_slots[PACKED_SLOTS];

/* Step over one RDB string without making it: 1, or 0 (decline). */
static int skip_string(Cur *c) {
    if (c->p >= c->size) return 0;
    unsigned first = c->buf[c->p];
    if (first >> 6 != 3) {
        uint64_t n;
        if (!cur_length(c, &n)) return 0;
        if (n > (uint64_t)(c->size - c->p)) return 0;
        c->p += (Py_ssize_t)n;
        return 1;
    }
    static const int widths[3] = {2, 3, 5};
    unsigned encoding = first & 0x3F;
    if (encoding > 2) return 0; /* LZF, or not a string: decoded at load */
    if (c->p + widths[encoding] > c->size) return 0;
    c->p += widths[encoding];
    return 1;
}

static int skip_value(Cur *c, unsigned type) {
    uint64_t count;
    if (!cur_length(c, &count)) return 0;
    if (count > (uint64_t)(c->size - c->p)) return 0; /* each takes a byte at least */
    switch (type) {
    case 2:
        for (uint64_t i = 0; i < count; i++)
            if (!skip_string(c)) return 0;
        return 1;
    case 4:
        for (uint64_t i = 0; i < 2 * count; i++)
            if (!skip_string(c)) return 0;
        return 1;
    case 5:
        for (uint64_t i = 0; i < count; i++) {
            if (!skip_string(c) || c->p + 8 > c->size) return 0;
            double score;
            memcpy(&score, c->buf + c->p, 8);
            if (score != score) return 0;
            c->p += 8;
        }
        return 1;
    case 18:
        for (uint64_t i = 0; i < count; i++) {
            uint64_t container, n;
            if (!cur_length(c, &container) || (container != 1 && container != 2)) return 0;
            if (c->p >= c->size || c->buf[c->p] >> 6 == 3) return 0; /* a node is plain bytes */
            if (!cur_length(c, &n) || n > (uint64_t)(c->size - c->p)) return 0;
            if (container == 2 && listpack_into(c->buf + c->p, (Py_ssize_t)n, NULL) != 1)
                return 0;
            c->p += (Py_ssize_t)n;
        }
        return 1;
    default:
        return 0;
    }
}

/* A PackedValue of the value at c (of type, after its key), or NULL with *status 0 (not
 * one to keep packed: decode it now) or -1 (a Python error). */
static PyObject *packed_value(Cur *c, unsigned type, long shape, int *status) {
    Py_ssize_t start = c->p;
    *status = 0;
    if (shape < 0 || shape > 1 || (type == 18 && shape != 0) || !skip_value(c, type)) {
        c->p = start;
        return NULL;
    }
    PyObject *payload = PyBytes_FromStringAndSize((const char *)c->buf + start, c->p - start);
    PyObject *kind = PyLong_FromUnsignedLong(type), *form = PyLong_FromLong(shape);
    PyObject *value = payload && kind && form ? new_bare(g_packed_cls) : NULL;
    if (value != NULL) {
        set_slot(value, packed_slots[PACKED_TYPE], kind);
        set_slot(value, packed_slots[PACKED_PAYLOAD], payload);
        set_slot(value, packed_slots[PACKED_SHAPE], form);
        /* It holds a bytes object and two ints: no cycle can pass through it. */
        PyObject_GC_UnTrack(value);
    } else {
        *status = -1;
    }
    Py_XDECREF(payload);
    Py_XDECREF(kind);
    Py_XDECREF(form);
    return value;
}

/* decode_value(rdb_type, shape, payload) -> the value, or None where read_value declines
 * (rdb.py's reader then decodes it, raising what it raises). The payload must be used up. */
static PyObject *py_decode_value(PyObject *self, PyObject *args) {
    (void)self;
    unsigned int type;
    long shape;
    Py_buffer view;
    if (g_list_cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Ily*", &type, &shape, &view)) return NULL;
    Cur c = {(const unsigned char *)view.buf, view.len, 0};
    PyObject *value = NULL;
    int r = type == 0 ? 0 : read_value(&c, type, shape, &value);
    PyBuffer_Release(&view);
    if (r < 0) return NULL;
    if (r == 0 || c.p != c.size) {
        Py_XDECREF(value);
        Py_RETURN_NONE;
    }
    return value;
}

static PyObject *py_configure_packed(PyObject *self, PyObject *cls) {
    (void)self;
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a class expected");
        return NULL;
    }
    if (find_slots(cls, packed_slot_names, packed_slots, PACKED_SLOTS)) return NULL;
    Py_XSETREF(g_packed_cls, Py_NewRef(cls));
    Py_RETURN_NONE;
}

/* One LEB128 number of a memlog field (below 2**63); 0 when truncated or too long. */
static int meta_number(const unsigned char *b, Py_ssize_t size, Py_ssize_t *p, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 63; shift += 7) {
        if (*p >= size) return 0;
        unsigned byte = b[(*p)++];
        v |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            if (v > (uint64_t)INT64_MAX) return 0;
            *out = v;
            return 1;
        }
    }
    return 0;
}

static Py_ssize_t get_ssize(PyObject *obj, const char *name) {
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (v == NULL) return -1;
    Py_ssize_t n = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return n;
}

static PyObject *py_load_keys(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t position;
    PyObject *db, *meta;
    int lazy = 0;
    if (g_list_cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nOO|p", &view, &position, &db, &meta, &lazy)) return NULL;
    if (lazy && (g_packed_cls == NULL || meta == Py_None)) lazy = 0; /* memlog snapshots only */
    PyObject *data = NULL, *expires = NULL, *changed_at = NULL, *heap = NULL, *blocked = NULL;
    PyObject *index = NULL, *buckets = NULL, *meta_blob = NULL, *result = NULL;
    Py_ssize_t keys = 0, count = -1, count_start = -1, mpos = 0, mleft = 0, mdb = -1;
    int failed = 0;
    data = PyObject_GetAttrString(db, "data");
    expires = PyObject_GetAttrString(db, "expires");
    changed_at = PyObject_GetAttrString(db, "changed_at");
    heap = PyObject_GetAttrString(db, "_expiry_heap");
    blocked = PyObject_GetAttrString(db, "blocked_keys");
    index = PyObject_GetAttrString(db, "key_index");
    if (!data || !expires || !changed_at || !heap || !blocked || !index) goto fail;
    Py_ssize_t db_number = get_ssize(db, "index");
    if (db_number < 0 && PyErr_Occurred()) goto fail;
    buckets = PyObject_GetAttrString(index, "_buckets");
    if (buckets == NULL) goto fail;
    Py_ssize_t bits = get_ssize(index, "_bits");
    count = count_start = get_ssize(index, "_count");
    if (PyErr_Occurred()) goto fail;
    if (!PyDict_CheckExact(data) || !PyDict_CheckExact(expires) || !PyDict_CheckExact(changed_at) ||
        !PyList_CheckExact(heap) || !PyAnySet_Check(blocked) || !PyList_CheckExact(buckets) ||
        bits < 0 || bits > 40 || PyList_GET_SIZE(buckets) != ((Py_ssize_t)1 << bits) ||
        PySet_GET_SIZE(blocked) != 0)
        goto finish; /* nothing this loader knows how to keep: all to Python */
    Py_ssize_t nbuckets = PyList_GET_SIZE(buckets);
    if (meta != Py_None) {
        meta_blob = PyObject_GetAttrString(meta, "blob");
        if (meta_blob == NULL) goto fail;
        mpos = get_ssize(meta, "position");
        mleft = get_ssize(meta, "left");
        mdb = get_ssize(meta, "db");
        if (PyErr_Occurred()) goto fail;
        if (!PyBytes_CheckExact(meta_blob)) goto finish;
    }
    const unsigned char *mb = meta_blob ? (const unsigned char *)PyBytes_AS_STRING(meta_blob) : NULL;
    Py_ssize_t msize = meta_blob ? PyBytes_GET_SIZE(meta_blob) : 0;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len;
    if (position < 0 || position > size) goto finish;
    for (;;) {
        Cur c = {buf, size, position};
        int has_expire = 0;
        long long expire = 0;
        if (c.p < size && buf[c.p] == 252) {
            if (c.p + 9 > size) break;
            expire = le_signed(buf + c.p + 1, 8);
            has_expire = 1;
            c.p += 9;
        }
        if (c.p >= size) break;
        unsigned type = buf[c.p];
        if (type != 0 && type != 2 && type != 4 && type != 5 && type != 18) break;
        c.p++;
        if (count + 1 > nbuckets) break; /* the SCAN table would grow: Python grows it */
        if (has_expire &&
            PyList_GET_SIZE(heap) + 1 > 2 * (PyDict_GET_SIZE(expires) + 1) + 64)
            break; /* the expiry heap's rebuild: Python's */
        Py_ssize_t mp = mpos;
        uint64_t changed = 0, shape_u = 0;
        long shape = -1;
        if (meta != Py_None) {
            if (mleft <= 0 || mdb != db_number) break;
            if (!meta_number(mb, msize, &mp, &changed) || !meta_number(mb, msize, &mp, &shape_u))
                break;
            if (shape_u & 4 || shape_u > 1000) break; /* a hash's pick order: Python's */
            shape = (long)shape_u;
        }
        PyObject *key = NULL, *value = NULL;
        int r = cur_string(&c, &key);
        if (r == 1 && lazy && type != 0) {
            value = packed_value(&c, type, shape, &r);
            if (value != NULL) r = 1;
            else if (r == 0) r = read_value(&c, type, shape, &value);
        } else if (r == 1) {
            r = read_value(&c, type, shape, &value); /* rdb.py reads it first too */
        }
        if (r != 1) {
            Py_XDECREF(key);
            if (r < 0) goto fail;
            break;
        }
        /* One lookup per dict where it can be: SetDefault inserts, or finds the key there
         * (then nothing was changed and the record is Python's: the dict's size tells). The
         * SCAN table and data hold the same keys; should the table hold it all the same, the
         * key leaves data again. expires holds keys of data only (this loader and rdb.py set
         * them together), so the new key is not in it. */
        Py_ssize_t before = PyDict_GET_SIZE(data);
        if (PyDict_SetDefault(data, key, value) == NULL) {
            Py_DECREF(key);
            Py_DECREF(value);
            goto fail;
        }
        Py_DECREF(value);
        if (PyDict_GET_SIZE(data) == before) {
            Py_DECREF(key);
            break;
        }
        uint64_t h = key_hash64((const unsigned char *)PyBytes_AS_STRING(key),
                                (size_t)PyBytes_GET_SIZE(key));
        Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)(nbuckets - 1));
        PyObject *chain = NULL;
        int placed = bucket_with(PyList_GET_ITEM(buckets, slot), key, &chain);
        if (placed != 1) { /* not a bucket this code knows, an error, or the key there */
            int gone = PyDict_DelItem(data, key);
            Py_DECREF(key);
            if (placed < 0 || gone) goto fail;
            break;
        }
        PyList_SetItem(buckets, slot, chain); /* steals chain, drops the bucket it replaces */
        count++;
        int bad = 0;
        if (has_expire) {
            PyObject *when = PyLong_FromLongLong(expire);
            PyObject *pair = when ? PyTuple_Pack(2, when, key) : NULL;
            bad = pair == NULL || PyDict_SetItem(expires, key, when);
            if (!bad) {
                PyObject *none = PyObject_CallFunctionObjArgs(g_heappush, heap, pair, NULL);
                bad = none == NULL;
                Py_XDECREF(none);
            }
            Py_XDECREF(when);
            Py_XDECREF(pair);
        }
        if (!bad) {
            if (meta != Py_None && changed > 0) {
                PyObject *at = PyLong_FromUnsignedLongLong(changed - 1);
                bad = at == NULL || PyDict_SetItem(changed_at, key, at);
                Py_XDECREF(at);
            } else if (PyDict_Contains(changed_at, key) == 1) {
                bad = PyDict_DelItem(changed_at, key);
            }
        }
        Py_DECREF(key);
        if (bad) goto fail;
        position = c.p;
        if (meta != Py_None) {
            mpos = mp;
            mleft--;
        }
        keys++;
    }
finish:
    result = Py_BuildValue("(nn)", position, keys);
    goto out;
fail:
    failed = 1;
out:
    /* What was loaded stays loaded (rdb.py fails the whole load on an error anyway). */
    if (index != NULL && count != count_start) {
        PyObject *n = PyLong_FromSsize_t(count);
        if (n == NULL || PyObject_SetAttrString(index, "_count", n)) failed = 1;
        Py_XDECREF(n);
    }
    if (meta_blob != NULL && keys > 0) {
        PyObject *a = PyLong_FromSsize_t(mpos), *b = PyLong_FromSsize_t(mleft);
        if (a == NULL || b == NULL || PyObject_SetAttrString(meta, "position", a) ||
            PyObject_SetAttrString(meta, "left", b))
            failed = 1;
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
    if (failed) Py_CLEAR(result);
    Py_XDECREF(data);
    Py_XDECREF(expires);
    Py_XDECREF(changed_at);
    Py_XDECREF(heap);
    Py_XDECREF(blocked);
    Py_XDECREF(index);
    Py_XDECREF(buckets);
    Py_XDECREF(meta_blob);
    PyBuffer_Release(&view);
    return result;
}

/* meta_check(blob) -> (db, count) of a memlog-keys field, or -1 (truncated), -2 (trailing
 * bytes after its entries): the structure rdb._read_meta checks before the keys come. */
static PyObject *py_meta_check(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "bytes expected");
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg), p = 0;
    uint64_t db, count, v, shape, picks;
    if (!meta_number(b, size, &p, &db) || !meta_number(b, size, &p, &count))
        return PyLong_FromLong(-1);
    for (uint64_t i = 0; i < count; i++) {
        if (!meta_number(b, size, &p, &v) || !meta_number(b, size, &p, &shape))
            return PyLong_FromLong(-1);
        if (shape & 4) {
            if (!meta_number(b, size, &p, &picks)) return PyLong_FromLong(-1);
            for (uint64_t k = 0; k < picks; k++)
                if (!meta_number(b, size, &p, &v)) return PyLong_FromLong(-1);
        }
    }
    if (p != size) return PyLong_FromLong(-2);
    return Py_BuildValue("(KK)", (unsigned long long)db, (unsigned long long)count);
}

static PyObject *py_configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *l, *s, *h, *z, *pairs, *strings, *push, *from_sorted;
    if (!PyArg_ParseTuple(args, "OOOOOO!OO", &l, &s, &h, &z, &pairs, &PyTuple_Type, &strings,
                          &push, &from_sorted))
        return NULL;
    PyObject *classes[4] = {s, h, z, l};
    for (int i = 0; i < 4; i++)
        if (!PyType_Check(classes[i])) {
            PyErr_SetString(PyExc_TypeError, "value classes expected");
            return NULL;
        }
    if (find_slots(s, set_slot_names, set_slots, SET_SLOTS) ||
        find_slots(h, hash_slot_names, hash_slots, HASH_SLOTS) ||
        find_slots(z, zset_slot_names, zset_slots, ZSET_SLOTS))
        return NULL;
    Py_XSETREF(g_list_cls, Py_NewRef(l));
    Py_XSETREF(g_set_cls, Py_NewRef(s));
    Py_XSETREF(g_hash_cls, Py_NewRef(h));
    Py_XSETREF(g_zset_cls, Py_NewRef(z));
    Py_XSETREF(g_pairs_cls, Py_NewRef(pairs));
    Py_XSETREF(g_string_classes, Py_NewRef(strings));
    Py_XSETREF(g_heappush, Py_NewRef(push));
    Py_XSETREF(g_from_sorted, Py_NewRef(from_sorted));
    if (g_empty == NULL && (g_empty = PyTuple_New(0)) == NULL) return NULL;
    Py_RETURN_NONE;
}

/* ---- pymalloc's arenas mapped populated ---------------------------------------------------
 *
 * populate_arenas(on) -> whether it was on. While on, CPython's small-object allocator maps
 * each new arena (1 MiB) with MAP_POPULATE: the kernel backs it in one call instead of one
 * page fault per 4 KiB page at first touch. A load of 1M keys fills about 1.5 GB of arenas
 * and spent a fifth of its CPU in those faults; mapped populated they cost about a tenth
 * less of the load's CPU (measured; the pages are still allocated and cleared). Arenas are
 * unmapped with munmap, as CPython's own allocator does it, so arenas mapped either way are
 * freed either way and switching back is safe at any time. */

#include <sys/mman.h>

static PyObjectArenaAllocator default_arenas;
static int populating = 0;

static void *populated_arena_alloc(void *ctx, size_t size) {
    (void)ctx;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void populated_arena_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    munmap(ptr, size);
}

static PyObject *py_populate_arenas(PyObject *self, PyObject *arg) {
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    int was = populating;
    if (on && !populating) {
        PyObject_GetArenaAllocator(&default_arenas);
        PyObjectArenaAllocator allocator = {NULL, populated_arena_alloc, populated_arena_free};
        PyObject_SetArenaAllocator(&allocator);
    } else if (!on && populating) {
        PyObject_SetArenaAllocator(&default_arenas);
    }
    populating = on;
    return PyBool_FromLong(was);
}

static PyMethodDef methods[] = {
    {"crc64", py_crc64, METH_VARARGS, "crc64(crc, data) -> the CRC continued over data."},
    {"lzf_decompress", py_lzf_decompress, METH_VARARGS,
     "lzf_decompress(data, size) -> the size bytes data expands to (ValueError if not)."},
    {"key_hash", py_key_hash, METH_O, "key_hash(key) -> keyindex.key_hash(key)."},
    {"populate_arenas", py_populate_arenas, METH_O,
     "populate_arenas(on) -> whether new pymalloc arenas were mapped MAP_POPULATE before."},
    {"index_rehash", py_index_rehash, METH_VARARGS,
     "index_rehash(buckets, bits) -> keyindex.KeyIndex._resize's new buckets."},
    {"load_keys", py_load_keys, METH_VARARGS,
     "load_keys(buffer, position, db, meta, lazy=False) -> (position, keys loaded)."},
    {"decode_value", py_decode_value, METH_VARARGS,
     "decode_value(rdb_type, shape, payload) -> a packed value decoded, or None (declined)."},
    {"configure_packed", py_configure_packed, METH_O,
     "configure_packed(PackedValue): the class load_keys makes when lazy."},
    {"meta_check", py_meta_check, METH_O,
     "meta_check(blob) -> (db, count), or -1 (truncated), -2 (trailing bytes)."},
    {"configure", py_configure, METH_VARARGS,
     "configure(ListValue, SetValue, HashValue, ZSet, pairs class, string classes, heappush, "
     "ZSet.from_sorted)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Byte loops of the snapshot code (see the file head).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    build_tables();
    return PyModule_Create(&module);
}
