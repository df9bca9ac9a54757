/*
 * Receiving the audit log's binary COPY through libpq, without the GIL
 * (docs/design.md §8, ADR 0050).
 *
 * A verification run reads its blocks on a few threads, each with its own
 * Connection. copy_hash() receives one block's COPY and checks its rows as they
 * arrive (the walk of _hashing.h, the same as hash_block's), so Postgres producing
 * the stream and this thread hashing it overlap, keeping only the bytes not checked
 * yet. At a deviation the caller reads the block again with copy_out() (same
 * transaction, same snapshot) into a CopyData (a read-only buffer) for the
 * pure-Python path to name it. All of it runs with the GIL released.
 *
 * The COPY data is hostile input (whoever can write the database shapes it):
 * this module only moves bytes; the parse is hash_block's, bounds-checked. The
 * buffer grows by doubling up to a limit the caller sets, never from a length
 * found in the data.
 *
 * Errors carry libpq's message, which names host, port and user but never the
 * password; the connection parameters come as keyword/value arrays
 * (PQconnectdbParams), so no conninfo string holding the password is built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <libpq-fe.h>
#include <string.h>

#include "_hashing.h"

static PyObject *PgError; /* clearway.audit_native.PgError */

/* ---- CopyData: bytes received, exposed through the buffer protocol ---- */

typedef struct Connection Connection;

typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t len, cap;
    Connection *owner; /* gets the memory back when this is freed (strong reference) */
} CopyData;

struct Connection {
    PyObject_HEAD
    PGconn *pg;
    int busy;           /* a call is running on another thread (checked and set under the GIL) */
    char *spare;        /* the memory of the last CopyData freed, reused by the next COPY: */
    Py_ssize_t spare_cap; /* fresh pages for every block cost more than receiving it */
};

static void copydata_dealloc(CopyData *self) {
    Connection *owner = self->owner;
    if (owner != NULL && owner->spare == NULL && owner->pg != NULL) {
        owner->spare = self->data, owner->spare_cap = self->cap;
    } else {
        PyMem_RawFree(self->data);
    }
    Py_XDECREF(owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int copydata_getbuffer(CopyData *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data ? self->data : "", self->len, 1,
                             flags);
}

static Py_ssize_t copydata_len(CopyData *self) { return self->len; }

static PyBufferProcs copydata_as_buffer = {(getbufferproc)copydata_getbuffer, NULL};
static PySequenceMethods copydata_as_sequence = {.sq_length = (lenfunc)copydata_len};

static PyTypeObject CopyDataType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clearway.audit_native.CopyData",
    .tp_doc = PyDoc_STR("Bytes of one COPY, read-only (buffer protocol; memoryview() it)."),
    .tp_basicsize = sizeof(CopyData),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)copydata_dealloc,
    .tp_as_buffer = &copydata_as_buffer,
    .tp_as_sequence = &copydata_as_sequence,
};

/* ---- Connection ---- */

/* PgError with libpq's message, trailing newline removed; NULL always. */
static PyObject *pg_error(const char *what, const char *message) {
    size_t n = message ? strlen(message) : 0;
    while (n && (message[n - 1] == '\n' || message[n - 1] == ' ')) n--;
    PyObject *text = PyUnicode_DecodeUTF8(message ? message : "", (Py_ssize_t)n, "replace");
    if (text != NULL) PyErr_Format(PgError, "%s: %U", what, text);
    Py_XDECREF(text);
    return NULL;
}

static int take(Connection *self) {
    if (self->pg == NULL) {
        PyErr_SetString(PgError, "connection is closed");
        return 0;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "connection in use by another thread");
        return 0;
    }
    self->busy = 1;
    return 1;
}

static void connection_dealloc(Connection *self) {
    if (self->pg != NULL) PQfinish(self->pg);
    PyMem_RawFree(self->spare);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(execute_doc, "execute(sql, /)\n--\n\nRun one command that returns no COPY.");

static PyObject *connection_execute(Connection *self, PyObject *args) {
    const char *sql;
    if (!PyArg_ParseTuple(args, "s:execute", &sql) || !take(self)) return NULL;
    PGresult *res;
    Py_BEGIN_ALLOW_THREADS
    res = PQexec(self->pg, sql);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_error("query failed", res ? PQresultErrorMessage(res) : PQerrorMessage(self->pg));
        PQclear(res);
        return NULL;
    }
    PQclear(res);
    Py_RETURN_NONE;
}

enum { COPIED = 0, NOT_COPY, BROKEN, TOO_LONG, NO_MEMORY };

/* Receive a whole COPY TO STDOUT into *data (PyMem_Raw*, *cap bytes, reused when given).
 * With `pr`, check its rows on the way (*hash_rc: OK, DEVIATES or OPENSSL_ERROR) and
 * keep only the bytes not checked yet: a window the size of a row or two, hot in the
 * cache, instead of the whole block; after a deviation nothing is kept (the caller
 * reads the block again to name it) and the rest is drained. Runs without the GIL. */
static int receive(PGconn *pg, const char *sql, Py_ssize_t limit, char **data, Py_ssize_t *len,
                   Py_ssize_t *capacity, PGresult **failed, Prepared *pr, int *hash_rc) {
    PGresult *res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        *failed = res;
        return NOT_COPY;
    }
    PQclear(res);
    Py_ssize_t cap = *capacity, n = 0, total = 0;
    char *buf = *data, *row = NULL;
    int rc = COPIED, got, header = 0;
    while ((got = PQgetCopyData(pg, &row, 0)) > 0) {
        if (rc == COPIED && got > limit - total) rc = TOO_LONG; /* keep reading to the end */
        total += got;
        int keep = rc == COPIED && (pr == NULL || *hash_rc == OK);
        if (keep && n + got > cap) {
            Py_ssize_t want = cap ? cap : 1 << 16;
            while (want < n + got) want = want > limit / 2 ? limit : want * 2;
            char *grown = PyMem_RawRealloc(buf, (size_t)want);
            if (grown == NULL) rc = NO_MEMORY, keep = 0;
            else buf = grown, cap = want;
        }
        if (keep) memcpy(buf + n, row, (size_t)got), n += got;
        PQfreemem(row);
        if (!keep || pr == NULL) continue;
        if (!header) { /* the header first (its extension may span messages) */
            Py_ssize_t at = rows_offset((unsigned char *)buf, n);
            if (at > 0) header = 1, pr->j.o = at;
        }
        if (!header) continue;
        /* rows whole before the last two bytes: those may be the trailer */
        *hash_rc = run_rows(&pr->j, (unsigned char *)buf, n - 2, 1);
        if (*hash_rc != OK) n = 0;
        else if (pr->j.o > 0) { /* drop what is checked: offsets are the window's */
            memmove(buf, buf + pr->j.o, (size_t)(n - pr->j.o));
            n -= pr->j.o;
            pr->j.o = 0;
        }
    }
    /* -1: the COPY ended, its result follows; -2: the connection failed. */
    while ((res = PQgetResult(pg)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && *failed == NULL) *failed = res;
        else PQclear(res);
    }
    if (rc == COPIED && (got == -2 || *failed != NULL)) rc = BROKEN;
    if (pr != NULL && rc == COPIED && *hash_rc == OK)
        *hash_rc = header ? run_final(&pr->j, (unsigned char *)buf, n) : DEVIATES;
    if (rc != COPIED) PyMem_RawFree(buf), buf = NULL, n = 0, cap = 0;
    *data = buf;
    *len = n;
    *capacity = cap;
    return rc;
}

PyDoc_STRVAR(copy_out_doc,
"copy_out(sql, limit, /)\n--\n\n"
"Run ``COPY ... TO STDOUT`` and return every byte it sends as a CopyData (at most\n"
"``limit`` bytes, else PgError). The GIL is released while the data arrives.");

/* Run the COPY into a new CopyData (NULL and an exception on failure); `pr`: check too. */
static PyObject *copy(Connection *self, const char *sql, Py_ssize_t limit, Prepared *pr,
                      int *hash_rc) {
    if (limit <= 0) {
        PyErr_SetString(PyExc_ValueError, "limit must be positive");
        return NULL;
    }
    CopyData *out = PyObject_New(CopyData, &CopyDataType);
    if (out == NULL) return NULL;
    out->data = NULL;
    out->len = out->cap = 0;
    out->owner = NULL;
    if (!take(self)) {
        Py_DECREF(out);
        return NULL;
    }
    out->data = self->spare, out->cap = self->spare_cap;
    self->spare = NULL, self->spare_cap = 0;
    PGresult *failed = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = receive(self->pg, sql, limit, &out->data, &out->len, &out->cap, &failed, pr, hash_rc);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (rc == COPIED) {
        out->owner = (Connection *)Py_NewRef(self);
        return (PyObject *)out;
    }
    Py_DECREF(out);
    if (rc == NO_MEMORY) PyErr_NoMemory();
    else if (rc == TOO_LONG) PyErr_Format(PgError, "COPY sent more than %zd bytes", limit);
    else if (failed != NULL && PQresultErrorMessage(failed)[0] != '\0')
        pg_error("COPY failed", PQresultErrorMessage(failed));
    else pg_error("COPY failed", PQerrorMessage(self->pg));
    PQclear(failed);
    return NULL;
}

static PyObject *connection_copy_out(Connection *self, PyObject *args) {
    const char *sql;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "sn:copy_out", &sql, &limit)) return NULL;
    return copy(self, sql, limit, NULL, NULL);
}

PyDoc_STRVAR(copy_hash_doc,
"copy_hash(sql, limit, start, stop, inner, /)\n--\n\n"
"Receive a block's binary COPY (position, leaf_hash, content) and check its rows as\n"
"they arrive, as hash_block() checks them; returns what hash_block(data, ...) would\n"
"(None: the data deviates; the bytes are not kept: read them with copy_out()).");

static PyObject *connection_copy_hash(Connection *self, PyObject *args) {
    const char *sql;
    Py_ssize_t limit;
    long long start, stop;
    PyObject *inner_obj, *seq = NULL, *data = NULL, *out = NULL;
    Prepared pr = {0};
    if (!PyArg_ParseTuple(args, "snLLO:copy_hash", &sql, &limit, &start, &stop, &inner_obj))
        return NULL;
    seq = PySequence_Fast(inner_obj, "inner must be a sequence of sizes");
    /* no allocation beyond what `limit` bytes of rows could need */
    if (seq == NULL || !prepare(&pr, start, stop, seq, limit / ROW_HEAD)) goto done;
    int hash_rc = OK;
    data = copy(self, sql, limit, &pr, &hash_rc); /* its window's memory: the next spare */
    if (data != NULL) out = outcome(&pr, hash_rc);
done:
    release(&pr);
    Py_XDECREF(seq);
    Py_XDECREF(data);
    return out;
}

PyDoc_STRVAR(close_doc, "close()\n--\n\nClose the connection (idempotent).");

static PyObject *connection_close(Connection *self, PyObject *unused) {
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "connection in use by another thread");
        return NULL;
    }
    if (self->pg != NULL) {
        PGconn *pg = self->pg;
        self->pg = NULL;
        PyMem_RawFree(self->spare);
        self->spare = NULL, self->spare_cap = 0;
        Py_BEGIN_ALLOW_THREADS
        PQfinish(pg);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyObject *connection_ok(Connection *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->pg != NULL && PQstatus(self->pg) == CONNECTION_OK);
}

static PyMethodDef connection_methods[] = {
    {"execute", (PyCFunction)connection_execute, METH_VARARGS, execute_doc},
    {"copy_out", (PyCFunction)connection_copy_out, METH_VARARGS, copy_out_doc},
    {"copy_hash", (PyCFunction)connection_copy_hash, METH_VARARGS, copy_hash_doc},
    {"close", (PyCFunction)connection_close, METH_NOARGS, close_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef connection_getset[] = {
    {"ok", (getter)connection_ok, NULL, "Open and not broken.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ConnectionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "clearway.audit_native.Connection",
    .tp_doc = PyDoc_STR("A libpq connection used by one thread at a time (see connect())."),
    .tp_basicsize = sizeof(Connection),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)connection_dealloc,
    .tp_methods = connection_methods,
    .tp_getset = connection_getset,
};

PyDoc_STRVAR(connect_doc,
"connect(params, /)\n--\n\n"
"Open a libpq connection from a dict of connection keywords (host, port, dbname,\n"
"user, password, sslmode, options, ...: libpq's names). Raises PgError with\n"
"libpq's message, which never contains the password.");

static PyObject *connect(PyObject *self, PyObject *params) {
    (void)self;
    if (!PyDict_Check(params)) {
        PyErr_SetString(PyExc_TypeError, "params must be a dict of str to str");
        return NULL;
    }
    Py_ssize_t n = PyDict_Size(params), pos = 0, i = 0;
    const char **keys = PyMem_Calloc(n + 1, sizeof(char *));
    const char **values = PyMem_Calloc(n + 1, sizeof(char *));
    PyObject *k, *v, *result = NULL;
    if (keys == NULL || values == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    while (PyDict_Next(params, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "params must be a dict of str to str");
            goto done;
        }
        /* UTF-8 buffers cached on the str objects, alive as long as the dict holds them */
        keys[i] = PyUnicode_AsUTF8(k);
        values[i] = PyUnicode_AsUTF8(v);
        if (keys[i] == NULL || values[i] == NULL) goto done;
        i++;
    }
    PGconn *pg;
    Py_BEGIN_ALLOW_THREADS
    pg = PQconnectdbParams(keys, values, 0);
    Py_END_ALLOW_THREADS
    if (pg == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        pg_error("cannot connect", PQerrorMessage(pg));
        PQfinish(pg);
        goto done;
    }
    Connection *c = PyObject_New(Connection, &ConnectionType);
    if (c == NULL) {
        PQfinish(pg);
        goto done;
    }
    c->pg = pg;
    c->busy = 0;
    c->spare = NULL, c->spare_cap = 0;
    result = (PyObject *)c;
done:
    PyMem_Free(keys);
    PyMem_Free(values);
    return result;
}

static PyMethodDef methods[] = {
    {"connect", connect, METH_O, connect_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    if (fetch_sha256() < 0) return -1;
    if (PyType_Ready(&CopyDataType) < 0 || PyType_Ready(&ConnectionType) < 0) return -1;
    if (PgError == NULL) {
        PgError = PyErr_NewExceptionWithDoc(
            "clearway.audit_native.PgError",
            "libpq could not connect, or a command or COPY failed (message from libpq).",
            PyExc_ConnectionError, NULL);
        if (PgError == NULL) return -1;
    }
    if (PyModule_AddObjectRef(module, "PgError", PgError) < 0 ||
        PyModule_AddObjectRef(module, "Connection", (PyObject *)&ConnectionType) < 0 ||
        PyModule_AddObjectRef(module, "CopyData", (PyObject *)&CopyDataType) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "clearway.audit_native._copy",
    "Receiving binary COPY through libpq without the GIL (ADR 0050).", 0, methods, slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__copy(void) { return PyModuleDef_Init(&module_def); }
