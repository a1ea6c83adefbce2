// Loads a GGUF file with llama.cpp (libllama) and runs what the command line asks, printing one JSON line per
// request on stdout: the interop tests' view of our exports through a real llama.cpp (docs/interop.md).
//
// Built by scripts/llamacpp/gguf-runner.ts against the prebuilt libraries of @node-llama-cpp/linux-x64. No
// llama.cpp header ships with them, so the entry points called are declared below from llama.h's public C API.
// The parameter structs (llama_model_params, llama_context_params) and llama_batch change layout between
// releases; this harness takes the library's defaults and hands them back, declared as opaque blobs larger than
// any release's struct: on x86-64 System V a struct of more than 16 bytes is returned through a caller-provided
// buffer and passed by value as a copy on the stack, so a larger blob with the same leading bytes is passed and
// returned intact. The one member written is llama_context_params.n_ctx, its first member in every release
// (set to the model's training context; llama_n_ctx must then report it, or it rounded up to a multiple of 256,
// else the harness stops). Threads are set through llama_set_n_threads.
//
// usage: run_gguf MODEL.gguf CPU_BACKEND.so THREADS REQUEST...
//   meta:KEY            -> {"meta":"<value>"} (GGUF metadata as llama.cpp read it; null when absent)
//   tokenize:TEXT       -> {"ids":[...]}   add_special (BOS when the vocab adds it), special tokens parsed
//   attr:ID,ID,...      -> {"attrs":[...]} llama_token_attr bit sets
//   piece:ID,ID,...     -> {"pieces":["...",...]} each id rendered (special tokens included)
//   greedy:N:ID,ID,...  -> {"tokens":[...],"logits":[[...],...]} greedy decoding of N tokens after the prompt
//                          ids (the KV cache is cleared first); logits of the last prompt position and of
//                          each decoded position (N+1 rows, the last one not decoded from)
//   bench:P:G:R         -> {"bench":{...}} R timed greedy generations of G tokens after a P-token prompt (ids
//                          1000 + (i * 7919) % 50000, as the e2e bench gives our runtime), the KV cache cleared
//                          before each: prefillSeconds (one llama_decode of the prompt) and decodeSeconds (the
//                          G - 1 single-token decodes and G argmaxes) per run, and the process's peak resident set
//                          (VmHWM) at the end
// An argument nctx:N before the requests sizes the context (KV cache) to N tokens instead of the model's
// training context.
// First line: {"model":{...}}; last line: {"log":[...]} with every warning and error llama.cpp logged.
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int32_t llama_token;
struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_memory_i;

typedef struct { _Alignas(16) unsigned char bytes[4096]; } opaque_params;  // llama_model_params / llama_context_params
typedef struct { _Alignas(16) unsigned char bytes[512]; } opaque_batch;    // llama_batch

enum { LOG_WARN = 3, LOG_ERROR = 4, LOG_CONT = 5 };  // enum ggml_log_level
typedef void (*log_callback)(int level, const char *text, void *user_data);

extern void *ggml_backend_load(const char *path);
extern void llama_backend_init(void);
extern void llama_backend_free(void);
extern void llama_log_set(log_callback cb, void *user_data);
extern opaque_params llama_model_default_params(void);
extern opaque_params llama_context_default_params(void);
extern struct llama_model *llama_model_load_from_file(const char *path, opaque_params params);
extern struct llama_context *llama_init_from_model(struct llama_model *model, opaque_params params);
extern void llama_set_n_threads(struct llama_context *ctx, int32_t n_threads, int32_t n_threads_batch);
extern void llama_free(struct llama_context *ctx);
extern void llama_model_free(struct llama_model *model);
extern const struct llama_vocab *llama_model_get_vocab(const struct llama_model *model);
extern int32_t llama_vocab_n_tokens(const struct llama_vocab *vocab);
extern int32_t llama_model_n_embd(const struct llama_model *model);
extern int32_t llama_model_n_layer(const struct llama_model *model);
extern int32_t llama_model_n_ctx_train(const struct llama_model *model);
extern int32_t llama_model_desc(const struct llama_model *model, char *buf, size_t buf_size);
extern int32_t llama_model_meta_val_str(const struct llama_model *model, const char *key, char *buf, size_t buf_size);
extern uint32_t llama_n_ctx(const struct llama_context *ctx);
extern int32_t llama_tokenize(const struct llama_vocab *vocab, const char *text, int32_t text_len, llama_token *tokens,
                              int32_t n_tokens_max, bool add_special, bool parse_special);
extern int32_t llama_token_to_piece(const struct llama_vocab *vocab, llama_token token, char *buf, int32_t length,
                                    int32_t lstrip, bool special);
extern int llama_vocab_get_attr(const struct llama_vocab *vocab, llama_token token);
extern opaque_batch llama_batch_get_one(llama_token *tokens, int32_t n_tokens);
extern int32_t llama_decode(struct llama_context *ctx, opaque_batch batch);
extern float *llama_get_logits_ith(struct llama_context *ctx, int32_t i);
extern struct llama_memory_i *llama_get_memory(const struct llama_context *ctx);
extern void llama_memory_clear(struct llama_memory_i *mem, bool data);

// --- JSON output -------------------------------------------------------------------------------------------

static void json_string(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

// Warnings and errors llama.cpp logs (a message may arrive in pieces: LOG_CONT continues the previous one).
static char *log_buf = NULL;
static size_t log_len = 0, log_cap = 0;
static bool log_keep = false;

static void log_append(const char *s, size_t n) {
  if (log_len + n + 1 > log_cap) {
    log_cap = (log_len + n + 1) * 2;
    log_buf = realloc(log_buf, log_cap);
    if (log_buf == NULL) abort();
  }
  memcpy(log_buf + log_len, s, n);
  log_len += n;
  log_buf[log_len] = 0;
}

static void on_log(int level, const char *text, void *user_data) {
  (void)user_data;
  fputs(text, stderr);
  if (level != LOG_CONT) {
    log_keep = level == LOG_WARN || level == LOG_ERROR;
    if (log_keep) log_append("\x1e", 1);  // record separator between messages
  }
  if (log_keep) log_append(text, strlen(text));
}

static void print_log(void) {
  printf("{\"log\":[");
  size_t start = 0;
  bool first = true;
  for (size_t i = 0; i <= log_len; i++) {
    if (i == log_len || log_buf[i] == '\x1e') {
      size_t end = i;
      while (end > start && (log_buf[end - 1] == '\n' || log_buf[end - 1] == ' ')) end--;
      if (end > start) {
        if (!first) putchar(',');
        json_string(stdout, log_buf + start, end - start);
        first = false;
      }
      start = i + 1;
    }
  }
  printf("]}\n");
}

// --- requests ------------------------------------------------------------------------------------------------

static int parse_ids(const char *s, llama_token *out, int max) {
  int n = 0;
  while (*s != 0 && n < max) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s) break;
    out[n++] = (llama_token)v;
    s = *end == ',' ? end + 1 : end;
  }
  return n;
}

static void print_floats(const float *x, int n) {
  putchar('[');
  for (int i = 0; i < n; i++) printf(i == 0 ? "%.9g" : ",%.9g", x[i]);
  putchar(']');
}

static int argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

static int greedy(struct llama_context *ctx, int n_vocab, int n_new, llama_token *prompt, int n_prompt) {
  llama_memory_clear(llama_get_memory(ctx), true);
  int rc = llama_decode(ctx, llama_batch_get_one(prompt, n_prompt));
  if (rc != 0) {
    fprintf(stderr, "llama_decode of the %d prompt tokens returned %d\n", n_prompt, rc);
    return 1;
  }
  llama_token *tokens = malloc(sizeof(llama_token) * (size_t)(n_new + 1));
  float *rows = malloc(sizeof(float) * (size_t)n_vocab * (size_t)(n_new + 1));
  for (int step = 0; step <= n_new; step++) {
    const float *logits = llama_get_logits_ith(ctx, -1);
    if (logits == NULL) {
      fprintf(stderr, "no logits at step %d\n", step);
      return 1;
    }
    memcpy(rows + (size_t)step * n_vocab, logits, sizeof(float) * (size_t)n_vocab);
    if (step == n_new) break;
    tokens[step] = argmax(logits, n_vocab);
    rc = llama_decode(ctx, llama_batch_get_one(&tokens[step], 1));
    if (rc != 0) {
      fprintf(stderr, "llama_decode at step %d returned %d\n", step, rc);
      return 1;
    }
  }
  printf("{\"tokens\":[");
  for (int i = 0; i < n_new; i++) printf(i == 0 ? "%d" : ",%d", tokens[i]);
  printf("],\"logits\":[");
  for (int i = 0; i <= n_new; i++) {
    if (i > 0) putchar(',');
    print_floats(rows + (size_t)i * n_vocab, n_vocab);
  }
  printf("]}\n");
  free(tokens);
  free(rows);
  return 0;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// VmHWM of /proc/self/status in bytes (-1 off Linux): the same figure the e2e bench reads for our runtime.
static long long peak_rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  char line[256];
  long long kb = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmHWM:", 6) == 0) kb = atoll(line + 6);
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

static int bench(struct llama_context *ctx, int n_vocab, int n_prompt, int n_gen, int runs) {
  llama_token *prompt = malloc(sizeof(llama_token) * (size_t)n_prompt);
  double *pre = malloc(sizeof(double) * (size_t)runs), *dec = malloc(sizeof(double) * (size_t)runs);
  for (int r = 0; r < runs; r++) {
    for (int i = 0; i < n_prompt; i++) prompt[i] = 1000 + (llama_token)(((long)i * 7919) % 50000);
    llama_memory_clear(llama_get_memory(ctx), true);
    const double t0 = now_seconds();
    int rc = llama_decode(ctx, llama_batch_get_one(prompt, n_prompt));
    const double t1 = now_seconds();
    if (rc != 0) {
      fprintf(stderr, "bench: llama_decode of the %d prompt tokens returned %d\n", n_prompt, rc);
      return 1;
    }
    for (int step = 0; step < n_gen; step++) {
      llama_token next = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
      if (step == n_gen - 1) break;
      rc = llama_decode(ctx, llama_batch_get_one(&next, 1));
      if (rc != 0) {
        fprintf(stderr, "bench: llama_decode at step %d returned %d\n", step, rc);
        return 1;
      }
    }
    pre[r] = t1 - t0;
    dec[r] = now_seconds() - t1;
  }
  printf("{\"bench\":{\"prompt\":%d,\"generated\":%d,\"prefillSeconds\":[", n_prompt, n_gen);
  for (int r = 0; r < runs; r++) printf(r == 0 ? "%.6f" : ",%.6f", pre[r]);
  printf("],\"decodeSeconds\":[");
  for (int r = 0; r < runs; r++) printf(r == 0 ? "%.6f" : ",%.6f", dec[r]);
  printf("],\"peakRssBytes\":%lld}}\n", peak_rss_bytes());
  free(prompt);
  free(pre);
  free(dec);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODEL.gguf CPU_BACKEND.so THREADS REQUEST...\n", argv[0]);
    return 2;
  }
  llama_log_set(on_log, NULL);
  if (ggml_backend_load(argv[2]) == NULL) {
    fprintf(stderr, "cannot load the ggml CPU backend %s\n", argv[2]);
    return 1;
  }
  llama_backend_init();
  struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (model == NULL) {
    print_log();
    fprintf(stderr, "llama.cpp cannot load %s\n", argv[1]);
    return 3;
  }
  opaque_params cparams = llama_context_default_params();
  uint32_t n_ctx = (uint32_t)llama_model_n_ctx_train(model);
  int first_request = 4;
  if (argc > 4 && strncmp(argv[4], "nctx:", 5) == 0) {
    n_ctx = (uint32_t)atoi(argv[4] + 5);
    first_request = 5;
  }
  memcpy(cparams.bytes, &n_ctx, sizeof n_ctx);  // llama_context_params.n_ctx
  struct llama_context *ctx = llama_init_from_model(model, cparams);
  if (ctx == NULL) {
    print_log();
    fprintf(stderr, "llama.cpp cannot create a context for %s\n", argv[1]);
    return 3;
  }
  // llama.cpp may round the context up to a multiple of 256.
  if (llama_n_ctx(ctx) != n_ctx && llama_n_ctx(ctx) != (n_ctx + 255) / 256 * 256) {
    fprintf(stderr, "asked for n_ctx %u, the context has %u: llama_context_params no longer starts with n_ctx\n", n_ctx, llama_n_ctx(ctx));
    return 4;
  }
  int threads = atoi(argv[3]);
  llama_set_n_threads(ctx, threads, threads);
  const struct llama_vocab *vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);
  char desc[256];
  llama_model_desc(model, desc, sizeof desc);
  printf("{\"model\":{\"desc\":");
  json_string(stdout, desc, strlen(desc));
  printf(",\"n_vocab\":%d,\"n_embd\":%d,\"n_layer\":%d,\"n_ctx\":%u}}\n", n_vocab, llama_model_n_embd(model), llama_model_n_layer(model), llama_n_ctx(ctx));

  const int max_ids = 1 << 16;
  llama_token *ids = malloc(sizeof(llama_token) * max_ids);
  int status = 0;
  for (int a = first_request; a < argc && status == 0; a++) {
    const char *req = argv[a];
    if (strncmp(req, "meta:", 5) == 0) {
      char value[4096];
      int n = llama_model_meta_val_str(model, req + 5, value, sizeof value);
      printf("{\"meta\":");
      if (n < 0) printf("null");
      else json_string(stdout, value, strlen(value));
      printf("}\n");
    } else if (strncmp(req, "tokenize:", 9) == 0) {
      const char *text = req + 9;
      int n = llama_tokenize(vocab, text, (int32_t)strlen(text), ids, max_ids, true, true);
      if (n < 0) {
        fprintf(stderr, "tokenize: %d tokens do not fit\n", -n);
        status = 1;
        break;
      }
      printf("{\"ids\":[");
      for (int i = 0; i < n; i++) printf(i == 0 ? "%d" : ",%d", ids[i]);
      printf("]}\n");
    } else if (strncmp(req, "attr:", 5) == 0) {
      int n = parse_ids(req + 5, ids, max_ids);
      printf("{\"attrs\":[");
      for (int i = 0; i < n; i++) printf(i == 0 ? "%d" : ",%d", llama_vocab_get_attr(vocab, ids[i]));
      printf("]}\n");
    } else if (strncmp(req, "piece:", 6) == 0) {
      int n = parse_ids(req + 6, ids, max_ids);
      printf("{\"pieces\":[");
      for (int i = 0; i < n; i++) {
        char buf[1024];
        int len = llama_token_to_piece(vocab, ids[i], buf, sizeof buf, 0, true);
        if (i > 0) putchar(',');
        json_string(stdout, buf, len < 0 ? 0 : (size_t)len);
      }
      printf("]}\n");
    } else if (strncmp(req, "greedy:", 7) == 0) {
      char *rest;
      long n_new = strtol(req + 7, &rest, 10);
      int n = *rest == ':' ? parse_ids(rest + 1, ids, max_ids) : 0;
      if (n_new < 0 || n == 0) {
        fprintf(stderr, "greedy: expected greedy:N:ID,ID,..., got %s\n", req);
        status = 2;
        break;
      }
      status = greedy(ctx, n_vocab, (int)n_new, ids, n);
    } else if (strncmp(req, "bench:", 6) == 0) {
      int p = 0, g = 0, r = 0;
      if (sscanf(req + 6, "%d:%d:%d", &p, &g, &r) != 3 || p < 1 || g < 1 || r < 1) {
        fprintf(stderr, "bench: expected bench:PROMPT:GEN:RUNS, got %s\n", req);
        status = 2;
        break;
      }
      status = bench(ctx, n_vocab, p, g, r);
    } else {
      fprintf(stderr, "unknown request %s\n", req);
      status = 2;
    }
    fflush(stdout);
  }
  print_log();
  free(ids);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return status;
}
