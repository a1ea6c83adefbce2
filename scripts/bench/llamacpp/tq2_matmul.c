// llama.cpp (ggml) TQ2_0 reference timing for `npm run bench -- kernels`.
//
// Built by scripts/bench/llamacpp.ts against the prebuilt ggml shared libraries that the npm package
// @node-llama-cpp/linux-x64 ships (libggml-base.so + one libggml-cpu-<isa>.so). We declare the handful of
// ggml entry points we call ourselves, so no llama.cpp header or source is needed; the layouts used are the
// stable parts of ggml.h (ggml_init_params, the enum values of GGML_TYPE_F32/TQ2_0).
//
// Method, matching scripts/bench/kernels.ts: one graph holds one mul_mat node per copy of the weight matrix,
// the copies totalling `rotateMiB` (several times the LLC) so every product reads its weights from DRAM. The
// activation is F32 [cols x batch]; ggml quantizes it to q8_K inside the op (that cost is included, as it is in
// llama.cpp). Prints one JSON line per (rows, cols, batch): median microseconds per product over `reps` graphs.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <time.h>

struct ggml_context;
struct ggml_tensor;
struct ggml_cgraph;
struct ggml_init_params { size_t mem_size; void *mem_buffer; bool no_alloc; };
enum { TYPE_F32 = 0, TYPE_TQ2_0 = 35 };

extern struct ggml_context *ggml_init(struct ggml_init_params);
extern void ggml_free(struct ggml_context *);
extern struct ggml_tensor *ggml_new_tensor_2d(struct ggml_context *, int type, int64_t ne0, int64_t ne1);
extern struct ggml_tensor *ggml_mul_mat(struct ggml_context *, struct ggml_tensor *, struct ggml_tensor *);
extern struct ggml_cgraph *ggml_new_graph_custom(struct ggml_context *, size_t size, bool grads);
extern void ggml_build_forward_expand(struct ggml_cgraph *, struct ggml_tensor *);
extern void *ggml_get_data(const struct ggml_tensor *);
extern size_t ggml_row_size(int type, int64_t ne);
extern const char *ggml_type_name(int type);
extern size_t ggml_quantize_chunk(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                  int64_t n_per_row, const float *imatrix);
extern void ggml_cpu_init(void);
extern int ggml_graph_compute_with_ctx(struct ggml_context *, struct ggml_cgraph *, int n_threads);

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

// usage: tq2_matmul THREADS ROTATE_MIB REPS rows:cols:batch [rows:cols:batch ...]
int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s THREADS ROTATE_MIB REPS rows:cols:batch ...\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[1]);
  double rotate_mib = atof(argv[2]);
  int reps = atoi(argv[3]);
  ggml_cpu_init();
  if (strcmp(ggml_type_name(TYPE_TQ2_0), "tq2_0") != 0) {
    fprintf(stderr, "ggml type %d is '%s', not tq2_0: these libraries use another enum\n", TYPE_TQ2_0,
            ggml_type_name(TYPE_TQ2_0));
    return 3;
  }
  for (int a = 4; a < argc; a++) {
    long rows, cols, batch;
    if (sscanf(argv[a], "%ld:%ld:%ld", &rows, &cols, &batch) != 3) {
      fprintf(stderr, "bad shape '%s' (want rows:cols:batch)\n", argv[a]);
      return 2;
    }
    size_t wbytes = ggml_row_size(TYPE_TQ2_0, cols) * (size_t)rows;
    int copies = (int)(rotate_mib * 1048576.0 / (double)wbytes);
    if (copies < 2) copies = 2;
    size_t out_bytes = (size_t)rows * batch * 4 + 512;
    size_t mem = (size_t)copies * (wbytes + out_bytes + 1024) + (size_t)cols * batch * 4 +
                 (size_t)copies * 1024 + ((size_t)64 << 20);
    struct ggml_init_params ip = {mem, NULL, false};
    struct ggml_context *ctx = ggml_init(ip);
    if (!ctx) { fprintf(stderr, "ggml_init(%zu bytes) failed\n", mem); return 4; }

    // One ternary matrix {-1,0,1} * 0.5, quantized by ggml's own TQ2_0 quantizer, copied `copies` times.
    float *w = malloc(sizeof(float) * (size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.5f * (float)((int)(next_u32() % 3) - 1);
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, TYPE_F32, cols, batch);
    float *xd = ggml_get_data(x);
    for (size_t i = 0; i < (size_t)cols * batch; i++) xd[i] = (float)((int)(next_u32() % 2001) - 1000) / 500.0f;
    struct ggml_cgraph *g = ggml_new_graph_custom(ctx, (size_t)copies * 2 + 16, false);
    void *first = NULL;
    for (int c = 0; c < copies; c++) {
      struct ggml_tensor *wt = ggml_new_tensor_2d(ctx, TYPE_TQ2_0, cols, rows);
      if (c == 0) {
        ggml_quantize_chunk(TYPE_TQ2_0, w, ggml_get_data(wt), 0, rows, cols, NULL);
        first = ggml_get_data(wt);
      } else {
        memcpy(ggml_get_data(wt), first, wbytes);
      }
      ggml_build_forward_expand(g, ggml_mul_mat(ctx, wt, x));
    }
    free(w);
    ggml_graph_compute_with_ctx(ctx, g, threads);  // warm-up (page faults, thread start)
    double *t = malloc(sizeof(double) * reps);
    for (int r = 0; r < reps; r++) {
      double t0 = now_us();
      ggml_graph_compute_with_ctx(ctx, g, threads);
      t[r] = (now_us() - t0) / copies;
    }
    qsort(t, reps, sizeof(double), cmp_double);
    printf("{\"rows\":%ld,\"cols\":%ld,\"batch\":%ld,\"threads\":%d,\"usPerProduct\":%.3f,\"weightBytes\":%zu,"
           "\"copies\":%d}\n", rows, cols, batch, threads, t[reps / 2], wbytes, copies);
    fflush(stdout);
    free(t);
    ggml_free(ctx);
  }
  return 0;
}
