/* The hot path's C helpers (monitor/fastdecode.py, monitor/epochs.py).
 *
 * Parser: a compiled schema's feature parser. Parser.split() takes a batch envelope in one
 * pass: every "features": {...} object is parsed into a row of one row-major float64 block
 * (numeric features; null is NaN) and one list per categorical feature, and replaced by its
 * row number, so that msgspec decodes the rest of the envelope without going over the features
 * again. Parser.parse() does the same for features that msgspec left raw (single lines). A
 * features object is taken when it holds exactly what the compiled schema allows: every
 * feature once, a number or null for a numeric feature, a category of the feature's kind (any
 * string, a string of a closed set, or a bool) or null for a categorical one, no other key.
 * Anything else sends the event (or its envelope) to the general decoder, so this path is
 * narrower than the schema, never wider. Numbers are converted exactly (correctly rounded):
 * Clinger's fast path when the decimal mantissa and power of ten are exact doubles, CPython's
 * dtoa otherwise; -0 is the integer 0, as json.loads reads it.
 *
 * attach() gives each event a FeatureRow (block, index) in place of its features; gather()
 * turns the rows of a window back into feature-major columns: no per-value Python object is
 * made for numeric features anywhere on this path. epochs() gives datetime.timestamp() of UTC
 * datetimes without a Python call per datetime.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <datetime.h>
#include <math.h>
#include <string.h> /* memmem: _GNU_SOURCE comes with pyconfig.h */

/* ------------------------------------------------------------------ FeatureRow */

typedef struct {
    PyObject_HEAD
    PyObject *block;
    Py_ssize_t index;
} FeatureRow;

static void
FeatureRow_dealloc(FeatureRow *self)
{
    /* Not tracked by the garbage collector: a row refers to its block, which holds numbers
     * and categories only, so no cycle can pass through it. */
    PyTypeObject *tp = Py_TYPE(self);
    Py_CLEAR(self->block);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
FeatureRow_init(FeatureRow *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block", "index", NULL};
    PyObject *block;
    Py_ssize_t index;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", kwlist, &block, &index))
        return -1;
    Py_INCREF(block);
    Py_XSETREF(self->block, block);
    self->index = index;
    return 0;
}

static PyMemberDef FeatureRow_members[] = {
    {"block", T_OBJECT, offsetof(FeatureRow, block), READONLY, "the batch's block"},
    {"index", T_PYSSIZET, offsetof(FeatureRow, index), READONLY, "the row in the block"},
    {NULL},
};

static PyType_Slot FeatureRow_slots[] = {
    {Py_tp_doc, "One event's features: row ``index`` of a parsed batch's ``block``."},
    {Py_tp_dealloc, FeatureRow_dealloc},
    {Py_tp_init, FeatureRow_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_members, FeatureRow_members},
    {0, NULL},
};

static PyType_Spec FeatureRow_spec = {
    .name = "monitor._featcols.FeatureRow",
    .basicsize = sizeof(FeatureRow),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = FeatureRow_slots,
};

static PyTypeObject *FeatureRowType = NULL;

/* ------------------------------------------------------------------ parsing */

typedef struct {
    const char *p;
    const char *end;
} Cursor;

static void
skip_ws_run(Cursor *c)
{
    while (c->p < c->end) {
        char ch = *c->p;
        if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
            c->p++;
        else
            break;
    }
}

/* Whitespace is rare in machine-written JSON: one comparison when there is none (every JSON
 * whitespace byte is <= ' '; any other such byte is an error found by the caller). */
static inline void
skip_ws(Cursor *c)
{
    if (c->p < c->end && (unsigned char)*c->p <= ' ')
        skip_ws_run(c);
}

/* Whether n bytes at a and b are equal, by overlapping 8- or 4-byte loads (keys are short). */
static inline int
same_bytes(const char *a, const char *b, Py_ssize_t n)
{
    uint64_t x, y;
    uint32_t u, v;
    if (n >= 8) {
        for (Py_ssize_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return 0;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        if (u != v)
            return 0;
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return u == v;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return 0;
    }
    return 1;
}

static int
hex4(const char *p, unsigned int *out)
{
    unsigned int v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned int)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned int)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned int)(ch - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* The UTF-8 bytes of the JSON string body s[0:len] (escapes resolved) into out, which has room
 * for len bytes (no escape is shorter than what it stands for); its length, or -1 when the
 * body is not valid JSON or holds a lone surrogate. */
static Py_ssize_t
unescape(const char *s, Py_ssize_t len, char *out)
{
    const char *end = s + len;
    char *o = out;
    while (s < end) {
        char ch = *s++;
        if (ch != '\\') {
            *o++ = ch;
            continue;
        }
        if (s >= end)
            return -1;
        ch = *s++;
        switch (ch) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned int cp;
            if (end - s < 4 || hex4(s, &cp) < 0)
                return -1;
            s += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned int lo;
                if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                s += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            if (cp < 0x80) {
                *o++ = (char)cp;
            }
            else if (cp < 0x800) {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            else {
                *o++ = (char)(0xF0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            return -1;
        }
    }
    return o - out;
}

/* Whether any of 8 bytes may be a quote, a backslash or a control character (a false
 * positive is possible, a false negative is not: the caller then looks byte by byte). */
static inline uint64_t
special8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"');
    uint64_t b = w ^ (ones * '\\');
    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & highs;
}

/* A JSON string starting at c->p (the opening quote): sets its UTF-8 bytes, with escapes
 * resolved into *scratch (grown as needed; the caller frees it) when it has any. */
static inline int
json_string(Cursor *c, const char **start, Py_ssize_t *len, char **scratch, Py_ssize_t *room)
{
    if (c->p >= c->end || *c->p != '"')
        return -1;
    const char *s = ++c->p;
    const char *q = s;
    const char *end = c->end;
    int escaped = 0;
    for (;;) {
        while (end - q >= 8) {
            uint64_t w;
            memcpy(&w, q, 8);
            if (special8(w))
                break;
            q += 8;
        }
        while (q < end && (unsigned char)*q >= 0x20 && *q != '"' && *q != '\\')
            q++;
        if (q >= end || (unsigned char)*q < 0x20)
            return -1; /* unterminated, or a control character (JSON escapes those) */
        if (*q == '"')
            break;
        escaped = 1; /* a backslash: skip what it escapes (checked by unescape) */
        q += 2;
        if (q > end)
            return -1;
    }
    c->p = q + 1;
    if (!escaped) {
        *start = s;
        *len = q - s;
        return 0;
    }
    if (*room < q - s) {
        char *grown = PyMem_Realloc(*scratch, (size_t)(q - s) + 1);
        if (grown == NULL)
            return -1;
        *scratch = grown;
        *room = q - s;
    }
    Py_ssize_t n = unescape(s, q - s, *scratch);
    if (n < 0)
        return -1;
    *start = *scratch;
    *len = n;
    return 0;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number at c->p into *out, correctly rounded; -1 when it is not a finite double, -2
 * with MemoryError set. */
static int
number(Cursor *c, double *out)
{
    const char *s = c->p;
    const char *p = s;
    const char *end = c->end;
    int neg = 0;
    uint64_t mant = 0;
    int digits = 0;     /* significant digits gathered into mant */
    int dropped = 0;    /* digits of the integer part beyond 19 */
    int exp10 = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end)
        return -1;
    if (*p == '0') {
        p++;
    }
    else if (*p >= '1' && *p <= '9') {
        const char *stop = end - p > 19 ? p + 19 : end;
        while (p < stop) {
            unsigned int d = (unsigned char)*p - '0';
            if (d > 9)
                break;
            mant = mant * 10 + d;
            p++;
        }
        digits = (int)(p - s) - neg;
        while (p < end && *p >= '0' && *p <= '9') {
            dropped++;
            p++;
        }
    }
    else {
        return -1;
    }
    int inexact = dropped > 0;
    int integer = 1; /* JSON integer syntax: read as an int, then made a float (so -0 is 0.0) */
    exp10 = dropped;
    if (p < end && *p == '.') {
        integer = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19 && !inexact) {
                if (mant != 0 || *p != '0')
                    digits += 1;
                mant = mant * 10 + (uint64_t)(*p - '0');
                exp10--;
            }
            else if (*p != '0') {
                inexact = 1;
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        int e = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 100000)
                e = e * 10 + (*p - '0');
            p++;
        }
        exp10 += eneg ? -e : e;
    }
    c->p = p;
    double v;
    if (!inexact && mant <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22) {
        v = (double)mant;
        if (exp10 < 0)
            v /= POW10[-exp10];
        else
            v *= POW10[exp10];
    }
    else {
        char buf[128];
        Py_ssize_t n = p - s;
        char *tmp = buf;
        if (n >= (Py_ssize_t)sizeof(buf)) {
            tmp = PyMem_Malloc(n + 1);
            if (tmp == NULL) {
                PyErr_NoMemory(); /* -2 promises an exception set */
                return -2;
            }
        }
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        char *stop = NULL;
        v = PyOS_string_to_double(tmp, &stop, NULL);
        int bad = (v == -1.0 && PyErr_Occurred()) || stop != tmp + n;
        if (tmp != buf)
            PyMem_Free(tmp);
        if (bad) {
            PyErr_Clear();
            return -1;
        }
        *out = v;
        return isfinite(v) ? 0 : -1;
    }
    *out = neg && !(integer && mant == 0) ? -v : v;
    return 0;
}

static inline int
literal(Cursor *c, const char *word, Py_ssize_t n)
{
    if (c->end - c->p < n || memcmp(c->p, word, n) != 0)
        return -1;
    c->p += n;
    return 0;
}

/* What parse() knows of one feature key. */
typedef struct {
    const char *key;
    Py_ssize_t len;
    int categorical;    /* 0: numeric */
    Py_ssize_t column;  /* numeric or categorical column */
    int kind;           /* categorical: 0 open str, 1 bool, 2 closed set */
    PyObject *set;      /* kind 2: tuple of the allowed str objects */
    int plain;          /* the key's JSON form is its UTF-8 bytes (nothing to escape) */
    PyObject **cache;   /* categorical: CACHE_SLOTS recent categories (items of a list) */
} Key;

/* Categories are looked up by a hash of their bytes among the last few seen in their column,
 * so a repeated category is the same str object every time (no allocation, and its hash is
 * computed once for every dict lookup that follows). */
#define CACHE_SLOTS 64

static inline Py_ssize_t
slot_of(const char *s, Py_ssize_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return (Py_ssize_t)((h ^ (h >> 16)) & (CACHE_SLOTS - 1));
}

/* The category with these UTF-8 bytes for key k (a new reference), or NULL with no error set
 * when it is not one (not UTF-8, or outside a closed set); -2 semantics via *failed. */
static PyObject *
category(Key *k, const char *s, Py_ssize_t n, int *failed)
{
    PyObject **slot = &k->cache[slot_of(s, n)];
    PyObject *cand = *slot;
    if (cand != Py_None && PyUnicode_IS_ASCII(cand) && PyUnicode_GET_LENGTH(cand) == n &&
        memcmp(PyUnicode_DATA(cand), s, n) == 0)
        return Py_NewRef(cand);
    PyObject *value = NULL;
    if (k->kind == 2) {
        Py_ssize_t m = PyTuple_GET_SIZE(k->set);
        for (Py_ssize_t i = 0; i < m; i++) {
            PyObject *member = PyTuple_GET_ITEM(k->set, i);
            Py_ssize_t mlen;
            const char *ms = PyUnicode_AsUTF8AndSize(member, &mlen);
            if (ms == NULL) {
                *failed = 1;
                return NULL;
            }
            if (mlen == n && memcmp(ms, s, n) == 0) {
                value = Py_NewRef(member);
                break;
            }
        }
        if (value == NULL)
            return NULL;
    }
    else {
        value = PyUnicode_DecodeUTF8(s, n, NULL);
        if (value == NULL) {
            PyErr_Clear(); /* not UTF-8: the general decoder says why */
            return NULL;
        }
    }
    Py_SETREF(*slot, Py_NewRef(value));
    return value;
}


/* Parse one features object into row r; 0, -1 (not for this path) or -2 (Python error). */
static int
parse_one(Cursor *c, Key *keys, Py_ssize_t nkeys, char *seen, double *row, PyObject **cats,
          Py_ssize_t r, char **scratch, Py_ssize_t *room)
{
    memset(seen, 0, nkeys);
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{')
        return -1;
    c->p++;
    skip_ws(c);
    Py_ssize_t count = 0;
    Py_ssize_t guess = 0;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
    }
    else {
        for (;;) {
            Py_ssize_t found = -1;
            /* Keys usually come in the schema's order: try the next one first, on the bytes. */
            if (guess < nkeys && keys[guess].plain) {
                Key *next = &keys[guess];
                if (c->end - c->p > next->len + 1 && c->p[0] == '"' &&
                    same_bytes(c->p + 1, next->key, next->len) && c->p[next->len + 1] == '"') {
                    found = guess;
                    c->p += next->len + 2;
                }
            }
            if (found < 0) {
                const char *k;
                Py_ssize_t klen;
                if (json_string(c, &k, &klen, scratch, room) < 0)
                    return -1;
                for (Py_ssize_t i = 0; i < nkeys; i++) {
                    if (keys[i].len == klen && memcmp(keys[i].key, k, klen) == 0) {
                        found = i;
                        break;
                    }
                }
            }
            if (found < 0 || seen[found])
                return -1;
            seen[found] = 1;
            guess = found + 1;
            count++;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return -1;
            c->p++;
            skip_ws(c);
            if (c->p >= c->end)
                return -1;
            Key *key = &keys[found];
            char ch = *c->p;
            if (!key->categorical) {
                if (ch == 'n') {
                    if (literal(c, "null", 4) < 0)
                        return -1;
                    row[key->column] = NAN;
                }
                else {
                    int rc = number(c, &row[key->column]);
                    if (rc < 0)
                        return rc;
                }
            }
            else {
                PyObject *value = NULL;
                if (ch == 'n') {
                    if (literal(c, "null", 4) < 0)
                        return -1;
                    value = Py_NewRef(Py_None);
                }
                else if (key->kind == 1) {
                    if (literal(c, "true", 4) == 0)
                        value = Py_NewRef(Py_True);
                    else if (literal(c, "false", 5) == 0)
                        value = Py_NewRef(Py_False);
                    else
                        return -1;
                }
                else {
                    const char *s;
                    Py_ssize_t slen;
                    if (json_string(c, &s, &slen, scratch, room) < 0)
                        return -1;
                    int failed = 0;
                    value = category(key, s, slen, &failed);
                    if (value == NULL)
                        return failed ? -2 : -1;
                }
                PyObject *list = cats[key->column];
                PyObject *old = PyList_GET_ITEM(list, r);
                PyList_SET_ITEM(list, r, value);
                Py_XDECREF(old);
            }
            skip_ws(c);
            if (c->p >= c->end)
                return -1;
            if (*c->p == ',') {
                c->p++;
                skip_ws(c);
                continue;
            }
            if (*c->p == '}') {
                c->p++;
                break;
            }
            return -1;
        }
    }
    return count == nkeys ? 0 : -1;
}

/* The members of a closed set that a JSON string can be: str with a UTF-8 form (their UTF-8 is
 * cached in them for category()); a member with a lone surrogate can match no valid input, and
 * looking up its UTF-8 would raise on every event. A new reference, or NULL with an error. */
static PyObject *
closed_set(PyObject *kind)
{
    Py_ssize_t m = PyTuple_GET_SIZE(kind), kept = 0;
    PyObject *set = PyTuple_New(m);
    if (set == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *member = PyTuple_GET_ITEM(kind, i);
        if (!PyUnicode_Check(member))
            continue;
        if (PyUnicode_AsUTF8AndSize(member, NULL) == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                Py_DECREF(set);
                return NULL;
            }
            PyErr_Clear();
            continue;
        }
        PyTuple_SET_ITEM(set, kept++, Py_NewRef(member));
    }
    PyObject *taken = PyTuple_GetSlice(set, 0, kept);
    Py_DECREF(set);
    return taken;
}

static void
release_keys(char *seen, Key *keys, Py_ssize_t n)
{
    PyMem_Free(seen);
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(keys[i].set);
    PyMem_Free(keys);
}

/* The Key of every feature (numeric ones first) and a seen-flag array, or NULL with an error. */
static Key *
setup_keys(PyObject *numeric, PyObject *categorical, PyObject *kinds, PyObject *cache,
           char **seen_out)
{
    Py_ssize_t f = PyTuple_GET_SIZE(numeric);
    Py_ssize_t g = PyTuple_GET_SIZE(categorical);
    Py_ssize_t nkeys = f + g;
    if (PyTuple_GET_SIZE(kinds) != g || PyList_GET_SIZE(cache) != g * CACHE_SLOTS) {
        PyErr_SetString(PyExc_ValueError,
                        "one kind per categorical feature and 64 cache slots for each");
        return NULL;
    }
    Key *keys = PyMem_Calloc(nkeys ? nkeys : 1, sizeof(Key));
    char *seen = PyMem_Malloc(nkeys ? nkeys : 1);
    if (keys == NULL || seen == NULL) {
        PyMem_Free(keys);
        PyMem_Free(seen);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nkeys; i++) {
        PyObject *name = i < f ? PyTuple_GET_ITEM(numeric, i) : PyTuple_GET_ITEM(categorical, i - f);
        const char *s = PyUnicode_AsUTF8AndSize(name, &keys[i].len);
        if (s == NULL) {
            /* A name with a lone surrogate has no UTF-8 form, so no JSON key is this feature:
             * every object lacks it and goes to the general decoder. */
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                release_keys(seen, keys, i);
                return NULL;
            }
            PyErr_Clear();
            s = "";
            keys[i].len = -1;
        }
        keys[i].key = s;
        keys[i].plain = keys[i].len >= 0;
        for (Py_ssize_t b = 0; b < keys[i].len; b++) {
            if ((unsigned char)s[b] < 0x20 || s[b] == '"' || s[b] == '\\')
                keys[i].plain = 0;
        }
        keys[i].categorical = i >= f;
        keys[i].column = i < f ? i : i - f;
        if (i >= f) {
            keys[i].cache = &PyList_GET_ITEM(cache, (i - f) * CACHE_SLOTS);
            PyObject *kind = PyTuple_GET_ITEM(kinds, i - f);
            if (kind == Py_None) {
                keys[i].kind = 0;
            }
            else if (kind == (PyObject *)&PyBool_Type) {
                keys[i].kind = 1;
            }
            else if (PyTuple_Check(kind)) {
                keys[i].kind = 2;
                keys[i].set = closed_set(kind);
                if (keys[i].set == NULL) {
                    release_keys(seen, keys, i);
                    return NULL;
                }
            }
            else {
                release_keys(seen, keys, i);
                PyErr_SetString(PyExc_TypeError, "a kind is None, bool or a tuple of str");
                return NULL;
            }
        }
    }
    *seen_out = seen;
    return keys;
}

/* ------------------------------------------------------------------ Parser */

/* A compiled schema's parser: its keys are set up once. */
typedef struct {
    PyObject_HEAD
    PyObject *numeric;      /* tuple of str (the keys point into their UTF-8) */
    PyObject *categorical;  /* tuple of str */
    PyObject *kinds;        /* tuple */
    PyObject *cache;        /* list of CACHE_SLOTS recent categories per categorical feature */
    Key *keys;
    char *seen;
    Py_ssize_t f, g, nkeys;
} Parser;

static void
Parser_dealloc(Parser *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->keys != NULL)
        release_keys(self->seen, self->keys, self->nkeys);
    Py_CLEAR(self->numeric);
    Py_CLEAR(self->categorical);
    Py_CLEAR(self->kinds);
    Py_CLEAR(self->cache);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
Parser_init(Parser *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"numeric", "categorical", "kinds", NULL};
    PyObject *numeric, *categorical, *kinds;
    if (self->keys != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Parser is set up once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!", kwlist, &PyTuple_Type, &numeric,
                                     &PyTuple_Type, &categorical, &PyTuple_Type, &kinds))
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(numeric) + PyTuple_GET_SIZE(categorical); i++) {
        PyObject *name = i < PyTuple_GET_SIZE(numeric)
                             ? PyTuple_GET_ITEM(numeric, i)
                             : PyTuple_GET_ITEM(categorical, i - PyTuple_GET_SIZE(numeric));
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "feature names must be str");
            return -1;
        }
    }
    Py_ssize_t g = PyTuple_GET_SIZE(categorical);
    PyObject *cache = PyList_New(g * CACHE_SLOTS);
    if (cache == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < g * CACHE_SLOTS; i++)
        PyList_SET_ITEM(cache, i, Py_NewRef(Py_None));
    self->numeric = Py_NewRef(numeric);
    self->categorical = Py_NewRef(categorical);
    self->kinds = Py_NewRef(kinds);
    self->cache = cache;
    self->f = PyTuple_GET_SIZE(numeric);
    self->g = g;
    self->nkeys = self->f + g;
    self->keys = setup_keys(numeric, categorical, kinds, cache, &self->seen);
    return self->keys == NULL ? -1 : 0;
}

static int
Parser_ready(Parser *self)
{
    if (self->keys == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Parser.__init__ was not called");
        return -1;
    }
    return 0;
}

/* Parser.parse(raws) -> (bytearray, tuple of lists, list of the indexes not taken) */
static PyObject *
Parser_parse(Parser *self, PyObject *raws)
{
    if (Parser_ready(self) < 0)
        return NULL;
    if (!PyList_Check(raws)) {
        PyErr_SetString(PyExc_TypeError, "raws must be a list");
        return NULL;
    }
    Py_ssize_t f = self->f, g = self->g, nkeys = self->nkeys;
    Py_ssize_t n = PyList_GET_SIZE(raws);
    char *seen = self->seen;
    Key *keys = self->keys;
    PyObject *values = PyByteArray_FromStringAndSize(NULL, n * f * (Py_ssize_t)sizeof(double));
    PyObject *cols = PyTuple_New(g);
    PyObject *failed = PyList_New(0);
    if (values == NULL || cols == NULL || failed == NULL)
        goto error;
    for (Py_ssize_t j = 0; j < g; j++) {
        PyObject *col = PyList_New(n);
        if (col == NULL)
            goto error;
        for (Py_ssize_t r = 0; r < n; r++)
            PyList_SET_ITEM(col, r, Py_NewRef(Py_None));
        PyTuple_SET_ITEM(cols, j, col);
    }
    double *block = (double *)PyByteArray_AS_STRING(values);
    char *scratch = NULL; /* escaped strings, resolved */
    Py_ssize_t room = 0;
    PyObject **catcols = &PyTuple_GET_ITEM(cols, 0);
    for (Py_ssize_t r = 0; r < n; r++) {
        Py_buffer view;
        int rc = -1;
        if (PyObject_GetBuffer(PyList_GET_ITEM(raws, r), &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear(); /* not raw JSON: not for this path */
        }
        else {
            Cursor c = {(const char *)view.buf, (const char *)view.buf + view.len};
            rc = parse_one(&c, keys, nkeys, seen, block + r * f, catcols, r, &scratch, &room);
            if (rc == 0) {
                skip_ws(&c);
                rc = c.p == c.end ? 0 : -1;
            }
            PyBuffer_Release(&view);
        }
        if (rc == -2) {
            PyMem_Free(scratch);
            goto error;
        }
        if (rc < 0) {
            PyObject *index = PyLong_FromSsize_t(r);
            if (index == NULL || PyList_Append(failed, index) < 0) {
                Py_XDECREF(index);
                PyMem_Free(scratch);
                goto error;
            }
            Py_DECREF(index);
        }
    }
    PyMem_Free(scratch);
    return Py_BuildValue("(NNN)", values, cols, failed);
error:
    Py_XDECREF(values);
    Py_XDECREF(cols);
    Py_XDECREF(failed);
    return NULL;
}

/* ------------------------------------------------------------------ timestamps */

/* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static inline int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* epochs(timestamps) -> bytearray of float64 | None
 *
 * datetime.timestamp() of every datetime, when each is a datetime (not a subclass) in UTC
 * (tzinfo is datetime.timezone.utc, as msgspec decodes "Z" and "+00:00") and within the
 * microseconds a float64 holds exactly; None otherwise. Equal to timestamp(): an exact count of
 * microseconds divided by 10**6 once, as its timedelta arithmetic does. */
static PyObject *
featcols_epochs(PyObject *module, PyObject *stamps)
{
    if (!PyList_Check(stamps)) {
        PyErr_SetString(PyExc_TypeError, "timestamps must be a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(stamps);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    if (out == NULL)
        return NULL;
    double *v = (double *)PyByteArray_AS_STRING(out);
    const int64_t exact = (int64_t)1 << 53;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(stamps, i);
        if (!PyDateTime_CheckExact(t) || !((PyDateTime_DateTime *)t)->hastzinfo ||
            PyDateTime_DATE_GET_TZINFO(t) != PyDateTime_TimeZone_UTC) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        int64_t days = days_from_civil(PyDateTime_GET_YEAR(t), PyDateTime_GET_MONTH(t),
                                       PyDateTime_GET_DAY(t));
        int64_t secs = days * 86400 + PyDateTime_DATE_GET_HOUR(t) * 3600 +
                       PyDateTime_DATE_GET_MINUTE(t) * 60 + PyDateTime_DATE_GET_SECOND(t);
        int64_t micros = secs * 1000000 + PyDateTime_DATE_GET_MICROSECOND(t);
        if (micros >= exact || micros <= -exact) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        v[i] = (double)micros / 1e6;
    }
    return out;
}

/* ------------------------------------------------------------------ envelopes */

/* The length of the UTF-8 sequence at s (its first byte is >= 0x80), or -1 when it is not
 * valid UTF-8 (an overlong form, a surrogate, beyond U+10FFFF or cut short), as Python's
 * strict decoder and pydantic's JSON parser judge it. */
static inline Py_ssize_t
utf8_sequence(const unsigned char *s, const unsigned char *end)
{
    unsigned char b = s[0];
    Py_ssize_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (b >= 0xC2 && b <= 0xDF)
        n = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    }
    else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    }
    else
        return -1;
    if (end - s < n || s[1] < lo || s[1] > hi)
        return -1;
    for (Py_ssize_t i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;
    }
    return n;
}

/* The closing quote of the JSON string whose body starts at s, or NULL when it is
 * unterminated, holds a control character or bytes that are not UTF-8; *escaped is set when
 * it holds a backslash (escapes are skipped, not checked: whoever parses the text checks them). */
static inline const unsigned char *
string_close(const unsigned char *s, const unsigned char *end, int *escaped)
{
    const uint64_t highs = 0x8080808080808080ULL;
    for (;;) {
        /* 8 bytes at a time up to the first quote, backslash, control or non-ASCII byte: the
         * lowest flagged byte is always a true one (false flags only come above it). */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            uint64_t m = special8(w) | (w & highs);
            if (m) {
#if PY_LITTLE_ENDIAN
                s += __builtin_ctzll(m) >> 3;
#endif
                break;
            }
            s += 8;
        }
        if (s >= end)
            return NULL;
        unsigned char ch = *s;
        if (ch == '"')
            return s;
        if (ch == '\\') {
            *escaped = 1;
            s += 2;
            continue;
        }
        if (ch < 0x20)
            return NULL;
        if (ch >= 0x80) {
            Py_ssize_t n = utf8_sequence(s, end);
            if (n < 0)
                return NULL;
            s += n;
            continue;
        }
        s++;
    }
}

/* Whether the JSON string body s[0:n] (escaped or not) is the key "events". */
static int
is_events_key(const unsigned char *s, Py_ssize_t n, int escaped, char **scratch, Py_ssize_t *room)
{
    if (!escaped)
        return n == 6 && memcmp(s, "events", 6) == 0;
    if (*room < n) {
        char *grown = PyMem_Realloc(*scratch, (size_t)n + 1);
        if (grown == NULL)
            return -1;
        *scratch = grown;
        *room = n;
    }
    Py_ssize_t m = unescape((const char *)s, n, *scratch);
    return m == 6 && memcmp(*scratch, "events", 6) == 0;
}

/* What scan() stops at outside strings: 1 a quote, 2 an opening bracket, 3 a closing one, 4 a
 * comma (SCAN_STOP_COMMA only, used between the events of an envelope); everything else
 * (whitespace, numbers, literals, colons) it passes over. */
static unsigned char SCAN_STOP[256];
static unsigned char SCAN_STOP_COMMA[256];

static inline int
is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t';
}

/* Append index to list when the element at elem ending before tail (whitespace excluded)
 * spans more than limit bytes; 1 when there was an element, 0 when none, -1 on error. */
static int
element_end(const unsigned char *elem, const unsigned char *tail, Py_ssize_t limit,
            Py_ssize_t index, PyObject *list)
{
    while (tail > elem && is_ws(tail[-1]))
        tail--;
    if (tail == elem)
        return 0;
    if (tail - elem > limit) {
        PyObject *at = PyLong_FromSsize_t(index);
        if (at == NULL || PyList_Append(list, at) < 0) {
            Py_XDECREF(at);
            return -1;
        }
        Py_DECREF(at);
    }
    return 1;
}

/* scan(text, limit, max_depth) -> list of int | None
 *
 * One pass over JSON text (one event, or an envelope {"events": [...]}) that a JSON parser has
 * accepted or is about to judge: None when a string in it holds bytes that are not UTF-8, a
 * control character or no closing quote, or containers nest deeper than max_depth; else the
 * indexes of the elements of the top-level object's "events" array (the last one, if the key
 * is repeated, as pydantic takes it) that span more than limit bytes.
 *
 * msgspec checks the grammar of a value it leaves raw (msgspec.Raw) but neither the UTF-8 of
 * its strings nor, below Python's recursion limit, its depth; pydantic's parser refuses
 * both anywhere in the text (and nesting deeper than 200). A raw value msgspec drops (a
 * repeated key keeps the last) is never parsed again, so the fast path asks this of the whole
 * text. On text that is not JSON the answer means nothing (the parser refuses that text). */
static PyObject *
featcols_scan(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t limit;
    int max_depth;
    if (!PyArg_ParseTuple(args, "y*ni", &view, &limit, &max_depth))
        return NULL;
    PyObject *over = PyList_New(0);
    char *scratch = NULL;
    Py_ssize_t room = 0;
    if (over == NULL)
        goto error;
    const unsigned char *p = (const unsigned char *)view.buf;
    const unsigned char *end = p + view.len;
    const unsigned char *stop = SCAN_STOP;
    int depth = 0;
    int events = 0;     /* depth 1: the last key was "events" (its value comes next) */
    int in_events = 0;  /* inside the array value of an "events" key (depth 2 and below) */
    const unsigned char *elem = NULL; /* where the current element of that array starts */
    Py_ssize_t index = 0;
    for (;;) {
        while (p < end && !stop[*p])
            p++;
        if (p >= end)
            break;
        unsigned char ch = *p;
        switch (stop[ch]) {
        case 1: {
            int escaped = 0;
            const unsigned char *q = string_close(p + 1, end, &escaped);
            if (q == NULL)
                goto refused;
            if (depth == 1) {
                /* A key when a colon follows; the value after "events" is its array. */
                const unsigned char *c = q + 1;
                while (c < end && is_ws(*c))
                    c++;
                events = 0;
                if (c < end && *c == ':') {
                    events = is_events_key(p + 1, q - p - 1, escaped, &scratch, &room);
                    if (events < 0) {
                        PyErr_NoMemory();
                        goto error;
                    }
                }
            }
            p = q + 1;
            continue;
        }
        case 2:
            if (++depth > max_depth)
                goto refused;
            if (depth == 2 && ch == '[' && events) {
                in_events = 1; /* a repeated key: its array replaces the one before */
                stop = SCAN_STOP_COMMA;
                index = 0;
                if (PyList_SetSlice(over, 0, PyList_GET_SIZE(over), NULL) < 0)
                    goto error;
                goto element;
            }
            if (depth == 3 && in_events)
                stop = SCAN_STOP; /* inside an event: no comma matters */
            p++;
            continue;
        case 3:
            if (--depth < 0)
                goto refused;
            if (depth == 1) {
                events = 0;
                if (in_events) { /* the end of the events array */
                    int rc = element_end(elem, p, limit, index, over);
                    if (rc < 0)
                        goto error;
                    in_events = 0;
                    stop = SCAN_STOP;
                }
            }
            else if (depth == 2 && in_events) {
                stop = SCAN_STOP_COMMA;
            }
            p++;
            continue;
        case 4: { /* a comma between events */
            int rc = element_end(elem, p, limit, index, over);
            if (rc < 0)
                goto error;
            index += rc;
            goto element;
        }
        }
    element: /* after "[" or "," of the events array: the next element starts here */
        p++;
        while (p < end && is_ws(*p))
            p++;
        elem = p;
    }
    PyBuffer_Release(&view);
    PyMem_Free(scratch);
    return over;
refused:
    PyBuffer_Release(&view);
    PyMem_Free(scratch);
    Py_DECREF(over);
    Py_RETURN_NONE;
error:
    PyBuffer_Release(&view);
    PyMem_Free(scratch);
    Py_XDECREF(over);
    return NULL;
}

/* attach(events, block, row_type, attr, check=False) -> bool: events[i].<attr> =
 * row_type(block, i); with check, only when every events[i].<attr> is the int i (False and
 * nothing changed otherwise). */
static PyObject *
featcols_attach(PyObject *module, PyObject *args)
{
    PyObject *events, *block, *attr;
    PyTypeObject *row_type;
    int check = 0;
    if (!PyArg_ParseTuple(args, "O!OO!U|p", &PyList_Type, &events, &block, &PyType_Type,
                          &row_type, &attr, &check))
        return NULL;
    if (!PyType_IsSubtype(row_type, FeatureRowType)) {
        PyErr_SetString(PyExc_TypeError, "row_type must derive from FeatureRow");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(events);
    for (Py_ssize_t i = 0; check && i < n; i++) {
        PyObject *have = PyObject_GetAttr(PyList_GET_ITEM(events, i), attr);
        if (have == NULL)
            return NULL;
        Py_ssize_t at = PyLong_CheckExact(have) ? PyLong_AsSsize_t(have) : -1;
        Py_DECREF(have);
        if (at == -1 && PyErr_Occurred())
            PyErr_Clear();
        if (at != i)
            Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        FeatureRow *row = (FeatureRow *)row_type->tp_alloc(row_type, 0);
        if (row == NULL)
            return NULL;
        row->block = Py_NewRef(block);
        row->index = i;
        int rc = PyObject_SetAttr(PyList_GET_ITEM(events, i), attr, (PyObject *)row);
        Py_DECREF(row);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_TRUE;
}

/* gather(rows, layout) -> (bytearray of f x n doubles, tuple of g lists) | None
 *
 * Every row's block must be a tuple (values, categorical columns, layout, ...) of this layout
 * (the same object); values is row-major (rows of f doubles), the result feature-major. */
static PyObject *
featcols_gather(PyObject *module, PyObject *args)
{
    PyObject *rows, *layout;
    Py_ssize_t f, g;
    if (!PyArg_ParseTuple(args, "O!Onn", &PyList_Type, &rows, &layout, &f, &g))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    /* Sizes whose products below cannot overflow (a layout has far fewer features). */
    if (f < 0 || g < 0 || f > (PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(double)) / (n ? n : 1))
        Py_RETURN_NONE;
    PyObject *checked = NULL;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyObject_TypeCheck(row, FeatureRowType))
            Py_RETURN_NONE;
        PyObject *block = ((FeatureRow *)row)->block;
        Py_ssize_t index = ((FeatureRow *)row)->index;
        /* A block as FeatureSchema makes it: (values, columns, layout), with this row in
         * both; anything else (a row made by hand) is not read. */
        if (block != checked) {
            if (!PyTuple_Check(block) || PyTuple_GET_SIZE(block) < 3 ||
                PyTuple_GET_ITEM(block, 2) != layout ||
                !PyByteArray_CheckExact(PyTuple_GET_ITEM(block, 0)) ||
                !PyTuple_CheckExact(PyTuple_GET_ITEM(block, 1)) ||
                PyTuple_GET_SIZE(PyTuple_GET_ITEM(block, 1)) != g)
                Py_RETURN_NONE;
            for (Py_ssize_t j = 0; j < g; j++) {
                if (!PyList_CheckExact(PyTuple_GET_ITEM(PyTuple_GET_ITEM(block, 1), j)))
                    Py_RETURN_NONE;
            }
            checked = block;
        }
        /* Row index is within the values when index < size / (8 f): a division, as a product
         * of a hand-made index could overflow (and wrap to a small number). */
        if (index < 0 ||
            (f > 0 && index >= PyByteArray_GET_SIZE(PyTuple_GET_ITEM(block, 0)) /
                                   ((Py_ssize_t)sizeof(double) * f)))
            Py_RETURN_NONE;
        for (Py_ssize_t j = 0; j < g; j++) {
            if (index >= PyList_GET_SIZE(PyTuple_GET_ITEM(PyTuple_GET_ITEM(block, 1), j)))
                Py_RETURN_NONE;
        }
    }
    PyObject *values = PyByteArray_FromStringAndSize(NULL, n * f * (Py_ssize_t)sizeof(double));
    PyObject *cols = PyTuple_New(g);
    if (values == NULL || cols == NULL)
        goto error;
    for (Py_ssize_t j = 0; j < g; j++) {
        PyObject *col = PyList_New(n);
        if (col == NULL)
            goto error;
        PyTuple_SET_ITEM(cols, j, col);
    }
    double *out = (double *)PyByteArray_AS_STRING(values);
    PyObject *last = NULL;
    const double *src = NULL;
    PyObject *srccols = NULL;
    for (Py_ssize_t r = 0; r < n; r++) {
        FeatureRow *row = (FeatureRow *)PyList_GET_ITEM(rows, r);
        if (row->block != last) {
            last = row->block;
            src = (const double *)PyByteArray_AS_STRING(PyTuple_GET_ITEM(last, 0));
            srccols = PyTuple_GET_ITEM(last, 1);
        }
        const double *in = src + row->index * f;
        for (Py_ssize_t j = 0; j < f; j++)
            out[j * n + r] = in[j];
        for (Py_ssize_t j = 0; j < g; j++) {
            PyObject *v = PyList_GET_ITEM(PyTuple_GET_ITEM(srccols, j), row->index);
            PyList_SET_ITEM(PyTuple_GET_ITEM(cols, j), r, Py_NewRef(v));
        }
    }
    return Py_BuildValue("(NN)", values, cols);
error:
    Py_XDECREF(values);
    Py_XDECREF(cols);
    return NULL;
}

static PyMethodDef Parser_methods[] = {
    {"parse", (PyCFunction)Parser_parse, METH_O,
     "parse(raws): the features of every raw JSON object as (row-major float64 bytes, one "
     "list per categorical feature, the indexes of the objects this schema does not take; "
     "their rows hold nothing usable)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Parser_slots[] = {
    {Py_tp_doc, "Parser(numeric, categorical, kinds): the feature parser of one compiled schema "
                "(kinds: None for any string, bool, or a tuple of the strings allowed)."},
    {Py_tp_dealloc, Parser_dealloc},
    {Py_tp_init, Parser_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_methods, Parser_methods},
    {0, NULL},
};

static PyType_Spec Parser_spec = {
    .name = "monitor._featcols.Parser",
    .basicsize = sizeof(Parser),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Parser_slots,
};

static PyMethodDef featcols_methods[] = {
    {"epochs", featcols_epochs, METH_O,
     "epochs(timestamps): datetime.timestamp() of every UTC datetime as float64 bytes, or "
     "None when one is not a datetime in UTC or is too far from 1970 for exact microseconds."},
    {"attach", featcols_attach, METH_VARARGS,
     "attach(events, block, row_type, attr, check=False): set events[i].attr = "
     "row_type(block, i); with check only if every events[i].attr is i (else False)."},
    {"scan", featcols_scan, METH_VARARGS,
     "scan(text, limit, max_depth): None when a string of the JSON text is not UTF-8 (or "
     "unterminated) or it nests deeper than max_depth, else the indexes of the elements of "
     "its top-level \"events\" array (the last, if repeated) longer than limit bytes."},
    {"gather", featcols_gather, METH_VARARGS,
     "gather(rows, layout, f, g): the rows' features as (feature-major float64 bytes, one "
     "list per categorical feature), or None when a row is not of this layout."},
    {NULL, NULL, 0, NULL},
};

static int
featcols_exec(PyObject *module)
{
    SCAN_STOP['"'] = SCAN_STOP_COMMA['"'] = 1;
    SCAN_STOP['{'] = SCAN_STOP['['] = SCAN_STOP_COMMA['{'] = SCAN_STOP_COMMA['['] = 2;
    SCAN_STOP['}'] = SCAN_STOP[']'] = SCAN_STOP_COMMA['}'] = SCAN_STOP_COMMA[']'] = 3;
    SCAN_STOP_COMMA[','] = 4;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return -1;
    FeatureRowType = (PyTypeObject *)PyType_FromSpec(&FeatureRow_spec);
    if (FeatureRowType == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "FeatureRow", (PyObject *)FeatureRowType) < 0)
        return -1;
    PyObject *parser = PyType_FromSpec(&Parser_spec);
    if (parser == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(module, "Parser", parser);
    Py_DECREF(parser);
    if (rc < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot featcols_slots[] = {
    {Py_mod_exec, featcols_exec},
    {0, NULL},
};

static struct PyModuleDef featcols_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "monitor._featcols",
    .m_doc = "Feature objects of prediction events parsed straight into columns.",
    .m_size = 0,
    .m_methods = featcols_methods,
    .m_slots = featcols_slots,
};

PyMODINIT_FUNC
PyInit__featcols(void)
{
    return PyModuleDef_Init(&featcols_module);
}
