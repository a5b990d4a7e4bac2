/* SPOP with a count in C: cacheshim/types/setvalue.py's pop_many_py without a Python call
 * per pick.
 *
 * pop_many(members, positions, state, count) -> (popped, state)
 *
 * members is a set's members list, positions its member -> position dict (or None: the list
 * alone, for a set about to be dropped), state the 625 integers of random.Random's
 * getstate()[1] (the Mersenne Twister's 624 words and its index). It pops count members as
 * count calls of random.Random.randrange(len(members)) would pick them: each position drawn
 * as CPython draws it (getrandbits(size.bit_length()) until one is below the size; 32 bits
 * at most, since the caller keeps lists of 2**32 members and more in Python), each pick
 * swap-removed (the last member takes its place). positions follows: the popped members
 * leave it and each moved member gets its new position. It answers the popped members in
 * pick order and the generator's state after the picks (for setstate).
 *
 * The Python loop is the specification; tests/cacheshim/test_random_members.py checks both
 * agree on random sizes, counts and seeds: the same popped members, list, index and
 * generator state after. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define MT_N 624
#define MT_M 397
#define MATRIX_A 0x9908b0dfU
#define UPPER_MASK 0x80000000U
#define LOWER_MASK 0x7fffffffU

typedef struct {
    uint32_t state[MT_N];
    int index;
} Twister;

/* CPython's Modules/_randommodule.c genrand_uint32, the reference MT19937. */
static uint32_t genrand_uint32(Twister *self) {
    static const uint32_t mag01[2] = {0x0U, MATRIX_A};
    uint32_t *mt = self->state;
    uint32_t y;
    if (self->index >= MT_N) {
        int kk;
        for (kk = 0; kk < MT_N - MT_M; kk++) {
            y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        for (; kk < MT_N - 1; kk++) {
            y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        y = (mt[MT_N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
        mt[MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 0x1U];
        self->index = 0;
    }
    y = mt[self->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

static int read_state(PyObject *state, Twister *twister) {
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != MT_N + 1) {
        PyErr_SetString(PyExc_ValueError, "state must be a tuple of 625 integers");
        return -1;
    }
    for (Py_ssize_t i = 0; i <= MT_N; i++) {
        unsigned long word = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, i));
        if (word == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        if (i < MT_N) {
            if (word > 0xffffffffUL) {
                PyErr_SetString(PyExc_ValueError, "a state word is over 32 bits");
                return -1;
            }
            twister->state[i] = (uint32_t)word;
        } else {
            if (word > MT_N) {
                PyErr_SetString(PyExc_ValueError, "the state index is out of range");
                return -1;
            }
            twister->index = (int)word;
        }
    }
    return 0;
}

static PyObject *write_state(const Twister *twister) {
    PyObject *state = PyTuple_New(MT_N + 1);
    if (state == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i <= MT_N; i++) {
        PyObject *word = PyLong_FromUnsignedLong(i < MT_N ? twister->state[i]
                                                          : (unsigned long)twister->index);
        if (word == NULL) {
            Py_DECREF(state);
            return NULL;
        }
        PyTuple_SET_ITEM(state, i, word);
    }
    return state;
}

#define AHEAD 32
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch((const void *)(address), 0, 1)
#else
#define PREFETCH(address) ((void)(address))
#endif

static int bit_length(uint32_t size) {
    int bits = 0;
    while (size != 0) {
        bits++;
        size >>= 1;
    }
    return bits;
}

/* positions[last] = position, reusing the int object positions[member] holds when it is
 * that position (the index is right before a pick), else a new one. */
static int move_index(PyObject *positions, PyObject *member, PyObject *last, uint32_t position) {
    PyObject *value = PyDict_GetItemWithError(positions, member);
    if (value == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, member);
        }
        return -1;
    }
    Py_ssize_t held = PyLong_Check(value) ? PyLong_AsSsize_t(value) : -1;
    if (held == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    if (held == (Py_ssize_t)position) {
        Py_INCREF(value);
    } else {
        value = PyLong_FromSsize_t((Py_ssize_t)position);
        if (value == NULL) {
            return -1;
        }
    }
    int result = PyDict_SetItem(positions, last, value);
    Py_DECREF(value);
    return result;
}

/* A position below span, as random.Random.randrange(span) draws it (span < 2**32). */
static uint32_t draw(Twister *twister, uint32_t span) {
    int shift = 32 - bit_length(span);
    uint32_t position;
    do {
        position = genrand_uint32(twister) >> shift;
    } while (position >= span);
    return position;
}

static PyObject *pop_many(PyObject *self, PyObject *args) {
    PyObject *members;
    PyObject *positions;
    PyObject *state;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "O!OO!n", &PyList_Type, &members, &positions, &PyTuple_Type,
                          &state, &count)) {
        return NULL;
    }
    (void)self;
    if (positions != Py_None && !PyDict_CheckExact(positions)) {
        PyErr_SetString(PyExc_TypeError, "positions must be a dict or None");
        return NULL;
    }
    Py_ssize_t size = PyList_GET_SIZE(members);
    if (count < 0 || count > size || size > (Py_ssize_t)0xffffffffL) {
        PyErr_SetString(PyExc_ValueError, "count must be in [0, len(members)] and len below 2**32");
        return NULL;
    }
    Twister twister;
    if (read_state(state, &twister) < 0) {
        return NULL;
    }
    PyObject *popped = PyList_New(count);
    if (popped == NULL) {
        return NULL;
    }
    /* No Python code runs below until the list is whole again (the members are exact
     * bytes, whose hash and comparison are C), so the list's array is worked on in place: a
     * popped member's reference goes to popped, the last member's moves into the hole, and
     * the tail left behind holds None until it is cut off. */
    PyObject **items = ((PyListObject *)members)->ob_item;
    /* The positions depend on the list's length only, so they are drawn AHEAD picks early
     * (in the same order, so from the same numbers) and what the later picks will touch is
     * fetched into the cache meanwhile: their slots first, then the members in them. */
    uint32_t ring[AHEAD];
    Py_ssize_t drawn = 0;
    for (; drawn < count && drawn < AHEAD; drawn++) {
        ring[drawn] = draw(&twister, (uint32_t)(size - drawn));
        PREFETCH(&items[ring[drawn]]);
    }
    Py_ssize_t left = size;
    Py_ssize_t done = 0;
    int failed = 0;
    for (; done < count; done++) {
        uint32_t position = ring[done % AHEAD];
        if (drawn < count) {
            uint32_t later = draw(&twister, (uint32_t)(size - drawn));
            ring[drawn % AHEAD] = later;
            PREFETCH(&items[later]);
            drawn++;
        }
        if (done + AHEAD / 2 < drawn) { /* a slot fetched AHEAD / 2 picks ago */
            PREFETCH(items[ring[(done + AHEAD / 2) % AHEAD]]);
        }
        if (left - 1 - AHEAD / 2 >= 0) { /* the last member a later pick moves */
            PREFETCH(items[left - 1 - AHEAD / 2]);
        }
        PyObject *member = items[position];
        PyObject *last = items[left - 1];
        if (positions != Py_None) {
            if (!PyBytes_CheckExact(member) || !PyBytes_CheckExact(last)) {
                PyErr_SetString(PyExc_TypeError, "a member is not bytes");
                failed = 1;
                break;
            }
            /* The last member takes the popped one's position, and its int object (the
             * index holds that position for it) rather than a new one. */
            if ((Py_ssize_t)position < left - 1 &&
                move_index(positions, member, last, position) < 0) {
                failed = 1;
                break;
            }
            if (PyDict_DelItem(positions, member) < 0) {
                failed = 1;
                break;
            }
        }
        PyList_SET_ITEM(popped, done, member);
        left--;
        items[position] = last;
        items[left] = Py_None;
        Py_INCREF(Py_None);
    }
    if (PyList_SetSlice(members, left, size, NULL) < 0 || failed) {
        /* the picks before the failure stay made: popped holds them, the list lost them */
        Py_DECREF(popped);
        return NULL;
    }
    PyObject *after = write_state(&twister);
    if (after == NULL) {
        Py_DECREF(popped);
        return NULL;
    }
    return Py_BuildValue("(NN)", popped, after);
}

static PyMethodDef methods[] = {
    {"pop_many", pop_many, METH_VARARGS,
     "pop_many(members, positions, state, count) -> (popped, state)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cacheshim.types._setpop",
    "SPOP's picks in C (the Python twin: setvalue.pop_many_py).", -1, methods,
};

PyMODINIT_FUNC PyInit__setpop(void) { return PyModule_Create(&module); }
