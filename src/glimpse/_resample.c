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

/* dst[x][r] = src[r][x] for 3-byte pixels: src is rows x cols (row stride in bytes), dst cols x rows. Blocks of
 * rows keep the source lines in cache across columns. The last column is read, and the last row written, 3 bytes
 * at a time, so that no 4-byte move reads past the window or overwrites a pixel already written. */
static void transpose_pixels(const uint8_t *src, size_t stride, int rows, int cols, uint8_t *dst) {
    enum { BLOCK = 32 };
    for (int r0 = 0; r0 < rows; r0 += BLOCK) {
        const int r1 = r0 + BLOCK < rows ? r0 + BLOCK : rows;
        const int wide_end = r1 < rows ? r1 : rows - 1; /* rows r0..wide_end may take 4-byte moves */
        for (int x = 0; x < cols; x++) {
            uint8_t *d = dst + ((size_t)x * rows + r0) * 3;
            const uint8_t *s = src + (size_t)r0 * stride + (size_t)x * 3;
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

/* Horizontal pass: `rows` rows of source columns c0..c1 (`src` points at column c0, row stride in bytes) into
 * out (rows x count pixels, dense). It is a pass over the rows of the transposed source, so that its inner loop
 * runs over contiguous bytes, done in bands of BAND rows: the transposed copies stay small (in cache, and a
 * 100 MP image needs no second copy of itself). 0 on success. */
enum { BAND = 128 };

static int horizontal_pass(const uint8_t *src, size_t stride, int rows, const Axis *ax, int count, int c0, int c1,
                           uint8_t *out) {
    const int band = rows < BAND ? rows : BAND;
    const size_t n = (size_t)band * 3;
    uint8_t *columns = malloc((size_t)(c1 - c0) * n), *result = malloc((size_t)count * n);
    int32_t *acc = malloc(sizeof(int32_t) * n);
    int rc = -1;
    if (columns && result && acc) {
        for (int r0 = 0; r0 < rows; r0 += band) {
            const int m = rows - r0 < band ? rows - r0 : band;
            transpose_pixels(src + (size_t)r0 * stride, stride, m, c1 - c0, columns);
            convolve_rows(columns, (size_t)m * 3, c0, (size_t)m * 3, ax, count, result, (size_t)m * 3, acc);
            transpose_pixels(result, (size_t)m * 3, count, m, out + (size_t)r0 * count * 3);
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

/* The crop (x0, y0, cw, ch) of src (height x width RGB) resized to out_w x out_h, into out (ch x cw RGB), the
 * horizontal pass first unless vertical_first. 0 on success. */
static int resize_crop(const uint8_t *src, int width, int height, int out_w, int out_h, int x0, int y0, int cw,
                       int ch, int filter, int vertical_first, uint8_t *out) {
    const int need_h = out_w != width, need_v = out_h != height;
    const size_t stride = (size_t)width * 3, out_n = (size_t)cw * 3;
    Axis ax = {0}, ay = {0};
    uint8_t *mid = NULL;
    int rc = -1;

    if (need_h && axis_weights(&ax, width, out_w, x0, cw, filter)) goto done;
    if (need_v && axis_weights(&ay, height, out_h, y0, ch, filter)) goto done;
    /* the source rows (columns) the kept outputs of the vertical (horizontal) pass reach */
    const int r0 = need_v ? ay.first[0] : y0, r1 = need_v ? last_source(&ay, ch) : y0 + ch;
    const int c0 = need_h ? ax.first[0] : x0, c1 = need_h ? last_source(&ax, cw) : x0 + cw;
    if (!need_h && !need_v) {
        copy_rows(src + (size_t)y0 * stride + (size_t)x0 * 3, stride, ch, out_n, out);
    } else if (!need_v) {
        rc = horizontal_pass(src + (size_t)y0 * stride + (size_t)c0 * 3, stride, ch, &ax, cw, c0, c1, out);
        goto done;
    } else if (!need_h) {
        rc = vertical_pass(src + (size_t)r0 * stride + (size_t)x0 * 3, stride, r0, out_n, &ay, ch, out, out_n);
        goto done;
    } else if (!vertical_first) { /* rows r0..r1 resampled across, then down */
        if (!(mid = malloc((size_t)(r1 - r0) * out_n))) goto done;
        if (horizontal_pass(src + (size_t)r0 * stride + (size_t)c0 * 3, stride, r1 - r0, &ax, cw, c0, c1, mid))
            goto done;
        if (vertical_pass(mid, out_n, r0, out_n, &ay, ch, out, out_n)) goto done;
    } else { /* columns c0..c1 resampled down, then across */
        const size_t mid_n = (size_t)(c1 - c0) * 3;
        if (!(mid = malloc((size_t)ch * mid_n))) goto done;
        if (vertical_pass(src + (size_t)r0 * stride + (size_t)c0 * 3, stride, r0, mid_n, &ay, ch, mid, mid_n)) goto done;
        if (horizontal_pass(mid, mid_n, ch, &ax, cw, c0, c1, out)) goto done;
    }
    rc = 0;
done:
    axis_free(&ax);
    axis_free(&ay);
    free(mid);
    return rc;
}

static PyObject *py_resize_crop(PyObject *self, PyObject *args) {
    Py_buffer src, out;
    int width, height, out_w, out_h, x0, y0, cw, ch, filter, vertical_first, rc;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iiiiiiiiipw*", &src, &width, &height, &out_w, &out_h, &x0, &y0, &cw, &ch, &filter,
                          &vertical_first, &out))
        return NULL;
    const char *problem = NULL;
    if (width < 1 || height < 1 || out_w < 1 || out_h < 1 || cw < 1 || ch < 1)
        problem = "sizes must be positive";
    else if (x0 < 0 || y0 < 0 || x0 + cw > out_w || y0 + ch > out_h)
        problem = "the crop must lie inside the resized image";
    else if (filter < 0 || filter >= FILTER_COUNT)
        problem = "unknown filter id";
    else if (src.len != (Py_ssize_t)width * height * 3)
        problem = "source buffer is not height x width x 3 bytes";
    else if (out.len != (Py_ssize_t)cw * ch * 3)
        problem = "output buffer is not ch x cw x 3 bytes";
    else if (!PyBuffer_IsContiguous(&src, 'C') || !PyBuffer_IsContiguous(&out, 'C'))
        problem = "buffers must be C-contiguous";
    if (problem) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = resize_crop(src.buf, width, height, out_w, out_h, x0, y0, cw, ch, filter, vertical_first, out.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    if (rc) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef METHODS[] = {
    {"resize_crop", py_resize_crop, METH_VARARGS,
     "resize_crop(src, width, height, out_w, out_h, x0, y0, cw, ch, filter, vertical_first, out)\n\n"
     "Write the (x0, y0, cw, ch) crop of `src` (uint8 RGB, height x width x 3, C order) resized to out_w x out_h\n"
     "into `out` (uint8, ch x cw x 3), with Pillow's 8-bit arithmetic. filter: 0 box, 1 bilinear, 2 hamming,\n"
     "3 bicubic, 4 lanczos; vertical_first: run the vertical pass first (recent Pillow does where the height\n"
     "shrinks by more than twice as many pixels as the width). Releases the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_resample", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit__resample(void) { return PyModule_Create(&MODULE); }
