/* The snapshot code's two byte loops in C, each the twin of a Python function that is its
 * specification:
 * - crc64(crc, data): CRC-64 (Jones polynomial, reflected, init 0, no final xor) for RDB
 *   files, as cacheshim/snapshot/crc64.py. Eight tables, one per byte position of a 64-bit
 *   word, so each step folds eight bytes. Little-endian hosts only (the build refuses others).
 * - lzf_decompress(data, size): liblzf's format, as cacheshim/snapshot/lzf.py; raises
 *   ValueError on input that does not expand to exactly size bytes. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *in = (const unsigned char *)data.buf;
    Py_ssize_t in_len = data.len, ip = 0, op = 0;
    const char *error = NULL;
    while (ip < in_len) {
        unsigned int ctrl = in[ip++];
        if (ctrl < 32) { /* a literal run of ctrl + 1 bytes */
            Py_ssize_t run = (Py_ssize_t)ctrl + 1;
            if (ip + run > in_len) { error = "literal run past the end of the input"; break; }
            if (op + run > size) { error = "output longer than expected"; break; }
            memcpy(out + op, in + ip, (size_t)run);
            ip += run;
            op += run;
            continue;
        }
        Py_ssize_t length = ctrl >> 5;
        if (length == 7) {
            if (ip >= in_len) { error = "truncated back reference"; break; }
            length += in[ip++];
        }
        if (ip >= in_len) { error = "truncated back reference"; break; }
        Py_ssize_t distance = (Py_ssize_t)((ctrl & 0x1F) << 8) + in[ip++] + 1;
        length += 2;
        if (distance > op) { error = "back reference before the start of the output"; break; }
        if (op + length > size) { error = "output longer than expected"; break; }
        const unsigned char *ref = out + op - distance;
        for (Py_ssize_t k = 0; k < length; k++) out[op + k] = ref[k]; /* may overlap */
        op += length;
    }
    PyBuffer_Release(&data);
    if (error == NULL && op != size) error = "output shorter than expected";
    if (error != NULL) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    return result;
}

static PyMethodDef methods[] = {
    {"crc64", py_crc64, METH_VARARGS, "crc64(crc, data) -> the CRC continued over data."},
    {"lzf_decompress", py_lzf_decompress, METH_VARARGS,
     "lzf_decompress(data, size) -> the size bytes data expands to (ValueError if not)."},
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
