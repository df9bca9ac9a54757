/*
 * The block check shared by hash_block (_native.c, a buffer in hand) and the libpq
 * reader (_copy.c, rows checked as they arrive): docs/design.md §8, ADR 0041, ADR 0050.
 *
 * A Job walks binary COPY rows (position bigint, leaf_hash bytea, content text):
 * every row's layout, positions dense from `start`, SHA-256(0x00 || content) equal
 * to the stored leaf hash (RFC 9162 §2.1.1), leaves folded into the compact range
 * (node hash SHA-256(0x01 || left || right)) and the compact range of each requested
 * prefix. The Job keeps offsets, not pointers, so the buffer may move between calls
 * (it grows while a COPY arrives). Every read is checked against `end` first;
 * lengths are checked for sign; nothing is allocated from a length in the data.
 */
#ifndef CLEARWAY_AUDIT_HASHING_H
#define CLEARWAY_AUDIT_HASHING_H

#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define ROW_HEAD 54 /* int16 fields, int32 8, int64 position, int32 32, 32 hash, int32 length */
#define HEADER 19   /* signature (11), int32 flags, int32 header extension length */
#define MAX_LEVELS 64

static EVP_MD *sha256_md; /* fetched once at import (fetch_sha256); immutable and shared */
static const unsigned char SIGNATURE[11] = "PGCOPY\n\377\r\n";

static int fetch_sha256(void) {
    if (sha256_md == NULL) sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA256");
        return -1;
    }
    return 0;
}

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
    Py_ssize_t o;                 /* offset of the next row */
    Py_ssize_t i;                 /* rows checked */
    Py_ssize_t next_inner;
    long long start;
    Py_ssize_t count;             /* stop - start */
    unsigned char *leaves;        /* count * 32 bytes out */
    Py_ssize_t n_inner;
    const Py_ssize_t *inner;      /* prefix lengths, strictly increasing, in (0, count) */
    int *inner_depth;             /* out: stack depth at each prefix */
    unsigned char *inner_hashes;  /* out: n_inner * MAX_LEVELS * 32 */
    Frontier *f;
} Job;

/* Check the rows that lie whole in [j->o, end) of p. `more`: data may still follow, so
 * a row cut at `end` waits (OK) instead of deviating. Runs without the GIL. */
static int run_rows(Job *j, const unsigned char *p, Py_ssize_t end, int more) {
    static const unsigned char leaf_prefix = 0x00;
    while (j->o + ROW_HEAD <= end) { /* a shorter remainder fails the end check */
        const unsigned char *r = p + j->o;
        if (be32(r) >> 16 != 3 || be32(r + 2) != 8 || be32(r + 14) != 32) return DEVIATES;
        if (j->i >= j->count || (long long)be64(r + 6) != j->start + j->i) return DEVIATES;
        uint32_t n = be32(r + 50);
        if (n > INT32_MAX) return DEVIATES; /* -1 is a NULL content */
        if ((Py_ssize_t)n > end - (j->o + ROW_HEAD)) return more ? OK : DEVIATES;
        unsigned char *leaf = j->leaves + 32 * j->i;
        if (!digest2(j->f->ctx, &leaf_prefix, 1, r + ROW_HEAD, n, leaf)) return OPENSSL_ERROR;
        if (memcmp(leaf, r + 18, 32) != 0) return DEVIATES;
        if (!push_leaf(j->f, leaf)) return OPENSSL_ERROR;
        j->o += ROW_HEAD + n;
        j->i++;
        if (j->next_inner < j->n_inner && j->inner[j->next_inner] == j->i) {
            j->inner_depth[j->next_inner] = j->f->depth;
            memcpy(j->inner_hashes + (size_t)j->next_inner * MAX_LEVELS * 32, j->f->hash,
                   (size_t)j->f->depth * 32);
            j->next_inner++;
        }
    }
    return OK;
}

/* The whole block is [0, len) of p: the rows left, then the int16 -1 trailer ends it. */
static int run_final(Job *j, const unsigned char *p, Py_ssize_t len) {
    Py_ssize_t end = len - 2;
    if (len < 2 || j->o > end || p[end] != 0xff || p[end + 1] != 0xff) return DEVIATES;
    int rc = run_rows(j, p, end, 0);
    if (rc != OK) return rc;
    return j->i == j->count && j->o == end ? OK : DEVIATES;
}

/* Offset of the first row after the header, or -1 (not binary COPY, or not yet whole). */
static Py_ssize_t rows_offset(const unsigned char *p, Py_ssize_t len) {
    if (len < HEADER || memcmp(p, SIGNATURE, sizeof SIGNATURE) != 0) return -1;
    uint32_t ext = be32(p + 15);
    if (ext > INT32_MAX || (Py_ssize_t)ext > len - HEADER) return -1;
    return HEADER + (Py_ssize_t)ext;
}

typedef struct {
    Job j;
    PyObject *leaves; /* bytes, count * 32 */
    Py_ssize_t *inner;
} Prepared;

/* Set up a Job for [start, stop) with the prefixes `seq` (sizes, strictly increasing in
 * (start, stop)); under the GIL. `max_rows` bounds count (what the data could hold). */
static int prepare(Prepared *pr, long long start, long long stop, PyObject *seq,
                   Py_ssize_t max_rows) {
    memset(pr, 0, sizeof *pr);
    Job *j = &pr->j;
    if (stop < start || start < 0) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= stop");
        return 0;
    }
    if (stop - start > max_rows) {
        PyErr_SetString(PyExc_ValueError, "more records than the data could hold");
        return 0;
    }
    j->start = start;
    j->count = (Py_ssize_t)(stop - start);
    j->n_inner = PySequence_Fast_GET_SIZE(seq);
    pr->inner = PyMem_Calloc(j->n_inner + 1, sizeof(Py_ssize_t));
    j->inner_depth = PyMem_Calloc(j->n_inner + 1, sizeof(int));
    j->inner_hashes = PyMem_Calloc((size_t)j->n_inner * MAX_LEVELS + 1, 32);
    j->f = PyMem_Calloc(1, sizeof(Frontier));
    j->inner = pr->inner;
    if (pr->inner == NULL || j->inner_depth == NULL || j->inner_hashes == NULL || j->f == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t k = 0; k < j->n_inner; k++) {
        long long s = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, k));
        if (s == -1 && PyErr_Occurred()) return 0;
        if (s <= start || s >= stop || (k && s - start <= pr->inner[k - 1])) {
            PyErr_SetString(PyExc_ValueError, "inner sizes must increase within (start, stop)");
            return 0;
        }
        pr->inner[k] = (Py_ssize_t)(s - start);
    }
    pr->leaves = PyBytes_FromStringAndSize(NULL, j->count * 32);
    if (pr->leaves == NULL) return 0;
    j->f->ctx = EVP_MD_CTX_new();
    if (j->f->ctx == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    j->leaves = (unsigned char *)PyBytes_AS_STRING(pr->leaves);
    return 1;
}

static void release(Prepared *pr) {
    if (pr->j.f != NULL) EVP_MD_CTX_free(pr->j.f->ctx);
    PyMem_Free(pr->j.f);
    PyMem_Free(pr->inner);
    PyMem_Free(pr->j.inner_depth);
    PyMem_Free(pr->j.inner_hashes);
    Py_CLEAR(pr->leaves);
    memset(pr, 0, sizeof *pr);
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

/* (leaves, compact, inner_ranges) of a Job that ended OK; None for DEVIATES. */
static PyObject *outcome(Prepared *pr, int rc) {
    if (rc == OPENSSL_ERROR) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
        return NULL;
    }
    if (rc == DEVIATES) return Py_NewRef(Py_None);
    Job *j = &pr->j;
    PyObject *result = NULL;
    PyObject *compact = hashes_list((const unsigned char *)j->f->hash, j->f->depth);
    PyObject *ranges = compact == NULL ? NULL : PyList_New(j->n_inner);
    for (Py_ssize_t k = 0; ranges != NULL && k < j->n_inner; k++) {
        PyObject *h = hashes_list(j->inner_hashes + (size_t)k * MAX_LEVELS * 32, j->inner_depth[k]);
        if (h == NULL) Py_CLEAR(ranges);
        else PyList_SET_ITEM(ranges, k, h);
    }
    if (ranges != NULL) result = PyTuple_Pack(3, pr->leaves, compact, ranges);
    Py_XDECREF(compact);
    Py_XDECREF(ranges);
    return result;
}

#endif
