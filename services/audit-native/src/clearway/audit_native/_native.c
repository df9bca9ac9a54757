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
 * Hashing goes through OpenSSL's EVP interface (libcrypto picks the SHA-NI
 * code path where the CPU has it); the per-call cost that dominates hashlib
 * for 65-byte nodes is gone because one digest context serves the whole block.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define ROW_HEAD 54 /* int16 fields, int32 8, int64 position, int32 32, 32 hash, int32 length */
#define MAX_LEVELS 64

static EVP_MD *sha256_md; /* fetched once at import; immutable and shared */

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

typedef struct {
    EVP_MD_CTX *ctx;
    int depth;                           /* subtrees on the stack */
    int level[MAX_LEVELS];               /* level of each, strictly decreasing */
    unsigned char hash[MAX_LEVELS][32];  /* root of each */
} Frontier;

/* SHA-256 over the concatenation of two parts into out; 0 on an OpenSSL error. */
static int digest2(EVP_MD_CTX *ctx, const unsigned char *a, size_t na, const unsigned char *b,
                   size_t nb, unsigned char out[32]) {
    unsigned int len = 0;
    return EVP_DigestInit_ex2(ctx, sha256_md, NULL) && EVP_DigestUpdate(ctx, a, na) &&
           EVP_DigestUpdate(ctx, b, nb) && EVP_DigestFinal_ex(ctx, out, &len) && len == 32;
}

/* Push one leaf hash, merging equal levels (RFC 9162 node hash); 0 on an OpenSSL error. */
static int push_leaf(Frontier *f, const unsigned char leaf[32]) {
    unsigned char node[65];
    memcpy(f->hash[f->depth], leaf, 32);
    f->level[f->depth++] = 0;
    while (f->depth > 1 && f->level[f->depth - 1] == f->level[f->depth - 2]) {
        node[0] = 0x01;
        memcpy(node + 1, f->hash[f->depth - 2], 32);
        memcpy(node + 33, f->hash[f->depth - 1], 32);
        f->depth--;
        if (!digest2(f->ctx, node, 1, node + 1, 64, f->hash[f->depth - 1])) return 0;
        f->level[f->depth - 1]++;
    }
    return 1;
}

enum { OK = 0, DEVIATES = 1, OPENSSL_ERROR = 2 };

typedef struct {
    const unsigned char *buf;
    Py_ssize_t offset, end;       /* rows lie in [offset, end); end = len - 2 */
    long long start;
    Py_ssize_t count;             /* stop - start */
    unsigned char *leaves;        /* count * 32 bytes out */
    Py_ssize_t n_inner;
    const Py_ssize_t *inner;      /* prefix lengths, strictly increasing, in (0, count) */
    int *inner_depth;             /* out: stack depth at each prefix */
    unsigned char *inner_hashes;  /* out: n_inner * MAX_LEVELS * 32 */
    Frontier *f;
} Job;

static int run(Job *j) {
    const unsigned char *p = j->buf;
    Py_ssize_t o = j->offset, i = 0, next_inner = 0;
    static const unsigned char leaf_prefix = 0x00;
    while (o + ROW_HEAD <= j->end) { /* a shorter remainder fails the end check below */
        const unsigned char *r = p + o;
        if (be32(r) >> 16 != 3 || be32(r + 2) != 8 || be32(r + 14) != 32) return DEVIATES;
        if (i >= j->count || (long long)be64(r + 6) != j->start + i) return DEVIATES;
        uint32_t n = be32(r + 50);
        if (n > INT32_MAX) return DEVIATES; /* -1 is a NULL content */
        o += ROW_HEAD;
        if ((Py_ssize_t)n > j->end - o) return DEVIATES;
        unsigned char *leaf = j->leaves + 32 * i;
        if (!digest2(j->f->ctx, &leaf_prefix, 1, p + o, n, leaf)) return OPENSSL_ERROR;
        if (memcmp(leaf, r + 18, 32) != 0) return DEVIATES;
        if (!push_leaf(j->f, leaf)) return OPENSSL_ERROR;
        o += n;
        i++;
        if (next_inner < j->n_inner && j->inner[next_inner] == i) {
            j->inner_depth[next_inner] = j->f->depth;
            memcpy(j->inner_hashes + (size_t)next_inner * MAX_LEVELS * 32, j->f->hash,
                   (size_t)j->f->depth * 32);
            next_inner++;
        }
    }
    return i == j->count && o == j->end ? OK : DEVIATES;
}

static PyObject *hashes_list(const unsigned char *hashes, int depth) {
    PyObject *out = PyList_New(depth);
    for (int k = 0; out != NULL && k < depth; k++) {
        PyObject *h = PyBytes_FromStringAndSize((const char *)hashes + 32 * k, 32);
        if (h == NULL) Py_CLEAR(out);
        else PyList_SET_ITEM(out, k, h);
    }
    return out;
}

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
    PyObject *inner_obj, *result = NULL, *leaves = NULL, *seq = NULL;
    Job j = {0};
    Frontier *f = NULL;
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
    j.buf = p;
    j.offset = offset;
    j.end = end;
    j.start = start;
    j.count = (Py_ssize_t)(stop - start);
    j.n_inner = PySequence_Fast_GET_SIZE(seq);
    Py_ssize_t *inner = PyMem_Calloc(j.n_inner + 1, sizeof(Py_ssize_t));
    j.inner_depth = PyMem_Calloc(j.n_inner + 1, sizeof(int));
    j.inner_hashes = PyMem_Calloc((size_t)j.n_inner * MAX_LEVELS + 1, 32);
    f = PyMem_Calloc(1, sizeof(Frontier));
    j.inner = inner;
    j.f = f;
    if (inner == NULL || j.inner_depth == NULL || j.inner_hashes == NULL || f == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < j.n_inner; k++) {
        long long s = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, k));
        if (s == -1 && PyErr_Occurred()) goto done;
        if (s <= start || s >= stop || (k && s - start <= inner[k - 1])) {
            PyErr_SetString(PyExc_ValueError, "inner sizes must increase within (start, stop)");
            goto done;
        }
        inner[k] = (Py_ssize_t)(s - start);
    }
    leaves = PyBytes_FromStringAndSize(NULL, j.count * 32);
    f->ctx = EVP_MD_CTX_new();
    if (leaves == NULL || f->ctx == NULL) {
        if (leaves != NULL) PyErr_NoMemory();
        goto done;
    }
    j.leaves = (unsigned char *)PyBytes_AS_STRING(leaves);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run(&j);
    Py_END_ALLOW_THREADS
    if (rc == OPENSSL_ERROR) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
        goto done;
    }
    if (rc == DEVIATES) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *compact = hashes_list((const unsigned char *)f->hash, f->depth);
    PyObject *ranges = compact == NULL ? NULL : PyList_New(j.n_inner);
    for (Py_ssize_t k = 0; ranges != NULL && k < j.n_inner; k++) {
        PyObject *h = hashes_list(j.inner_hashes + (size_t)k * MAX_LEVELS * 32, j.inner_depth[k]);
        if (h == NULL) Py_CLEAR(ranges);
        else PyList_SET_ITEM(ranges, k, h);
    }
    if (ranges != NULL) result = PyTuple_Pack(3, leaves, compact, ranges);
    Py_XDECREF(compact);
    Py_XDECREF(ranges);
done:
    if (f != NULL) EVP_MD_CTX_free(f->ctx);
    PyMem_Free(f);
    PyMem_Free((void *)j.inner);
    PyMem_Free(j.inner_depth);
    PyMem_Free(j.inner_hashes);
    Py_XDECREF(leaves);
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
    if (sha256_md == NULL) sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA256");
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "clearway.audit_native._native",
    "The compiled verification loop of the audit log (ADR 0041).", 0, methods, slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModuleDef_Init(&module_def); }
