/* Lua 5.1's pattern functions (string.find, match, gmatch, gsub), counted.
 *
 * Stock Lua runs a pattern match in C, inside one VM instruction, so the count hook that
 * holds a script to memlog's instruction budget never fires while it runs: a pattern with
 * nested repetitions over a long subject (`("a*"):rep(3) .. "b"` against 30,000 'a's) would
 * run for hours, at apply, on every shim. These functions give the same results as Lua
 * 5.1.5's (same algorithm: a backtracking matcher over the pattern's items, the same
 * errors, the same captures), and count their work: every step of the matcher (an entry
 * into it, a character tried by a repetition, a character scanned by %b or a plain
 * search) is one instruction of the budget. Each `step` of them calls the Lua function the
 * engine gives (`charge`), which counts one step of the budget as the count hook does and
 * raises the budget's (or SCRIPT KILL's) error. The count is a pure function of the
 * arguments, so a match ends at the same place on every shim.
 *
 * Character classes (%a, %d, ...) are the C locale's, by table, whatever the process's
 * locale is (redis-server runs Lua in the C locale; a shim's locale must not change what a
 * script sees).
 *
 * Loading: this file is a Python extension module only so setuptools builds it. Lua loads
 * it with package.loadlib (luaopen_memlog_lstr). It calls the Lua C API of lupa's Lua 5.1,
 * which Python loaded privately (RTLD_LOCAL), so the functions are looked up in that
 * library by `bind` (dlsym) before Lua opens this module; nothing here links against Lua.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

/* -- the part of Lua 5.1's C API used here (lua.h, lauxlib.h of 5.1.5) ----------------- */

typedef struct lua_State lua_State;
typedef int (*lua_CFunction)(lua_State *L);
typedef ptrdiff_t lua_Integer;

#define LUA_GLOBALSINDEX (-10002)
#define lua_upvalueindex(i) (LUA_GLOBALSINDEX - (i))
#define LUA_TNONE (-1)
#define LUA_TNIL 0
#define LUA_TBOOLEAN 1
#define LUA_TNUMBER 3
#define LUA_TSTRING 4
#define LUA_TTABLE 5
#define LUA_TFUNCTION 6

#define API(X)                                                                   \
    X(int, lua_gettop, (lua_State * L))                                          \
    X(void, lua_settop, (lua_State * L, int idx))                                \
    X(void, lua_pushvalue, (lua_State * L, int idx))                             \
    X(void, lua_replace, (lua_State * L, int idx))                               \
    X(int, lua_type, (lua_State * L, int idx))                                   \
    X(const char *, lua_typename, (lua_State * L, int tp))                       \
    X(int, lua_isstring, (lua_State * L, int idx))                               \
    X(int, lua_toboolean, (lua_State * L, int idx))                              \
    X(lua_Integer, lua_tointeger, (lua_State * L, int idx))                      \
    X(const char *, lua_tolstring, (lua_State * L, int idx, size_t *len))        \
    X(void *, lua_touserdata, (lua_State * L, int idx))                          \
    X(void, lua_pushnil, (lua_State * L))                                        \
    X(void, lua_pushinteger, (lua_State * L, lua_Integer n))                     \
    X(void, lua_pushlstring, (lua_State * L, const char *s, size_t l))           \
    X(void, lua_pushcclosure, (lua_State * L, lua_CFunction fn, int n))          \
    X(void *, lua_newuserdata, (lua_State * L, size_t sz))                       \
    X(void, lua_createtable, (lua_State * L, int narr, int nrec))                \
    X(void, lua_setfield, (lua_State * L, int idx, const char *k))               \
    X(void, lua_gettable, (lua_State * L, int idx))                              \
    X(void, lua_call, (lua_State * L, int nargs, int nresults))                  \
    X(int, luaL_error, (lua_State * L, const char *fmt, ...))                    \
    X(int, luaL_argerror, (lua_State * L, int narg, const char *extramsg))       \
    X(const char *, luaL_checklstring, (lua_State * L, int narg, size_t *l))     \
    X(lua_Integer, luaL_optinteger, (lua_State * L, int narg, lua_Integer def))  \
    X(void, luaL_checkstack, (lua_State * L, int sz, const char *msg))             \
    X(int, lua_checkstack, (lua_State * L, int sz))                               \
    X(int, lua_next, (lua_State * L, int idx))                                    \
    X(void, lua_rawget, (lua_State * L, int idx))                                 \
    X(void, lua_rawgeti, (lua_State * L, int idx, int n))                         \
    X(void, lua_rawset, (lua_State * L, int idx))                                 \
    X(void, lua_rawseti, (lua_State * L, int idx, int n))                         \
    X(double, lua_tonumber, (lua_State * L, int idx))                             \
    X(void, lua_pushnumber, (lua_State * L, double n))                            \
    X(void, lua_pushboolean, (lua_State * L, int b))                              \
    X(void, lua_concat, (lua_State * L, int n))                                   \
    X(int, lua_error, (lua_State * L))                                            \
    X(void, luaL_where, (lua_State * L, int lvl))                                 \
    X(void, lua_insert, (lua_State * L, int idx))

#define DECLARE(ret, name, args) static ret(*p_##name) args;
API(DECLARE)
#undef DECLARE

static int bound = 0;

/* -- counting ---------------------------------------------------------------------------- */

/* Shared by the functions of one Lua state (an upvalue): steps not yet charged. */
typedef struct {
    long pending;
    long step; /* steps per call of `charge` (INSTRUCTIONS_STEP) */
} Counter;

/* The recursion of the matcher is bounded (stock 5.1 is bounded only by the C stack). */
#define MATCH_DEPTH_MAX 2000
#define CAPTURES_MAX 32 /* LUA_MAXCAPTURES */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define ESC '%'

typedef struct {
    const char *src_init;
    const char *src_end;
    lua_State *L;
    Counter *counter;
    int charge_at; /* the pseudo-index of the `charge` function */
    int depth;
    int level;
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[CAPTURES_MAX];
} Match;

static void charge_now(lua_State *L, Counter *counter, int charge_at) {
    long whole = counter->pending / counter->step;
    counter->pending -= whole * counter->step;
    p_lua_pushvalue(L, charge_at);
    p_lua_pushinteger(L, (lua_Integer)whole);
    p_lua_call(L, 1, 0); /* may raise: nothing here holds memory of its own */
}

static inline void spend(Match *m, long n) {
    m->counter->pending += n;
    if (m->counter->pending >= m->counter->step) charge_now(m->L, m->counter, m->charge_at);
}

/* -- character classes, as the C locale has them ---------------------------------------- */

enum { C_ALPHA = 1, C_CNTRL = 2, C_DIGIT = 4, C_LOWER = 8, C_PUNCT = 16, C_SPACE = 32,
       C_UPPER = 64, C_XDIGIT = 128 };
static unsigned char classes[256];

static void init_classes(void) {
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        if (c >= 'a' && c <= 'z') k |= C_ALPHA | C_LOWER;
        if (c >= 'A' && c <= 'Z') k |= C_ALPHA | C_UPPER;
        if (c >= '0' && c <= '9') k |= C_DIGIT | C_XDIGIT;
        if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) k |= C_XDIGIT;
        if (c < 32 || c == 127) k |= C_CNTRL;
        if (c == ' ' || (c >= '\t' && c <= '\r')) k |= C_SPACE;
        if (c > 32 && c < 127 && !(k & (C_ALPHA | C_DIGIT))) k |= C_PUNCT;
        classes[c] = k;
    }
}

static int lower_ascii(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* Whether c is in the class named by letter cl (%a ...; upper case: the complement). */
static int in_class(int c, int cl) {
    int yes;
    switch (lower_ascii(cl)) {
        case 'a': yes = classes[c] & C_ALPHA; break;
        case 'c': yes = classes[c] & C_CNTRL; break;
        case 'd': yes = classes[c] & C_DIGIT; break;
        case 'l': yes = classes[c] & C_LOWER; break;
        case 'p': yes = classes[c] & C_PUNCT; break;
        case 's': yes = classes[c] & C_SPACE; break;
        case 'u': yes = classes[c] & C_UPPER; break;
        case 'w': yes = classes[c] & (C_ALPHA | C_DIGIT); break;
        case 'x': yes = classes[c] & C_XDIGIT; break;
        case 'z': yes = (c == 0); break;
        default: return cl == c;
    }
    return (classes[cl] & C_LOWER) ? (yes != 0) : (yes == 0);
}

/* [set]: p at '[', last at its ']'. */
static int in_set(int c, const char *p, const char *last) {
    int found = 1;
    if (p[1] == '^') {
        found = 0;
        p++;
    }
    while (++p < last) {
        if (*p == ESC) {
            p++;
            if (in_class(c, (unsigned char)*p)) return found;
        } else if (p[1] == '-' && p + 2 < last) {
            if ((unsigned char)*p <= c && c <= (unsigned char)p[2]) return found;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return found;
        }
    }
    return !found;
}

/* The end of the single-character item at p (the place of its quantifier, if any). */
static const char *item_end(Match *m, const char *p) {
    char first = *p++;
    if (first == ESC) {
        if (*p == '\0') p_luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (first == '[') {
        if (*p == '^') p++;
        do {
            if (*p == '\0') p_luaL_error(m->L, "malformed pattern (missing ']')");
            if (*p++ == ESC && *p != '\0') p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

static int item_matches(int c, const char *p, const char *ep) {
    switch (*p) {
        case '.': return 1;
        case ESC: return in_class(c, (unsigned char)p[1]);
        case '[': return in_set(c, p, ep - 1);
        default: return (unsigned char)*p == c;
    }
}

/* -- the matcher ------------------------------------------------------------------------ */

static const char *do_match(Match *m, const char *s, const char *p);

static const char *match(Match *m, const char *s, const char *p) {
    const char *r;
    if (++m->depth > MATCH_DEPTH_MAX) p_luaL_error(m->L, "pattern too complex");
    r = do_match(m, s, p);
    m->depth--;
    return r;
}

static const char *greedy(Match *m, const char *s, const char *p, const char *ep) {
    ptrdiff_t n = 0;
    while (s + n < m->src_end && item_matches((unsigned char)s[n], p, ep)) n++;
    spend(m, n);
    for (; n >= 0; n--) {
        const char *r = match(m, s + n, ep + 1);
        if (r != NULL) return r;
    }
    return NULL;
}

static const char *lazy(Match *m, const char *s, const char *p, const char *ep) {
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r != NULL) return r;
        if (s < m->src_end && item_matches((unsigned char)*s, p, ep)) {
            s++;
            spend(m, 1);
        } else {
            return NULL;
        }
    }
}

static const char *balanced(Match *m, const char *s, const char *p) {
    const char *from = s;
    int open, close, depth = 1;
    if (p[0] == '\0' || p[1] == '\0') p_luaL_error(m->L, "unbalanced pattern");
    if (s >= m->src_end || *s != p[0]) return NULL;
    open = p[0];
    close = p[1];
    while (++s < m->src_end) {
        if (*s == close) {
            if (--depth == 0) {
                spend(m, s - from);
                return s + 1;
            }
        } else if (*s == open) {
            depth++;
        }
    }
    spend(m, s - from);
    return NULL;
}

static int capture_index(Match *m, int digit) {
    int i = digit - '1';
    if (i < 0 || i >= m->level || m->capture[i].len == CAP_UNFINISHED)
        return p_luaL_error(m->L, "invalid capture index");
    return i;
}

static const char *do_match(Match *m, const char *s, const char *p) {
    for (;;) {
        spend(m, 1);
        switch (*p) {
            case '(': {
                const char *r;
                int at = m->level;
                if (at >= CAPTURES_MAX) p_luaL_error(m->L, "too many captures");
                m->capture[at].init = s;
                if (p[1] == ')') {
                    m->capture[at].len = CAP_POSITION;
                    p += 2;
                } else {
                    m->capture[at].len = CAP_UNFINISHED;
                    p += 1;
                }
                m->level = at + 1;
                r = match(m, s, p);
                if (r == NULL) m->level--;
                return r;
            }
            case ')': {
                const char *r;
                int at = m->level - 1;
                while (at >= 0 && m->capture[at].len != CAP_UNFINISHED) at--;
                if (at < 0) p_luaL_error(m->L, "invalid pattern capture");
                m->capture[at].len = s - m->capture[at].init;
                r = match(m, s, p + 1);
                if (r == NULL) m->capture[at].len = CAP_UNFINISHED;
                return r;
            }
            case '\0':
                return s;
            case '$':
                if (p[1] == '\0') return s == m->src_end ? s : NULL;
                break;
            case ESC:
                if (p[1] == 'b') {
                    s = balanced(m, s, p + 2);
                    if (s == NULL) return NULL;
                    p += 4;
                    continue;
                }
                if (p[1] == 'f') {
                    const char *ep;
                    int before;
                    p += 2;
                    if (*p != '[') p_luaL_error(m->L, "missing '[' after '%%f' in pattern");
                    ep = item_end(m, p);
                    before = (s == m->src_init) ? 0 : (unsigned char)s[-1];
                    /* (at the end, the subject's terminating NUL is the next character) */
                    if (in_set(before, p, ep - 1) || !in_set((unsigned char)*s, p, ep - 1))
                        return NULL;
                    p = ep;
                    continue;
                }
                if (p[1] >= '0' && p[1] <= '9') {
                    int i = capture_index(m, (unsigned char)p[1]);
                    size_t len = (size_t)m->capture[i].len;
                    if ((size_t)(m->src_end - s) < len || memcmp(m->capture[i].init, s, len) != 0)
                        return NULL;
                    spend(m, (long)len);
                    s += len;
                    p += 2;
                    continue;
                }
                break;
            default:
                break;
        }
        /* a single-character item, perhaps quantified */
        {
            const char *ep = item_end(m, p);
            int ok = s < m->src_end && item_matches((unsigned char)*s, p, ep);
            switch (*ep) {
                case '?': {
                    const char *r;
                    if (ok && (r = match(m, s + 1, ep + 1)) != NULL) return r;
                    p = ep + 1;
                    continue;
                }
                case '*':
                    return greedy(m, s, p, ep);
                case '+':
                    return ok ? greedy(m, s + 1, p, ep) : NULL;
                case '-':
                    return lazy(m, s, p, ep);
                default:
                    if (!ok) return NULL;
                    s++;
                    p = ep;
                    continue;
            }
        }
    }
}

/* -- captures ---------------------------------------------------------------------------- */

static void push_capture(Match *m, int i, const char *s, const char *e) {
    if (i >= m->level) {
        if (i != 0) p_luaL_error(m->L, "invalid capture index");
        p_lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    if (m->capture[i].len == CAP_UNFINISHED) p_luaL_error(m->L, "unfinished capture");
    if (m->capture[i].len == CAP_POSITION)
        p_lua_pushinteger(m->L, m->capture[i].init - m->src_init + 1);
    else
        p_lua_pushlstring(m->L, m->capture[i].init, (size_t)m->capture[i].len);
}

/* The captures (or the whole match, s..e, when there are none and s is given). */
static int push_captures(Match *m, const char *s, const char *e) {
    int n = (m->level == 0 && s != NULL) ? 1 : m->level;
    p_luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++) push_capture(m, i, s, e);
    return n;
}

static void start(Match *m, lua_State *L, const char *s, size_t len, int charge_at,
                  int counter_at) {
    m->L = L;
    m->src_init = s;
    m->src_end = s + len;
    m->counter = (Counter *)p_lua_touserdata(L, counter_at);
    m->charge_at = charge_at;
    m->depth = 0;
    m->level = 0;
}

/* -- find, match ------------------------------------------------------------------------- */

#define UP_CHARGE lua_upvalueindex(1)
#define UP_COUNTER lua_upvalueindex(2)

static const char *plain_find(Match *m, const char *s, size_t n, const char *what, size_t k) {
    const char *end, *at;
    if (k == 0) return s;
    if (k > n) return NULL;
    end = s + (n - k) + 1; /* (the last place a match can begin, plus one) */
    at = s;
    while (at < end) {
        const char *hit = memchr(at, *what, (size_t)(end - at));
        if (hit == NULL) break;
        spend(m, (hit - at) / 16 + 1);
        if (memcmp(hit + 1, what + 1, k - 1) == 0) return hit;
        at = hit + 1;
    }
    spend(m, (end - at) / 16);
    return NULL;
}

static int find_or_match(lua_State *L, int find) {
    size_t len, plen;
    const char *s = p_luaL_checklstring(L, 1, &len);
    const char *p = p_luaL_checklstring(L, 2, &plen);
    lua_Integer init = p_luaL_optinteger(L, 3, 1);
    Match m;
    if (init < 0) init += (lua_Integer)len + 1;
    if (init < 0) init = 0;
    init -= 1;
    if (init < 0) init = 0;
    else if ((size_t)init > len) init = (lua_Integer)len;
    start(&m, L, s, len, UP_CHARGE, UP_COUNTER);
    if (find && (p_lua_toboolean(L, 4) || strpbrk(p, "^$*+?.([%-") == NULL)) {
        const char *at = plain_find(&m, s + init, len - (size_t)init, p, plen);
        if (at != NULL) {
            p_lua_pushinteger(L, at - s + 1);
            p_lua_pushinteger(L, at - s + (lua_Integer)plen);
            return 2;
        }
    } else {
        int anchored = (*p == '^');
        const char *from = s + init;
        if (anchored) p++;
        do {
            const char *e;
            m.level = 0;
            m.depth = 0;
            if ((e = match(&m, from, p)) != NULL) {
                if (find) {
                    p_lua_pushinteger(L, from - s + 1);
                    p_lua_pushinteger(L, e - s);
                    return push_captures(&m, NULL, NULL) + 2;
                }
                return push_captures(&m, from, e);
            }
        } while (from++ < m.src_end && !anchored);
    }
    p_lua_pushnil(L);
    return 1;
}

static int l_find(lua_State *L) { return find_or_match(L, 1); }
static int l_match(lua_State *L) { return find_or_match(L, 0); }

/* -- gmatch ------------------------------------------------------------------------------ */

/* upvalues: subject, pattern, next start (0-based), charge, counter */
static int gmatch_next(lua_State *L) {
    size_t len;
    const char *s = p_lua_tolstring(L, lua_upvalueindex(1), &len);
    const char *p = p_lua_tolstring(L, lua_upvalueindex(2), NULL);
    const char *from;
    Match m;
    start(&m, L, s, len, lua_upvalueindex(4), lua_upvalueindex(5));
    for (from = s + (size_t)p_lua_tointeger(L, lua_upvalueindex(3)); from <= m.src_end; from++) {
        const char *e;
        m.level = 0;
        m.depth = 0;
        if ((e = match(&m, from, p)) != NULL) {
            lua_Integer next = e - s;
            if (e == from) next++; /* an empty match: move on by one */
            p_lua_pushinteger(L, next);
            p_lua_replace(L, lua_upvalueindex(3));
            return push_captures(&m, from, e);
        }
    }
    return 0;
}

static int l_gmatch(lua_State *L) {
    p_luaL_checklstring(L, 1, NULL);
    p_luaL_checklstring(L, 2, NULL);
    p_lua_settop(L, 2);
    p_lua_pushinteger(L, 0);
    p_lua_pushvalue(L, UP_CHARGE);
    p_lua_pushvalue(L, UP_COUNTER);
    p_lua_pushcclosure(L, gmatch_next, 5);
    return 1;
}

/* -- gsub -------------------------------------------------------------------------------- */

/* The result is built in a userdata kept at stack slot OUT (garbage collected if a
 * replacement function or the budget raises). */
#define OUT 5

typedef struct {
    char *data;
    size_t len, cap;
    int slot; /* the stack slot that holds the userdata of data */
} Out;

static void out_add(lua_State *L, Out *o, const char *s, size_t n) {
    if (o->cap - o->len < n) {
        size_t cap = o->cap ? o->cap : 64;
        char *bigger;
        while (cap - o->len < n) {
            if (cap > ((size_t)-1) / 2) p_luaL_error(L, "not enough memory");
            cap *= 2;
        }
        bigger = (char *)p_lua_newuserdata(L, cap);
        if (o->len) memcpy(bigger, o->data, o->len);
        p_lua_replace(L, o->slot); /* the old buffer is garbage from here */
        o->data = bigger;
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
}

/* Adds the string at the top of the stack, and pops it. */
static void out_add_top(lua_State *L, Out *o) {
    size_t n;
    const char *s = p_lua_tolstring(L, -1, &n);
    /* (the string stays referenced from the stack until it is copied) */
    out_add(L, o, s, n);
    p_lua_settop(L, -2);
}

static void add_template(Match *m, Out *o, const char *s, const char *e) {
    size_t n;
    const char *t = p_lua_tolstring(m->L, 3, &n);
    for (size_t i = 0; i < n; i++) {
        if (t[i] != ESC) {
            out_add(m->L, o, t + i, 1);
            continue;
        }
        i++; /* (a '%' at the end adds the string's terminating NUL, as stock Lua does) */
        if (t[i] < '0' || t[i] > '9') {
            out_add(m->L, o, t + i, 1);
        } else if (t[i] == '0') {
            out_add(m->L, o, s, (size_t)(e - s));
        } else {
            push_capture(m, t[i] - '1', s, e);
            out_add_top(m->L, o);
        }
    }
    spend(m, (long)n / 16);
}

static void add_replacement(Match *m, Out *o, const char *s, const char *e, int kind) {
    lua_State *L = m->L;
    if (kind == LUA_TNUMBER || kind == LUA_TSTRING) {
        add_template(m, o, s, e);
        return;
    }
    if (kind == LUA_TFUNCTION) {
        int n;
        p_lua_pushvalue(L, 3);
        n = push_captures(m, s, e);
        p_lua_call(L, n, 1);
    } else {
        push_capture(m, 0, s, e);
        p_lua_gettable(L, 3);
    }
    if (!p_lua_toboolean(L, -1)) {
        p_lua_settop(L, -2);
        out_add(L, o, s, (size_t)(e - s));
        return;
    }
    if (!p_lua_isstring(L, -1))
        p_luaL_error(L, "invalid replacement value (a %s)", p_lua_typename(L, p_lua_type(L, -1)));
    out_add_top(L, o);
}

static int l_gsub(lua_State *L) {
    size_t len;
    const char *src = p_luaL_checklstring(L, 1, &len);
    const char *p = p_luaL_checklstring(L, 2, NULL);
    int kind = p_lua_type(L, 3);
    int max = (int)p_luaL_optinteger(L, 4, (lua_Integer)(len + 1));
    int anchored = (*p == '^');
    int n = 0;
    Match m;
    Out o = {NULL, 0, 0, OUT};
    if (anchored) p++;
    if (!(kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION ||
          kind == LUA_TTABLE))
        p_luaL_argerror(L, 3, "string/function/table expected");
    p_lua_settop(L, 4);
    p_lua_pushnil(L); /* slot OUT */
    start(&m, L, src, len, UP_CHARGE, UP_COUNTER);
    while (n < max) {
        const char *e;
        m.level = 0;
        m.depth = 0;
        e = match(&m, src, p);
        if (e != NULL) {
            n++;
            add_replacement(&m, &o, src, e, kind);
        }
        if (e != NULL && e > src) {
            src = e;
        } else if (src < m.src_end) {
            out_add(L, &o, src, 1);
            src++;
        } else {
            break;
        }
        if (anchored) break;
    }
    out_add(L, &o, src, (size_t)(m.src_end - src));
    p_lua_pushlstring(L, o.data ? o.data : "", o.len);
    p_lua_pushinteger(L, n);
    return 2;
}

/* -- cmsgpack ---------------------------------------------------------------------------- */

/* The same encoding and decoding as the Python twin in cacheshim/scripting/libs.py
 * (cmsgpack_table), which pure-Python installs use; the two are compared by
 * tests/cacheshim/test_scripting.py. Like it, nothing here counts against the budget: the
 * work is linear in the data. */

#define MP_NESTING_MAX 16    /* deeper tables are packed as nil (lua-cmsgpack's) */
#define MP_DECODE_DEPTH_MAX 1000

/* An error as the Python twin raises it (through a Lua wrapper's error(message, 2)): the
 * position of the script's line that called the function, then the message. */
static int mp_error(lua_State *L, const char *message) {
    p_luaL_where(L, 1);
    p_lua_pushlstring(L, message, strlen(message));
    p_lua_concat(L, 2);
    return p_lua_error(L);
}

static void mp_byte(lua_State *L, Out *o, unsigned char b) { out_add(L, o, (const char *)&b, 1); }

static void mp_be(lua_State *L, Out *o, unsigned char code, unsigned long long v, int width) {
    unsigned char buf[9];
    buf[0] = code;
    for (int i = 0; i < width; i++) buf[1 + i] = (unsigned char)(v >> (8 * (width - 1 - i)));
    out_add(L, o, (const char *)buf, (size_t)width + 1);
}

static void mp_int(lua_State *L, Out *o, long long n) {
    if (n >= 0 && n < 128) {
        mp_byte(L, o, (unsigned char)n);
    } else if (n < 0 && n >= -32) {
        mp_byte(L, o, (unsigned char)(n & 0xFF));
    } else if (n >= 0) {
        unsigned long long u = (unsigned long long)n;
        if (u < 0x100ULL) mp_be(L, o, 0xCC, u, 1);
        else if (u < 0x10000ULL) mp_be(L, o, 0xCD, u, 2);
        else if (u < 0x100000000ULL) mp_be(L, o, 0xCE, u, 4);
        else mp_be(L, o, 0xCF, u, 8);
    } else {
        unsigned long long u = (unsigned long long)n;
        if (n >= -128) mp_be(L, o, 0xD0, u & 0xFF, 1);
        else if (n >= -32768) mp_be(L, o, 0xD1, u & 0xFFFF, 2);
        else if (n >= -2147483648LL) mp_be(L, o, 0xD2, u & 0xFFFFFFFFULL, 4);
        else mp_be(L, o, 0xD3, u, 8);
    }
}

static void mp_header(lua_State *L, Out *o, size_t n, unsigned char fix, unsigned char b16,
                      unsigned char b32) {
    if (n < 16) mp_byte(L, o, (unsigned char)(fix | n));
    else if (n < 65536) mp_be(L, o, b16, n, 2);
    else mp_be(L, o, b32, n, 4);
}

static void mp_encode(lua_State *L, Out *o, int at, int depth);

/* A table: an array when its keys are exactly the integers 1..n, else a map. */
static void mp_table(lua_State *L, Out *o, int at, int depth) {
    size_t count = 0;
    int array = 1;
    p_luaL_checkstack(L, 3, "too many nested tables");
    p_lua_pushnil(L);
    while (p_lua_next(L, at)) {
        count++;
        p_lua_settop(L, -2);
        if (array) {
            double k;
            if (p_lua_type(L, -1) != LUA_TNUMBER) {
                array = 0;
                continue;
            }
            k = p_lua_tonumber(L, -1);
            if (k < 1 || k >= 9.2e18 || k != (double)(long long)k) array = 0;
        }
    }
    if (array) {
        /* (all keys integral and >= 1, and count of them: each is <= count too only if they
         * are exactly 1..count; check the largest) */
        size_t i;
        for (i = 1; i <= count; i++) {
            p_lua_rawgeti(L, at, (int)i);
            if (p_lua_type(L, -1) == LUA_TNIL) {
                array = 0;
                p_lua_settop(L, -2);
                break;
            }
            p_lua_settop(L, -2);
        }
    }
    if (array) {
        mp_header(L, o, count, 0x90, 0xDC, 0xDD);
        for (size_t i = 1; i <= count; i++) {
            p_lua_rawgeti(L, at, (int)i);
            mp_encode(L, o, p_lua_gettop(L), depth + 1);
            p_lua_settop(L, -2);
        }
        return;
    }
    mp_header(L, o, count, 0x80, 0xDE, 0xDF);
    p_lua_pushnil(L);
    while (p_lua_next(L, at)) {
        int top = p_lua_gettop(L);
        mp_encode(L, o, top - 1, depth + 1);
        mp_encode(L, o, top, depth + 1);
        p_lua_settop(L, -2);
    }
}

static void mp_encode(lua_State *L, Out *o, int at, int depth) {
    switch (p_lua_type(L, at)) {
        case LUA_TBOOLEAN:
            mp_byte(L, o, p_lua_toboolean(L, at) ? 0xC3 : 0xC2);
            return;
        case LUA_TNUMBER: {
            double v = p_lua_tonumber(L, at);
            if (v == v && v >= -9223372036854775808.0 && v < 9223372036854775808.0 &&
                v == (double)(long long)v) {
                mp_int(L, o, (long long)v);
            } else if ((double)(float)v == v) { /* (NaN: a double) */
                float f = (float)v;
                unsigned int bits;
                memcpy(&bits, &f, 4);
                mp_be(L, o, 0xCA, bits, 4);
            } else {
                unsigned long long bits;
                memcpy(&bits, &v, 8);
                mp_be(L, o, 0xCB, bits, 8);
            }
            return;
        }
        case LUA_TSTRING: {
            size_t n;
            const char *s = p_lua_tolstring(L, at, &n);
            if (n < 32) mp_byte(L, o, (unsigned char)(0xA0 | n));
            else if (n < 256) mp_be(L, o, 0xD9, n, 1);
            else if (n < 65536) mp_be(L, o, 0xDA, n, 2);
            else mp_be(L, o, 0xDB, n, 4);
            out_add(L, o, s, n);
            return;
        }
        case LUA_TTABLE:
            if (depth < MP_NESTING_MAX) {
                mp_table(L, o, at, depth);
                return;
            }
            break;
        default:
            break;
    }
    mp_byte(L, o, 0xC0);
}

static int l_mp_pack(lua_State *L) {
    int n = p_lua_gettop(L);
    Out o = {NULL, 0, 0, 0};
    if (n == 0) return p_luaL_argerror(L, 0, "MessagePack pack needs input.");
    p_lua_pushnil(L); /* the output's slot: n + 1 */
    o.slot = n + 1;
    for (int i = 1; i <= n; i++) mp_encode(L, &o, i, 0);
    p_lua_pushlstring(L, o.data ? o.data : "", o.len);
    return 1;
}

typedef struct {
    lua_State *L;
    const unsigned char *data;
    size_t len;
    int depth;
} Input;

/* Up to `width` bytes at pos, big-endian (fewer when the data ends first, as the Python twin
 * reads a short slice), and how many there were. */
static unsigned long long mp_read(const Input *in, size_t pos, int width, int *got) {
    unsigned long long v = 0;
    int n = 0;
    while (n < width && pos + (size_t)n < in->len) v = (v << 8) | in->data[pos + (size_t)n++];
    *got = n;
    return v;
}

static size_t mp_decode(Input *in, size_t pos);

static size_t mp_array(Input *in, size_t pos, unsigned long long n) {
    lua_State *L = in->L;
    int at;
    p_lua_createtable(L, n < 1024 ? (int)n : 1024, 0);
    at = p_lua_gettop(L);
    for (unsigned long long i = 1; i <= n; i++) {
        pos = mp_decode(in, pos);
        p_lua_rawseti(L, at, (int)i);
    }
    return pos;
}

static size_t mp_map(Input *in, size_t pos, unsigned long long n) {
    lua_State *L = in->L;
    int at;
    p_lua_createtable(L, 0, n < 1024 ? (int)n : 1024);
    at = p_lua_gettop(L);
    for (unsigned long long i = 0; i < n; i++) {
        pos = mp_decode(in, pos);
        pos = mp_decode(in, pos);
        if (p_lua_type(L, -2) == LUA_TNIL) p_lua_settop(L, -3);
        else p_lua_rawset(L, at);
    }
    return pos;
}

static size_t mp_string(Input *in, size_t pos, unsigned long long n) {
    size_t avail = pos < in->len ? in->len - pos : 0;
    p_lua_pushlstring(in->L, (const char *)in->data + (pos < in->len ? pos : in->len),
                      n < avail ? (size_t)n : avail);
    return pos + (size_t)n;
}

/* Decodes the value at pos onto the stack: the position after it. */
static size_t mp_decode(Input *in, size_t pos) {
    lua_State *L = in->L;
    unsigned char b;
    int got;
    size_t end;
    if (pos >= in->len) mp_error(L, "Missing bytes in input.");
    if (++in->depth > MP_DECODE_DEPTH_MAX) mp_error(L, "Bad data format in input.");
    p_luaL_checkstack(L, 4, "too many nested levels");
    b = in->data[pos++];
    end = pos;
    if (b < 0x80) {
        p_lua_pushinteger(L, b);
    } else if (b >= 0xE0) {
        p_lua_pushinteger(L, (lua_Integer)b - 256);
    } else if (b >= 0xA0 && b < 0xC0) {
        end = mp_string(in, pos, b & 0x1F);
    } else if (b >= 0x90 && b < 0xA0) {
        end = mp_array(in, pos, b & 0x0F);
    } else if (b >= 0x80 && b < 0x90) {
        end = mp_map(in, pos, b & 0x0F);
    } else {
        switch (b) {
            case 0xC0: p_lua_pushnil(L); break;
            case 0xC2: p_lua_pushboolean(L, 0); break;
            case 0xC3: p_lua_pushboolean(L, 1); break;
            case 0xCC: case 0xCD: case 0xCE: case 0xCF: {
                int width = 1 << (b - 0xCC);
                p_lua_pushnumber(L, (double)mp_read(in, pos, width, &got));
                end = pos + (size_t)width;
                break;
            }
            case 0xD0: case 0xD1: case 0xD2: case 0xD3: {
                int width = 1 << (b - 0xD0);
                unsigned long long u = mp_read(in, pos, width, &got);
                long long v;
                if (got == 0) v = 0;
                else if (got == 8) v = (long long)u;
                else if (u >> (8 * got - 1)) v = (long long)u - (1LL << (8 * got));
                else v = (long long)u;
                p_lua_pushnumber(L, (double)v);
                end = pos + (size_t)width;
                break;
            }
            case 0xCA: case 0xCB: {
                int width = b == 0xCA ? 4 : 8;
                unsigned long long u = mp_read(in, pos, width, &got);
                if (got < width) mp_error(L, "Missing bytes in input.");
                if (width == 4) {
                    unsigned int bits = (unsigned int)u;
                    float f;
                    memcpy(&f, &bits, 4);
                    p_lua_pushnumber(L, (double)f);
                } else {
                    double d;
                    memcpy(&d, &u, 8);
                    p_lua_pushnumber(L, d);
                }
                end = pos + (size_t)width;
                break;
            }
            case 0xD9: case 0xDA: case 0xDB: case 0xC4: case 0xC5: case 0xC6: {
                int width = (b == 0xD9 || b == 0xC4) ? 1 : (b == 0xDA || b == 0xC5) ? 2 : 4;
                unsigned long long n = mp_read(in, pos, width, &got);
                end = mp_string(in, pos + (size_t)width, n);
                break;
            }
            case 0xDC: case 0xDD: {
                int width = b == 0xDC ? 2 : 4;
                unsigned long long n = mp_read(in, pos, width, &got);
                end = mp_array(in, pos + (size_t)width, n);
                break;
            }
            case 0xDE: case 0xDF: {
                int width = b == 0xDE ? 2 : 4;
                unsigned long long n = mp_read(in, pos, width, &got);
                end = mp_map(in, pos + (size_t)width, n);
                break;
            }
            default:
                mp_error(L, "Bad data format in input.");
        }
    }
    in->depth--;
    return end;
}

/* Decodes from offset: up to limit values (0: all), pushed; returns how many, and sets *next
 * to the position after the last. */
static int mp_unpack_from(lua_State *L, Input *in, size_t offset, long long limit, size_t *next) {
    int count = 0;
    size_t pos = offset;
    while (pos < in->len && (limit <= 0 || count < limit)) {
        if (!p_lua_checkstack(L, 8))
            mp_error(L, "too many return values at once; use unpack_one or unpack_limit instead.");
        in->depth = 0;
        pos = mp_decode(in, pos);
        count++;
    }
    *next = pos;
    return count;
}

static int l_mp_unpack(lua_State *L) {
    Input in;
    size_t next;
    if (p_lua_gettop(L) != 1 || p_lua_type(L, 1) != LUA_TSTRING)
        return mp_error(L, "bad argument #1 to 'unpack' (string expected)");
    in.L = L;
    in.data = (const unsigned char *)p_lua_tolstring(L, 1, &in.len);
    return mp_unpack_from(L, &in, 0, 0, &next);
}

static int mp_limited(lua_State *L, long long limit) {
    Input in;
    size_t next;
    double offset;
    int count;
    if (p_lua_type(L, 1) != LUA_TSTRING)
        return mp_error(L, "bad argument #1 to 'unpack_limit' (string expected)");
    in.L = L;
    in.data = (const unsigned char *)p_lua_tolstring(L, 1, &in.len);
    offset = p_lua_tonumber(L, 3);
    if (offset < 0 || limit < 0) {
        char text[120];
        snprintf(text, sizeof text, "Invalid request to unpack with offset of %d and limit of %d.",
                 (int)offset, (int)in.len); /* (the length, as lua-cmsgpack words it) */
        return mp_error(L, text);
    }
    if (offset > (double)in.len) {
        char text[120];
        snprintf(text, sizeof text, "Start offset %d greater than input length %d.", (int)offset,
                 (int)in.len);
        return mp_error(L, text);
    }
    p_lua_settop(L, 3);
    p_lua_pushnil(L); /* (the next offset's place, set below) */
    count = mp_unpack_from(L, &in, (size_t)offset, limit, &next);
    p_lua_pushinteger(L, next < in.len ? (lua_Integer)next : -1);
    p_lua_replace(L, 4);
    return count + 1;
}

static int l_mp_unpack_limit(lua_State *L) {
    double limit = p_lua_tonumber(L, 2);
    return mp_limited(L, (long long)limit);
}

static int l_mp_unpack_one(lua_State *L) {
    p_lua_settop(L, 2);
    p_lua_pushvalue(L, 2); /* offset: third, as unpack_limit has it */
    return mp_limited(L, 1);
}

/* luaopen_memlog_cmsgpack(): the table of pack, unpack, unpack_one, unpack_limit. */
__attribute__((visibility("default"))) int luaopen_memlog_cmsgpack(lua_State *L) {
    static const struct {
        const char *name;
        lua_CFunction fn;
    } functions[] = {{"pack", l_mp_pack},
                     {"unpack", l_mp_unpack},
                     {"unpack_one", l_mp_unpack_one},
                     {"unpack_limit", l_mp_unpack_limit}};
    if (!bound) return 0;
    p_lua_createtable(L, 0, 4);
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
        p_lua_pushcclosure(L, functions[i].fn, 0);
        p_lua_setfield(L, -2, functions[i].name);
    }
    return 1;
}

/* -- redis.call with many arguments ------------------------------------------------------- */

/* lupa refuses a call into Python with more than about 7,990 arguments (Lua's stack holds
 * 8,000), where redis-server takes `redis.call('lpush', 'l', unpack(t))` with 7,999 elements.
 * redis.call and redis.pcall are this C function over the Python callable (upvalue 1): it
 * passes few arguments as they are, many as one table (to upvalue 2, with their count). Being
 * C, it keeps the script's frame in a `return redis.call(...)`, as the Python callable did. */
#define ARGS_DIRECT_MAX 4000

static int l_many_args(lua_State *L) {
    int n = p_lua_gettop(L);
    if (n <= ARGS_DIRECT_MAX) {
        p_lua_pushvalue(L, lua_upvalueindex(1));
        p_lua_insert(L, 1);
        p_lua_call(L, n, -1 /* LUA_MULTRET */);
        return p_lua_gettop(L);
    }
    p_lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        p_lua_pushvalue(L, i);
        p_lua_rawseti(L, n + 1, i);
    }
    p_lua_pushvalue(L, lua_upvalueindex(2));
    p_lua_insert(L, n + 1);
    p_lua_pushinteger(L, n);
    p_lua_call(L, 2, -1);
    return p_lua_gettop(L) - n;
}

/* luaopen_memlog_many(): a function that makes l_many_args over (callable, table_callable). */
static int l_many_make(lua_State *L) {
    p_lua_settop(L, 2);
    p_lua_pushcclosure(L, l_many_args, 2);
    return 1;
}

__attribute__((visibility("default"))) int luaopen_memlog_many(lua_State *L) {
    if (!bound) return 0;
    p_lua_pushcclosure(L, l_many_make, 0);
    return 1;
}

/* -- reset, opening ---------------------------------------------------------------------- */

/* Drops steps not yet charged (at the start of each script call). */
static int l_reset(lua_State *L) {
    Counter *counter = (Counter *)p_lua_touserdata(L, UP_COUNTER);
    counter->pending = 0;
    return 0;
}

/* luaopen_memlog_lstr(charge, step): a table of find, match, gmatch, gsub, reset. */
__attribute__((visibility("default"))) int luaopen_memlog_lstr(lua_State *L) {
    static const struct {
        const char *name;
        lua_CFunction fn;
    } functions[] = {{"find", l_find},   {"match", l_match}, {"gmatch", l_gmatch},
                     {"gsub", l_gsub},   {"reset", l_reset}};
    Counter *counter;
    lua_Integer step;
    if (!bound) return 0;
    step = p_lua_tointeger(L, 2);
    p_lua_settop(L, 1); /* charge */
    counter = (Counter *)p_lua_newuserdata(L, sizeof(Counter));
    counter->pending = 0;
    counter->step = step > 0 ? (long)step : 1;
    p_lua_createtable(L, 0, 5);
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
        p_lua_pushvalue(L, 1);
        p_lua_pushvalue(L, 2);
        p_lua_pushcclosure(L, functions[i].fn, 2);
        p_lua_setfield(L, 3, functions[i].name);
    }
    return 1;
}

/* -- the Python side --------------------------------------------------------------------- */

static PyObject *py_bind(PyObject *self, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg);
    void *lib;
    (void)self;
    if (path == NULL) return NULL;
    lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_Format(PyExc_ImportError, "not loaded: %s", path);
        return NULL;
    }
#define LOOKUP(ret, name, args)                                              \
    p_##name = (ret(*) args)dlsym(lib, #name);                               \
    if (p_##name == NULL) {                                                  \
        dlclose(lib);                                                        \
        PyErr_Format(PyExc_ImportError, "%s has no %s", path, #name);        \
        return NULL;                                                         \
    }
    API(LOOKUP)
#undef LOOKUP
    /* (the handle stays open: the library stays loaded as long as Python runs anyway) */
    init_classes();
    bound = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", py_bind, METH_O,
     "bind(path): look up the Lua 5.1 C API in the loaded library at path (lupa.lua51)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lstr",
    "Lua 5.1's pattern functions with a step count (see the C source's comment).", -1, methods,
};

PyMODINIT_FUNC PyInit__lstr(void) { return PyModule_Create(&module); }
