/* Genotype-call kernels for ingest: the per-byte work of turning VCF sample columns into VCF Zarr
 * arrays, and allele counts per sample class.
 *
 * Why C: a 2,500-sample cohort is ~10 kB of sample text per record and ~1 GB per 100,000 records.
 * numpy needed five passes over that text (copy, subtract, mask, compare, reduce) plus a
 * concatenation of the inflated blocks; here each byte is read once, straight from the inflated
 * BGZF blocks. Everything that needs judgement (fixed columns, errors naming the line, unusual
 * layouts) stays in Python: these functions only say "not this layout" and the caller falls back
 * to the general parser.
 *
 * The layout handled is the one every genotype-only VCF (and our simulator) writes: FORMAT `GT`,
 * every call `a|b` or `a/b` with single-character alleles (`0`-`9` or `.`), so that each line's
 * sample columns are exactly its last 4N-1 bytes.
 *
 * Conventions follow VCF Zarr: int8 allele indexes, -1 for a missing allele; phased is 0/1.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Row flags returned to Python (one byte per record). */
#define FLAG_MISSING 1   /* at least one missing allele ('.') */
#define FLAG_UNPHASED 2  /* at least one call with '/' */

/* One call `a|b` / `a/b`: its alleles into gt[0..1], its phase into *ph; returns the bits of
 * what is wrong with it (1), a missing allele (2) and an unphased call (4). No branches: the
 * loops over calls below are vectorised by the compiler. */
static inline unsigned
decode_call(const uint8_t *c, int8_t *gt, uint8_t *ph)
{
    uint8_t a = c[0], sep = c[1], b = c[2];
    uint8_t da = (uint8_t)(a - '0'), db = (uint8_t)(b - '0');
    unsigned a_dot = a == '.', b_dot = b == '.', slash = sep == '/';
    unsigned bad = ((da > 9) & !a_dot) | ((db > 9) & !b_dot) | ((sep != '|') & !slash);
    gt[0] = a_dot ? -1 : (int8_t)da;
    gt[1] = b_dot ? -1 : (int8_t)db;
    *ph = !slash;
    return bad | (a_dot | b_dot) << 1 | slash << 2;
}

/* Wider vectors where the processor has them, chosen when the module loads (GCC, x86-64). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* Decode the n sample columns starting at p (exactly 4n-1 bytes, already bounds-checked).
 * Returns 0, or -1 when the bytes are not this layout. */
VECTOR_CLONES static int
decode_line(const uint8_t *restrict p, Py_ssize_t n, int8_t *restrict gt, uint8_t *restrict ph,
            uint8_t *flags, int8_t *top)
{
    unsigned bits = 0;
    for (Py_ssize_t i = 0; i + 1 < n; i++)
        bits |= decode_call(p + 4 * i, gt + 2 * i, ph + i) | (p[4 * i + 3] != '\t');
    bits |= decode_call(p + 4 * (n - 1), gt + 2 * (n - 1), ph + n - 1);
    if (bits & 1)
        return -1;
    int8_t best = -1;
    for (Py_ssize_t k = 0; k < 2 * n; k++)
        best = gt[k] > best ? gt[k] : best;
    *flags = (uint8_t)((bits & 2 ? FLAG_MISSING : 0) | (bits & 4 ? FLAG_UNPHASED : 0));
    *top = best;
    return 0;
}

/* A growable byte buffer. */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Bytes;

static int
bytes_append(Bytes *b, const void *src, Py_ssize_t n)
{
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, (size_t)cap);
        if (grown == NULL)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

/* State of one scan over a piece's blocks. */
typedef struct {
    Py_ssize_t n_samples;
    int8_t *gt;
    uint8_t *ph;
    Py_ssize_t capacity; /* rows that fit in gt / ph */
    Py_ssize_t rows;
    int in_records; /* a record line was seen: '#' lines are header lines only before it */
    Bytes heads, flags, tops;
} Scan;

/* One complete line without its newline. Returns 0, or -1 when it is not the layout (or the
 * output is full, or memory ran out: the caller then takes the general path). */
static int
scan_line(Scan *s, const uint8_t *line, Py_ssize_t len)
{
    if (len > 0 && line[0] == '#' && !s->in_records)
        return 0;
    s->in_records = 1;
    Py_ssize_t width = 4 * s->n_samples - 1;
    Py_ssize_t head = len - width - 4; /* fixed columns, up to (not including) "\tGT\t" */
    if (head <= 0 || memcmp(line + head, "\tGT\t", 4) != 0)
        return -1;
    if (memchr(line, '\n', (size_t)head) != NULL)
        return -1;
    if (s->rows >= s->capacity)
        return -1;
    Py_ssize_t r = s->rows;
    uint8_t flags;
    int8_t top;
    if (decode_line(line + head + 4, s->n_samples, s->gt + 2 * r * s->n_samples,
                    s->ph + r * s->n_samples, &flags, &top) < 0)
        return -1;
    if (bytes_append(&s->heads, line, head) < 0 || bytes_append(&s->heads, "\n", 1) < 0 ||
        bytes_append(&s->flags, &flags, 1) < 0 || bytes_append(&s->tops, &top, 1) < 0)
        return -1;
    s->rows++;
    return 0;
}

/* The shortest a line of this layout can be: the sample columns, "\tGT\t" and eight more
 * fixed columns of at least one byte each with their tabs. A newline is searched for from that
 * far in; a shorter (malformed) line merged that way fails the head check above. */
static Py_ssize_t
min_line(Py_ssize_t n_samples)
{
    return 4 * n_samples - 1 + 4 + 15;
}

/* Scan one contiguous buffer; an unfinished last line is carried over into `carry`. */
static int
scan_buffer(Scan *s, Bytes *carry, const uint8_t *data, Py_ssize_t len, int last)
{
    Py_ssize_t pos = 0;
    if (carry->len) {
        const uint8_t *nl = memchr(data, '\n', (size_t)len);
        if (nl == NULL) {
            if (bytes_append(carry, data, len) < 0)
                return -1;
            if (last) {
                if (scan_line(s, (const uint8_t *)carry->data, carry->len) < 0)
                    return -1;
                carry->len = 0;
            }
            return 0;
        }
        if (bytes_append(carry, data, nl - data) < 0)
            return -1;
        if (scan_line(s, (const uint8_t *)carry->data, carry->len) < 0)
            return -1;
        carry->len = 0;
        pos = nl - data + 1;
    }
    Py_ssize_t jump = min_line(s->n_samples);
    while (pos < len) {
        const uint8_t *nl = NULL;
        if (data[pos] == '#' && !s->in_records)
            nl = memchr(data + pos, '\n', (size_t)(len - pos));
        else if (pos + jump < len)
            nl = memchr(data + pos + jump, '\n', (size_t)(len - pos - jump));
        if (nl == NULL) {
            if (last) {
                if (scan_line(s, data + pos, len - pos) < 0)
                    return -1;
            } else if (bytes_append(carry, data + pos, len - pos) < 0)
                return -1;
            return 0;
        }
        if (scan_line(s, data + pos, nl - (data + pos)) < 0)
            return -1;
        pos = nl - data + 1;
    }
    return 0;
}

/* The buffers a call has acquired, released together on every way out. */
typedef struct {
    Py_buffer views[6];
    int count;
} Held;

/* Acquire `obj`'s buffer (`writable`: C-contiguous and writable), or set an exception naming
 * the argument and return NULL. */
static Py_buffer *
hold(Held *held, PyObject *obj, int writable, const char *what)
{
    Py_buffer *view = &held->views[held->count];
    int flags = writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS : PyBUF_C_CONTIGUOUS;
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a %sC-contiguous buffer", what,
                     writable ? "writable " : "");
        return NULL;
    }
    held->count++;
    return view;
}

static void
release(Held *held)
{
    while (held->count > 0)
        PyBuffer_Release(&held->views[--held->count]);
}

PyDoc_STRVAR(scan_gt_lines_doc,
"scan_gt_lines(parts, n_samples, genotypes, phased)\n--\n\n"
"Decode the record lines held in `parts` (bytes-like objects read as one text, e.g. inflated\n"
"BGZF blocks; leading '#' lines are skipped) into `genotypes` (int8, rows x n_samples x 2) and\n"
"`phased` (bool, rows x n_samples). Returns (rows, heads, flags, tops): the fixed columns of\n"
"every line (CHROM..INFO, newline-separated), per-row flags (1: a missing allele, 2: an\n"
"unphased call) and per-row largest allele index (-1: all missing). Returns None when any line\n"
"is not FORMAT `GT` with one-character calls, or the output is too small: parse generally.");

static PyObject *
scan_gt_lines(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *parts, *gt_obj, *ph_obj;
    Py_ssize_t n_samples;
    if (!PyArg_ParseTuple(args, "OnOO", &parts, &n_samples, &gt_obj, &ph_obj))
        return NULL;
    if (n_samples <= 0) {
        PyErr_SetString(PyExc_ValueError, "n_samples must be positive");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(parts, "parts must be a sequence of bytes-like objects");
    if (seq == NULL)
        return NULL;
    PyObject *result = NULL;
    Held held = {0};
    Scan s = {0};
    Bytes carry = {0};
    Py_buffer *gt = hold(&held, gt_obj, 1, "genotypes");
    Py_buffer *ph = gt ? hold(&held, ph_obj, 1, "phased") : NULL;
    if (ph == NULL)
        goto done;
    s.n_samples = n_samples;
    s.gt = gt->buf;
    s.ph = ph->buf;
    s.capacity = gt->len / (2 * n_samples);
    if (ph->len / n_samples < s.capacity)
        s.capacity = ph->len / n_samples;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    int declined = 0;
    for (Py_ssize_t i = 0; i < count && !declined; i++) {
        Py_buffer part;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &part, PyBUF_SIMPLE) < 0)
            goto done;
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = scan_buffer(&s, &carry, part.buf, part.len, i + 1 == count);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&part);
        declined = status < 0;
    }
    if (declined || s.rows == 0)
        result = Py_NewRef(Py_None);
    else
        result = Py_BuildValue("ny#y#y#", s.rows, s.heads.data, s.heads.len, s.flags.data,
                               s.flags.len, s.tops.data, s.tops.len);
done:
    free(carry.data);
    free(s.heads.data);
    free(s.flags.data);
    free(s.tops.data);
    release(&held);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(decode_calls_doc,
"decode_calls(text, starts, rows, n_samples, genotypes, phased)\n--\n\n"
"Decode the sample columns starting at each offset of `starts` (int64) in `text` into row\n"
"`rows[k]` (int64) of `genotypes` and `phased`. Returns the list of k whose bytes were not\n"
"FORMAT `GT` with one-character calls (the caller parses those lines generally).");

static PyObject *
decode_calls(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *text_obj, *starts_obj, *rows_obj, *gt_obj, *ph_obj;
    Py_ssize_t n_samples;
    if (!PyArg_ParseTuple(args, "OOOnOO", &text_obj, &starts_obj, &rows_obj, &n_samples, &gt_obj,
                          &ph_obj))
        return NULL;
    PyObject *bad = NULL;
    Held held = {0};
    Py_buffer *text = hold(&held, text_obj, 0, "text");
    Py_buffer *starts = text ? hold(&held, starts_obj, 0, "starts") : NULL;
    Py_buffer *rows = starts ? hold(&held, rows_obj, 0, "rows") : NULL;
    Py_buffer *gt = rows ? hold(&held, gt_obj, 1, "genotypes") : NULL;
    Py_buffer *ph = gt ? hold(&held, ph_obj, 1, "phased") : NULL;
    if (ph == NULL)
        goto done;
    Py_ssize_t count = starts->len / 8;
    if (n_samples <= 0 || rows->len / 8 != count) {
        PyErr_SetString(PyExc_ValueError, "starts and rows must be int64 of equal length, "
                                          "n_samples positive");
        goto done;
    }
    bad = PyList_New(0);
    if (bad == NULL)
        goto done;
    const int64_t *start = starts->buf, *row = rows->buf;
    Py_ssize_t width = 4 * n_samples - 1;
    Py_ssize_t capacity = gt->len / (2 * n_samples);
    if (ph->len / n_samples < capacity)
        capacity = ph->len / n_samples;
    for (Py_ssize_t k = 0; k < count; k++) {
        uint8_t flags;
        int8_t top;
        int ok = start[k] >= 0 && start[k] + width <= text->len && row[k] >= 0 &&
                 row[k] < capacity &&
                 decode_line((const uint8_t *)text->buf + start[k], n_samples,
                             (int8_t *)gt->buf + 2 * row[k] * n_samples,
                             (uint8_t *)ph->buf + row[k] * n_samples, &flags, &top) == 0;
        if (!ok) {
            PyObject *index = PyLong_FromSsize_t(k);
            if (index == NULL || PyList_Append(bad, index) < 0) {
                Py_XDECREF(index);
                Py_CLEAR(bad);
                goto done;
            }
            Py_DECREF(index);
        }
    }
done:
    release(&held);
    return bad;
}

PyDoc_STRVAR(count_alleles_doc,
"count_alleles(genotypes, n_samples, sample_class, n_classes, counts, allele=1)\n--\n\n"
"For every row of `genotypes` (int8, rows x n_samples x ploidy 2) and every sample class\n"
"(`sample_class`, int32 per sample, values below n_classes), count the alleles equal to\n"
"`allele` and the called alleles (>= 0) into `counts` (int32, rows x n_classes x 2). Missing\n"
"(-1) and absent (-2, haploid) alleles are not called.");

static PyObject *
count_alleles(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *gt_obj, *class_obj, *counts_obj;
    Py_ssize_t n_samples, n_classes;
    int allele = 1;
    if (!PyArg_ParseTuple(args, "OnOnO|i", &gt_obj, &n_samples, &class_obj, &n_classes,
                          &counts_obj, &allele))
        return NULL;
    if (allele < 0 || allele > 127) {
        PyErr_SetString(PyExc_ValueError, "allele must be an allele index (0-127)");
        return NULL;
    }
    const int8_t target = (int8_t)allele;
    PyObject *result = NULL;
    Held held = {0};
    Py_buffer *gt = hold(&held, gt_obj, 0, "genotypes");
    Py_buffer *classes = gt ? hold(&held, class_obj, 0, "sample_class") : NULL;
    Py_buffer *counts = classes ? hold(&held, counts_obj, 1, "counts") : NULL;
    if (counts == NULL)
        goto done;
    Py_ssize_t rows = n_samples > 0 ? gt->len / (2 * n_samples) : 0;
    const int32_t *cls = classes->buf;
    int valid = n_samples > 0 && n_classes > 0 && classes->len == 4 * n_samples &&
                gt->len == rows * 2 * n_samples && counts->len == rows * n_classes * 2 * 4;
    for (Py_ssize_t i = 0; valid && i < n_samples; i++)
        valid = cls[i] >= 0 && cls[i] < n_classes;
    if (!valid) {
        PyErr_SetString(PyExc_ValueError, "count_alleles: shapes or sample classes do not agree");
        goto done;
    }
    /* The samples of each class, in order (a counting sort), so that each class is summed in
     * registers: accumulating into counts[class] sample by sample would chain every addition
     * through memory. A class that is one run of samples (e.g. "all") is summed directly. */
    Py_ssize_t *order = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)n_samples);
    Py_ssize_t *first = PyMem_Calloc((size_t)n_classes + 1, sizeof(Py_ssize_t));
    if (order == NULL || first == NULL) {
        PyMem_Free(order);
        PyMem_Free(first);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n_samples; i++)
        first[cls[i] + 1]++;
    for (Py_ssize_t c = 0; c < n_classes; c++)
        first[c + 1] += first[c];
    for (Py_ssize_t i = 0, *next = first; i < n_samples; i++)
        order[next[cls[i]]++] = i; /* `first` now holds each class's end ... */
    for (Py_ssize_t c = n_classes; c > 0; c--)
        first[c] = first[c - 1]; /* ... shifted back to its start */
    first[0] = 0;
    const int8_t *g = gt->buf;
    int32_t *out = counts->buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        const int8_t *row = g + 2 * r * n_samples;
        int32_t *acc = out + 2 * r * n_classes;
        for (Py_ssize_t c = 0; c < n_classes; c++) {
            Py_ssize_t lo = first[c], hi = first[c + 1];
            int32_t ones = 0, called = 0;
            if (hi > lo && order[hi - 1] - order[lo] == hi - 1 - lo) {
                const int8_t *a = row + 2 * order[lo];
                for (Py_ssize_t k = 0; k < 2 * (hi - lo); k++) {
                    ones += a[k] == target;
                    called += a[k] >= 0;
                }
            } else {
                for (Py_ssize_t k = lo; k < hi; k++) {
                    const int8_t *a = row + 2 * order[k];
                    ones += (a[0] == target) + (a[1] == target);
                    called += (a[0] >= 0) + (a[1] >= 0);
                }
            }
            acc[2 * c] = ones;
            acc[2 * c + 1] = called;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(order);
    PyMem_Free(first);
    result = Py_NewRef(Py_None);
done:
    release(&held);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_gt_lines", scan_gt_lines, METH_VARARGS, scan_gt_lines_doc},
    {"decode_calls", decode_calls, METH_VARARGS, decode_calls_doc},
    {"count_alleles", count_alleles, METH_VARARGS, count_alleles_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "genofed.ingest._calls",
    .m_doc = "Genotype-call kernels for ingest (see the source's opening comment).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__calls(void)
{
    return PyModule_Create(&module);
}
