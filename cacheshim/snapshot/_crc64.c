/* CRC-64 (Jones polynomial, reflected, init 0, no final xor) for RDB files: the C twin of
 * cacheshim/snapshot/crc64.py, which is its specification. Eight tables, one per byte
 * position of a 64-bit word, so each step folds eight bytes. Little-endian hosts only (the
 * build refuses others). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cacheshim.snapshot._crc64 assumes a little-endian host"
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

static PyMethodDef methods[] = {
    {"crc64", py_crc64, METH_VARARGS, "crc64(crc, data) -> the CRC continued over data."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_crc64", "CRC-64 for RDB files (see crc64.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__crc64(void) {
    build_tables();
    return PyModule_Create(&module);
}
