/* glimpse._resample: Pillow's 8-bit convolution resize of an RGB image, computing only a crop of the result.
 *
 * Why it exists: resizing a photo to the model's input (``Image.resize``, bicubic) is the largest CPU cost of
 * indexing after the encoder itself, and the reference preprocessing (transformers' PIL processors, open_clip)
 * is defined by Pillow's arithmetic. This kernel reproduces that arithmetic bit for bit, and is faster because
 *   - only the pixels the center crop keeps are computed (Pillow resizes the whole image, then we crop), and
 *   - both passes run over contiguous memory, so the compiler vectorizes their integer multiply-adds
 *     (the horizontal pass works on a transposed copy of the source columns it needs).
 *
 * The arithmetic (Pillow's src/libImaging/Resample.c, the facts this reproduces):
 *   - per axis, scale = in / out; filterscale = max(scale, 1); support = filter_support * filterscale;
 *     output i is centred on (i + 0.5) * scale; its taps run from xmin = (int)(center - support + 0.5)
 *     (at least 0) to (int)(center + support + 0.5) (at most in); tap x weighs
 *     filter((x + xmin - center + 0.5) / filterscale), normalised by the weights' sum (summed in tap order);
 *   - weights become integers with 22 fractional bits, rounded half away from zero;
 *   - each output is (2^21 + sum of pixel * weight) >> 22, clamped to 0..255; one pass runs into an 8-bit
 *     image, then the other: horizontal first, except that recent Pillow runs the vertical pass first where the
 *     height loses more than twice as many pixels as the width (the caller says which, vertical_first);
 *     an axis whose size does not change is not resampled.
 * Integer sums are exact, so the order of the additions does not matter: only the weights must match, and
 * they are computed with the same double operations in the same order (compiled with -ffp-contract=off).
 *
 * The source is either a packed buffer (3 bytes per pixel) or Pillow's own pixel memory, exported through the
 * Arrow C data interface (``Image.__arrow_c_array__``: 4 bytes per pixel, R G B and a pad byte): no copy of the
 * image is made. The crop can also leave as the model's input: a lookup table (float32[3][256], the normalised
 * value of every level per channel) turns it into float32[3][ch][cw] (C, H, W) on the way out.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define FRACTION_BITS 22

/* Hot loops get an AVX2 clone where the toolchain can dispatch at load time (GCC / clang on x86-64 Linux). */
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

typedef double (*filter_fn)(double);

static double filter_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    /* the window's constants are single-precision literals in the reference */
    return sin(x) / x * ((double)0.54f + (double)0.46f * cos(x));
}

static double filter_bicubic(double x) { /* Keys' cubic, a = -0.5 */
    if (x < 0.0) x = -x;
    if (x < 1.0) return (1.5 * x - 2.5) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double filter_lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

/* Filter ids, as glimpse.preprocess names them. */
static const struct {
    filter_fn fn;
    double support;
} FILTERS[] = {
    {filter_box, 0.5}, {filter_bilinear, 1.0}, {filter_hamming, 1.0}, {filter_bicubic, 2.0}, {filter_lanczos, 3.0},
};
#define FILTER_COUNT ((int)(sizeof(FILTERS) / sizeof(FILTERS[0])))

typedef struct {
    int ksize;        /* weights stored per output */
    int *first;       /* first source index of each output */
    int *taps;        /* taps of each output */
    int32_t *weights; /* count x ksize fixed-point weights */
} Axis;

static void axis_free(Axis *a) {
    free(a->first);
    free(a->taps);
    free(a->weights);
}

/* Weights of outputs [start, start + count) of an in_size -> out_size resample. 0 on success. */
static int axis_weights(Axis *a, int in_size, int out_size, int start, int count, int filter) {
    const double scale = (double)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = FILTERS[filter].support * filterscale;
    const double inverse = 1.0 / filterscale;
    double *w;
    memset(a, 0, sizeof(*a));
    a->ksize = (int)ceil(support) * 2 + 1;
    w = malloc(sizeof(double) * (size_t)a->ksize);
    a->first = malloc(sizeof(int) * (size_t)count);
    a->taps = malloc(sizeof(int) * (size_t)count);
    a->weights = calloc((size_t)count * (size_t)a->ksize, sizeof(int32_t));
    if (!w || !a->first || !a->taps || !a->weights) {
        free(w);
        axis_free(a);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        const double center = (start + i + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        int hi = (int)(center + support + 0.5);
        double total = 0.0;
        int32_t *k = a->weights + (size_t)i * a->ksize;
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        for (int t = 0; t < hi - lo; t++) {
            w[t] = FILTERS[filter].fn((t + lo - center + 0.5) * inverse);
            total += w[t];
        }
        for (int t = 0; t < hi - lo; t++) {
            const double v = total != 0.0 ? w[t] / total : w[t];
            k[t] = v < 0 ? (int32_t)(-0.5 + v * (1 << FRACTION_BITS)) : (int32_t)(0.5 + v * (1 << FRACTION_BITS));
        }
        a->first[i] = lo;
        a->taps[i] = hi - lo;
    }
    free(w);
    return 0;
}

static inline uint8_t clamp8(int32_t sum) {
    const int32_t v = sum >> FRACTION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Outputs of one axis over rows of n contiguous bytes: out[i] = clamp((2^21 + sum_t k[t] * row(first + t)) >> 22).
 * `rows` points at source row `base`; `acc` holds n sums (a row of them stays in L1 across the taps: measured
 * faster than keeping strips of sums in registers). */
VECTOR_CLONES
static void convolve_rows(const uint8_t *rows, size_t stride, int base, size_t n, const Axis *a, int count,
                          uint8_t *out, size_t out_stride, int32_t *acc) {
    for (int i = 0; i < count; i++) {
        const int32_t *k = a->weights + (size_t)i * a->ksize;
        const uint8_t *src = rows + (size_t)(a->first[i] - base) * stride;
        uint8_t *dst = out + (size_t)i * out_stride;
        for (size_t j = 0; j < n; j++) acc[j] = 1 << (FRACTION_BITS - 1);
        for (int t = 0; t < a->taps[i]; t++, src += stride) {
            const int32_t kt = k[t];
            for (size_t j = 0; j < n; j++) acc[j] += (int32_t)src[j] * kt;
        }
        for (size_t j = 0; j < n; j++) dst[j] = clamp8(acc[j]);
    }
}

static inline void copy3(uint8_t *d, const uint8_t *s) {
    d[0] = s[0];
    d[1] = s[1];
    d[2] = s[2];
}

/* One 4-byte move for a 3-byte pixel: the byte after it is read (the next pixel's) and overwritten later. */
static inline void copy4(uint8_t *d, const uint8_t *s) {
    uint32_t v;
    memcpy(&v, s, 4);
    memcpy(d, &v, 4);
}

/* dst[x][r] = src[r][x]: src is rows x cols pixels of `step` bytes (3 or 4; row stride in bytes), dst cols x rows
 * packed 3-byte pixels. Blocks of rows keep the source lines in cache across columns. The last column is read,
 * and the last row written, 3 bytes at a time, so that no 4-byte move reads past the window or overwrites a pixel
 * already written. */
static void transpose_pixels(const uint8_t *src, size_t stride, size_t step, int rows, int cols, uint8_t *dst) {
    enum { BLOCK = 32 };
    for (int r0 = 0; r0 < rows; r0 += BLOCK) {
        const int r1 = r0 + BLOCK < rows ? r0 + BLOCK : rows;
        const int wide_end = r1 < rows ? r1 : rows - 1; /* rows r0..wide_end may take 4-byte moves */
        for (int x = 0; x < cols; x++) {
            uint8_t *d = dst + ((size_t)x * rows + r0) * 3;
            const uint8_t *s = src + (size_t)r0 * stride + (size_t)x * step;
            int r = r0;
            if (x + 1 < cols)
                for (; r < wide_end; r++, s += stride, d += 3) copy4(d, s);
            for (; r < r1; r++, s += stride, d += 3) copy3(d, s);
        }
    }
}

static int last_source(const Axis *a, int count) {
    int end = 0;
    for (int i = 0; i < count; i++)
        if (a->first[i] + a->taps[i] > end) end = a->first[i] + a->taps[i];
    return end;
}

/* Horizontal pass: `rows` rows of source columns c0..c1 (`src` points at column c0, row stride in bytes, pixels of
 * `step` bytes) into out (rows x count packed pixels, dense). It is a pass over the rows of the transposed source,
 * so that its inner loop runs over contiguous bytes, done in bands of BAND rows: the transposed copies stay small
 * (in cache, and a 100 MP image needs no second copy of itself). 0 on success. */
enum { BAND = 128 };

static int horizontal_pass(const uint8_t *src, size_t stride, size_t step, int rows, const Axis *ax, int count, int c0,
                           int c1, uint8_t *out) {
    const int band = rows < BAND ? rows : BAND;
    const size_t n = (size_t)band * 3;
    uint8_t *columns = malloc((size_t)(c1 - c0) * n), *result = malloc((size_t)count * n);
    int32_t *acc = malloc(sizeof(int32_t) * n);
    int rc = -1;
    if (columns && result && acc) {
        for (int r0 = 0; r0 < rows; r0 += band) {
            const int m = rows - r0 < band ? rows - r0 : band;
            transpose_pixels(src + (size_t)r0 * stride, stride, step, m, c1 - c0, columns);
            convolve_rows(columns, (size_t)m * 3, c0, (size_t)m * 3, ax, count, result, (size_t)m * 3, acc);
            transpose_pixels(result, (size_t)m * 3, 3, count, m, out + (size_t)r0 * count * 3);
        }
        rc = 0;
    }
    free(columns);
    free(result);
    free(acc);
    return rc;
}

/* Vertical pass: outputs of ay over rows of n bytes (`src` points at source row `base`). 0 on success. */
static int vertical_pass(const uint8_t *src, size_t stride, int base, size_t n, const Axis *ay, int count, uint8_t *out,
                         size_t out_stride) {
    int32_t *acc = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!acc) return -1;
    convolve_rows(src, stride, base, n, ay, count, out, out_stride, acc);
    free(acc);
    return 0;
}

static void copy_rows(const uint8_t *src, size_t stride, int rows, size_t n, uint8_t *out) {
    for (int r = 0; r < rows; r++) memcpy(out + (size_t)r * n, src + (size_t)r * stride, n);
}

/* The crop's pixels (ch x cw, `step` bytes each) leave as packed RGB (out8) or, through `table`, as the
 * normalised float32[3][ch][cw] (outf). */
static void emit(const uint8_t *crop, size_t step, int ch, int cw, const float *table, uint8_t *out8, float *outf) {
    const size_t n = (size_t)ch * cw;
    if (!table) {
        for (size_t i = 0; i < n; i++) copy3(out8 + i * 3, crop + i * step);
        return;
    }
    for (int c = 0; c < 3; c++) {
        const float *t = table + c * 256;
        float *d = outf + (size_t)c * n;
        const uint8_t *p = crop + c;
        for (size_t i = 0; i < n; i++) d[i] = t[p[i * step]];
    }
}

/* The crop (x0, y0, cw, ch) of src (height x width pixels of `step` bytes, RGB first) resized to out_w x out_h,
 * the horizontal pass first unless vertical_first, into out8 (ch x cw packed RGB) or, with `table`, outf
 * (float32[3][ch][cw]). 0 on success. */
static int resize_crop(const uint8_t *src, size_t stride, size_t step, int width, int height, int out_w, int out_h,
                       int x0, int y0, int cw, int ch, int filter, int vertical_first, const float *table,
                       uint8_t *out8, float *outf) {
    const int need_h = out_w != width, need_v = out_h != height;
    const size_t out_n = (size_t)cw * 3;
    Axis ax = {0}, ay = {0};
    uint8_t *mid = NULL, *crop = NULL;
    size_t crop_step = 3; /* the horizontal pass packs; a vertical-only or copy-only crop keeps the source's step */
    int rc = -1;

    if (need_h && axis_weights(&ax, width, out_w, x0, cw, filter)) goto done;
    if (need_v && axis_weights(&ay, height, out_h, y0, ch, filter)) goto done;
    if (!need_h) crop_step = step;
    /* Packed 3-byte output without a table is written in place; anything else goes through `crop`. */
    if (crop_step == 3 && !table) {
        crop = out8;
    } else if (!(crop = malloc((size_t)ch * cw * crop_step))) {
        goto done;
    }
    /* the source rows (columns) the kept outputs of the vertical (horizontal) pass reach */
    const int r0 = need_v ? ay.first[0] : y0, r1 = need_v ? last_source(&ay, ch) : y0 + ch;
    const int c0 = need_h ? ax.first[0] : x0, c1 = need_h ? last_source(&ax, cw) : x0 + cw;
    if (!need_h && !need_v) {
        copy_rows(src + (size_t)y0 * stride + (size_t)x0 * step, stride, ch, (size_t)cw * step, crop);
    } else if (!need_v) {
        if (horizontal_pass(src + (size_t)y0 * stride + (size_t)c0 * step, stride, step, ch, &ax, cw, c0, c1, crop))
            goto done;
    } else if (!need_h) {
        const size_t n = (size_t)cw * step;
        if (vertical_pass(src + (size_t)r0 * stride + (size_t)x0 * step, stride, r0, n, &ay, ch, crop, n)) goto done;
    } else if (!vertical_first) { /* rows r0..r1 resampled across, then down */
        if (!(mid = malloc((size_t)(r1 - r0) * out_n))) goto done;
        if (horizontal_pass(src + (size_t)r0 * stride + (size_t)c0 * step, stride, step, r1 - r0, &ax, cw, c0, c1,
                            mid))
            goto done;
        if (vertical_pass(mid, out_n, r0, out_n, &ay, ch, crop, out_n)) goto done;
    } else { /* columns c0..c1 resampled down (pad bytes too: they are never read back), then across */
        const size_t mid_n = (size_t)(c1 - c0) * step;
        if (!(mid = malloc((size_t)ch * mid_n))) goto done;
        if (vertical_pass(src + (size_t)r0 * stride + (size_t)c0 * step, stride, r0, mid_n, &ay, ch, mid, mid_n))
            goto done;
        if (horizontal_pass(mid, mid_n, step, ch, &ax, cw, c0, c1, crop)) goto done;
    }
    if (crop != out8) emit(crop, crop_step, ch, cw, table, out8, outf);
    rc = 0;
done:
    axis_free(&ax);
    axis_free(&ay);
    free(mid);
    if (crop != out8) free(crop);
    return rc;
}

/* The Arrow C data interface's structs (a stable ABI: arrow.apache.org/docs/format/CDataInterface.html). */
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};

struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* The first byte of an RGB image Pillow exported as (schema, array) capsules: a fixed-size list of 4 uint8 per
 * pixel ("+w:4" of "C"), `pixels` long, no nulls. NULL with an exception set when it is anything else. */
static const uint8_t *arrow_pixels(PyObject *capsules, Py_ssize_t pixels) {
    PyObject *schema_capsule, *array_capsule;
    if (!PyTuple_Check(capsules) || PyTuple_GET_SIZE(capsules) != 2) {
        PyErr_SetString(PyExc_ValueError, "the source must be a buffer or (arrow_schema, arrow_array) capsules");
        return NULL;
    }
    schema_capsule = PyTuple_GET_ITEM(capsules, 0);
    array_capsule = PyTuple_GET_ITEM(capsules, 1);
    const struct ArrowSchema *schema = PyCapsule_GetPointer(schema_capsule, "arrow_schema");
    if (!schema) return NULL;
    const struct ArrowArray *array = PyCapsule_GetPointer(array_capsule, "arrow_array");
    if (!array) return NULL;
    const struct ArrowArray *child = array->n_children == 1 ? array->children[0] : NULL;
    if (!schema->format || strcmp(schema->format, "+w:4") != 0 || schema->n_children != 1 ||
        !schema->children[0]->format || strcmp(schema->children[0]->format, "C") != 0 || !child ||
        array->length != pixels || array->offset != 0 || array->null_count != 0 || child->n_buffers != 2 ||
        child->null_count != 0 || child->length != (int64_t)pixels * 4 || !child->buffers[1]) {
        PyErr_SetString(PyExc_ValueError, "the Arrow source is not width x height pixels of 4 bytes");
        return NULL;
    }
    return (const uint8_t *)child->buffers[1] + child->offset;
}

static PyObject *py_resize_crop(PyObject *self, PyObject *args) {
    PyObject *source, *table_obj;
    Py_buffer src = {0}, out = {0}, table = {0};
    int width, height, out_w, out_h, x0, y0, cw, ch, filter, vertical_first, rc;
    const uint8_t *pixels = NULL;
    size_t step = 3;
    (void)self;
    if (!PyArg_ParseTuple(args, "OiiiiiiiiipOw*", &source, &width, &height, &out_w, &out_h, &x0, &y0, &cw, &ch,
                          &filter, &vertical_first, &table_obj, &out))
        return NULL;
    const char *problem = NULL;
    if (width < 1 || height < 1 || out_w < 1 || out_h < 1 || cw < 1 || ch < 1)
        problem = "sizes must be positive";
    else if (x0 < 0 || y0 < 0 || x0 + cw > out_w || y0 + ch > out_h)
        problem = "the crop must lie inside the resized image";
    else if (filter < 0 || filter >= FILTER_COUNT)
        problem = "unknown filter id";
    else if (!PyBuffer_IsContiguous(&out, 'C'))
        problem = "buffers must be C-contiguous";
    else if (table_obj == Py_None ? out.len != (Py_ssize_t)cw * ch * 3
                                  : out.len != (Py_ssize_t)cw * ch * 3 * (Py_ssize_t)sizeof(float))
        problem = table_obj == Py_None ? "output buffer is not ch x cw x 3 bytes"
                                       : "output buffer is not 3 x ch x cw float32";
    if (!problem && table_obj != Py_None) {
        if (PyObject_GetBuffer(table_obj, &table, PyBUF_C_CONTIGUOUS) < 0) goto fail;
        if (table.len != 3 * 256 * (Py_ssize_t)sizeof(float)) problem = "table is not float32[3][256]";
    }
    if (!problem && PyObject_CheckBuffer(source)) {
        if (PyObject_GetBuffer(source, &src, PyBUF_C_CONTIGUOUS) < 0) goto fail;
        if (src.len != (Py_ssize_t)width * height * 3) problem = "source buffer is not height x width x 3 bytes";
        pixels = src.buf;
    } else if (!problem) {
        pixels = arrow_pixels(source, (Py_ssize_t)width * height);
        if (!pixels) goto fail;
        step = 4;
    }
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = resize_crop(pixels, (size_t)width * step, step, width, height, out_w, out_h, x0, y0, cw, ch, filter,
                     vertical_first, table.buf, out.buf, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&src);
    PyBuffer_Release(&table);
    PyBuffer_Release(&out);
    return NULL;
}

static PyMethodDef METHODS[] = {
    {"resize_crop", py_resize_crop, METH_VARARGS,
     "resize_crop(src, width, height, out_w, out_h, x0, y0, cw, ch, filter, vertical_first, table, out)\n\n"
     "Write the (x0, y0, cw, ch) crop of `src` resized to out_w x out_h into `out`, with Pillow's 8-bit\n"
     "arithmetic. src: uint8 RGB (height x width x 3, C order), or an RGB Pillow image's\n"
     "__arrow_c_array__() capsules (its own memory, 4 bytes per pixel). filter: 0 box, 1 bilinear, 2 hamming,\n"
     "3 bicubic, 4 lanczos; vertical_first: run the vertical pass first (recent Pillow does where the height\n"
     "shrinks by more than twice as many pixels as the width). table None: out is uint8 ch x cw x 3; a\n"
     "float32[3][256] table: out is float32 3 x ch x cw, out[c][y][x] = table[c][pixel]. Releases the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_resample", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit__resample(void) { return PyModule_Create(&MODULE); }
