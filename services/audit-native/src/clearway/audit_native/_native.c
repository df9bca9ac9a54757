/*
 * The compiled verification loop of the audit log (docs/design.md §8, ADR 0041).
 *
 * hash_block() takes one block of PostgreSQL binary COPY rows
 * (position bigint, leaf_hash bytea, content text), as read by
 * clearway.audit.store.copy_block, and in one call, without the GIL:
 *   - checks every row's layout, that positions run densely from `start`,
 *     and that SHA-256(0x00 || content) reproduces the stored leaf hash
 *     (RFC 6962 / RFC 9162 §2.1.1 leaf hash);
 *   - folds the leaves into their compact range (one perfect-subtree root per
 *     set bit of the leaf count, largest first; node hash
 *     SHA-256(0x01 || left || right)), and the compact range of each requested
 *     prefix (a signed checkpoint inside the block).
 * It is clearway.audit.blocks._in_order plus clearway.audit.merkle.Frontier in
 * one loop: at the first deviation it returns None and the pure-Python path
 * (which is memory safe) examines the block and names the failure.
 *
 * The buffer is hostile input (whoever can write the database shapes it):
 * every read is bounds-checked against the buffer's length before it happens,
 * lengths are checked for sign before use, and nothing is allocated from a
 * length found in the buffer.
 *
 * The row walk itself lives in _hashing.h, shared with the libpq reader (_copy.c),
 * which checks rows while the COPY still arrives.
 *
 * Hashing goes through OpenSSL's EVP interface (libcrypto picks the SHA-NI
 * code path where the CPU has it); the per-call cost that dominates hashlib
 * for 65-byte nodes is gone because one digest context serves the whole block.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_hashing.h"

PyDoc_STRVAR(hash_block_doc,
"hash_block(buf, offset, start, stop, inner, /)\n--\n\n"
"Check the binary COPY rows of positions [start, stop) that begin at ``offset`` of\n"
"``buf`` and recompute their leaves and compact range. Returns\n"
"``(leaves, compact, inner_ranges)``: the leaf hashes concatenated (32 bytes each),\n"
"the compact range of the block (largest subtree first) and, for each size in\n"
"``inner`` (absolute, start < size < stop, increasing), the compact range of\n"
"[start, size). Returns None when the data deviates in any way (layout, order,\n"
"gap, altered record, trailer): the caller then examines it.");

static PyObject *hash_block(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t offset;
    long long start, stop;
    PyObject *inner_obj, *result = NULL, *seq = NULL;
    Prepared pr = {0};
    if (!PyArg_ParseTuple(args, "y*nLLO:hash_block", &view, &offset, &start, &stop, &inner_obj))
        return NULL;
    if (stop < start || start < 0) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= stop");
        goto done;
    }
    seq = PySequence_Fast(inner_obj, "inner must be a sequence of sizes");
    if (seq == NULL) goto done;
    const unsigned char *p = view.buf;
    Py_ssize_t len = view.len, end = len - 2;
    /* Header, trailer (int16 -1) and room for the rows; else not a block we can read. */
    if (offset < 0 || len < 2 || offset > end || p[end] != 0xff || p[end + 1] != 0xff ||
        stop - start > (end - offset) / ROW_HEAD) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (!prepare(&pr, start, stop, seq, PY_SSIZE_T_MAX)) goto done;
    pr.j.o = offset;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_final(&pr.j, p, len);
    Py_END_ALLOW_THREADS
    result = outcome(&pr, rc);
done:
    release(&pr);
    Py_XDECREF(seq);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"hash_block", hash_block, METH_VARARGS, hash_block_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    (void)module;
    return fetch_sha256();
}

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "clearway.audit_native._native",
    "The compiled verification loop of the audit log (ADR 0041).", 0, methods, slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModuleDef_Init(&module_def); }
