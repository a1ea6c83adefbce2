// AMX (Sapphire Rapids and later) int8 x ternary products for batches >= 2 (AmxKernels::min_batch). See kernels.h for the
// rules of these ISA files. Everything else of the "amx" ISA is the AVX-512 VNNI table (isa.cc builds it).
//
// Why: one vpdpbusd does 64 multiply-adds, so at batch 8-32 the VNNI kernels are compute-bound at 10-35% of
// the memory bandwidth. One tdpbusd does 16 x 16 x 64 = 16,384, which leaves the weight stream as the bound.
//
// Mapping: C[n, b] = sum_k A[n, k] * B[k, b] with A = the weight codes (u8 in {0, 1, 2}, 16 rows x 64 k per
// tile), B = the activations (s8, "VNNI" order: tile row k/4 holds, for each of 16 batch rows, 4 consecutive
// k), C = int32 16 x 16. A tiles are decoded per call from the t4x256 layout (one 64-byte load per row and
// 256-column block, then shift + mask per 64-column plane: the layout's planes are exactly A's contiguous
// k runs), so the file format and the in-memory layout stay as they are. B is arranged once per call by
// prep_xv_amx (the driver). The epilogue is ternary_store's dot_c - sum(x), as every other path: exact.
//
// Work unit: 8 layout tiles (32 output rows: two A tiles per 64-column plane) x up to 32 batch rows (two B
// tiles of 16, or one of 8 for batches up to 8): four C tiles (tmm0-3) as independent accumulation chains,
// A in tmm4-5, B in tmm6-7.
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#include <immintrin.h>

// GCC 12 reports its own `__Y = __Y` placeholders inside the AVX-512 intrinsics (as in kernels_avx512.cc).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#pragma GCC push_options
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,bmi2")

namespace bd {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Decoded blocks in flight: block blk + kAmxRing - 1 is decoded while the tiles of block blk run, so the
// stores of a decoded block have long drained when a tile load reads them.
constexpr int kAmxRing = 3;

// Thread-local 64-byte aligned scratch: decoded A tiles (ring x 2 row groups x 4 planes x 1 KiB) and C.
struct alignas(64) AmxScratch {
  uint8_t a[kAmxRing][2][4][16 * 64];
  int32_t c[4][16 * 16];
};
thread_local AmxScratch t_amx;

// Batch rows per B tile: 8 for batches up to 8 (half-width B and C tiles: no wasted products, and B for a
// 4096-column row fits L1), else 16.
inline int batch_width(int64_t batch) { return batch <= 8 ? 8 : 16; }

// A: 16 rows x 64 bytes (tmm4-5); B: 16 rows x 4W bytes (tmm6-7); C: 16 rows x 4W bytes (tmm0-3).
void load_config(int w) {
  TileConfig cfg;
  __builtin_memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int i = 0; i < 8; i++) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = static_cast<uint16_t>(i == 4 || i == 5 ? 64 : 4 * w);
  }
  _tile_loadconfig(&cfg);
}

// Codes of the 16 rows of layout tiles [t, t + 4), block blk, into a[plane] (row-major 16 x 64 bytes: the
// plane's 64 consecutive columns). Tiles at or past t_end decode as code 0 (their outputs are not stored).
inline void decode_group(const TernaryJob& j, int64_t t, int64_t t_end, int64_t blk, uint8_t (*a)[16 * 64]) {
  const __m512i mask = _mm512_set1_epi8(3);
  for (int tt = 0; tt < 4; tt++) {
    const int64_t tile = t + tt;
    for (int r = 0; r < kTileRows; r++) {
      const int row = tt * kTileRows + r;
      if (tile >= t_end) {
        for (int s = 0; s < 4; s++) _mm512_store_si512(a[s] + 64 * row, _mm512_setzero_si512());
        continue;
      }
      const uint8_t* src = j.w + ((tile * j.nblk + blk) * kTileRows + r) * kBlockBytes;
      _mm_prefetch(reinterpret_cast<const char*>(src + 16 * kTileBlockBytes), _MM_HINT_T0);  // 4 KiB ahead
      const __m512i v = _mm512_loadu_si512(src);
      for (int s = 0; s < 4; s++) _mm512_store_si512(a[s] + 64 * row, _mm512_and_si512(_mm512_srli_epi16(v, 2 * s), mask));
    }
  }
}

// y rows [row0, row_end) (at most 16) of batch row b from column bl of a 16 x W int32 C tile (row-major
// [row][batch]). row_end stops at the unit's last tile: rows past it belong to another chunk (thread).
template <int W>
inline void store_column(const TernaryJob& j, const int32_t* c, int bl, int64_t row0, int64_t row_end, int64_t b) {
  const int64_t end = row_end < j.rows ? row_end : j.rows;
  if (end <= row0) return;
  const int64_t n = end - row0 < 16 ? end - row0 : 16;
  const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(W));
  const __m512i v = _mm512_sub_epi32(_mm512_i32gather_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32(bl)), c, 4), _mm512_set1_epi32(j.xsum[b]));
  if (j.yf == nullptr) {
    _mm512_mask_storeu_epi32(j.y + b * j.rows + row0, m, v);
    return;
  }
  if (j.seg_end != nullptr && j.seg_end[0] < j.rows) {
    // Rows stacked from several matrices, each with its own scale: ternary_store finds each row's segment.
    int32_t lanes[16];
    _mm512_storeu_si512(lanes, _mm512_add_epi32(v, _mm512_set1_epi32(j.xsum[b])));  // ternary_store subtracts xsum
    for (int64_t i = 0; i < n; i++) ternary_store(j, row0 + i, b, lanes[i]);
    return;
  }
  // (float)((double)v * factor): the same two roundings as ternary_store.
  const __m512d f = _mm512_set1_pd(j.factor[b]);
  const __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(v)), f));
  const __m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1)), f));
  const __m512 y = _mm512_insertf32x4(_mm512_insertf32x4(_mm512_castps256_ps512(lo), _mm256_castps256_ps128(hi), 2), _mm256_extractf128_ps(hi, 1), 3);
  _mm512_mask_storeu_ps(j.yf + b * j.rows + row0, m, y);
}

// The 32 rows of layout tiles [t, t + 8) (clipped to t_end) x batch rows [b0, b0 + G * W), G in {1, 2}.
// Two row groups share every B tile load. Four independent accumulation chains hide the tdpbusd latency:
// G = 1: C = (row group, plane parity); G = 2: C = (row group, batch group). Decoding runs kAmxRing - 1
// blocks ahead of the tile instructions.
template <int G, int W>
void amx_unit(const TernaryJob& j, int64_t t, int64_t t_end, int64_t b0, AmxScratch& S) {
  const int64_t k4 = j.nblk * (kBlockCols / 4);  // B rows (k / 4) per batch group
  constexpr int64_t kBRow = 4 * W;                // bytes per B row
  const int8_t* xg0 = j.xv + (b0 / W) * k4 * kBRow;
  const int8_t* xg1 = xg0 + k4 * kBRow;
  const bool two = t + 4 < t_end;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  auto decode = [&](int64_t blk) {
    uint8_t (*a)[4][16 * 64] = S.a[blk % kAmxRing];
    decode_group(j, t, t_end, blk, a[0]);
    if (two) decode_group(j, t + 4, t_end, blk, a[1]);
  };
  for (int64_t blk = 0; blk < kAmxRing - 1 && blk < j.nblk; blk++) decode(blk);
  for (int64_t blk = 0; blk < j.nblk; blk++) {
    uint8_t (*a)[4][16 * 64] = S.a[blk % kAmxRing];
    for (int s = 0; s < 4; s++) {
      const int64_t off = (blk * (kBlockCols / 4) + 16 * s) * kBRow;  // this plane's 16 B rows
      if (G == 1) {
        if (s % 2 == 0) {
          _tile_loadd(6, xg0 + off, kBRow);
          _tile_loadd(4, a[0][s], 64);
          _tile_dpbusd(0, 4, 6);
          if (two) {
            _tile_loadd(5, a[1][s], 64);
            _tile_dpbusd(2, 5, 6);
          }
        } else {
          _tile_loadd(7, xg0 + off, kBRow);
          _tile_loadd(4, a[0][s], 64);
          _tile_dpbusd(1, 4, 7);
          if (two) {
            _tile_loadd(5, a[1][s], 64);
            _tile_dpbusd(3, 5, 7);
          }
        }
      } else {
        _tile_loadd(6, xg0 + off, kBRow);
        _tile_loadd(7, xg1 + off, kBRow);
        _tile_loadd(4, a[0][s], 64);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        if (two) {
          _tile_loadd(5, a[1][s], 64);
          _tile_dpbusd(2, 5, 6);
          _tile_dpbusd(3, 5, 7);
        }
      }
    }
    if (blk + kAmxRing - 1 < j.nblk) decode(blk + kAmxRing - 1);
  }
  _tile_stored(0, S.c[0], kBRow);
  _tile_stored(1, S.c[1], kBRow);
  _tile_stored(2, S.c[2], kBRow);
  _tile_stored(3, S.c[3], kBRow);
  // cg[rg][g]: the finished C of row group rg and batch group g.
  const int32_t* cg[2][2];
  if (G == 1) {
    for (int i = 0; i < 16 * W; i += 16) {
      _mm512_store_si512(S.c[0] + i, _mm512_add_epi32(_mm512_load_si512(S.c[0] + i), _mm512_load_si512(S.c[1] + i)));
      _mm512_store_si512(S.c[2] + i, _mm512_add_epi32(_mm512_load_si512(S.c[2] + i), _mm512_load_si512(S.c[3] + i)));
    }
    cg[0][0] = S.c[0];
    cg[1][0] = S.c[2];
  } else {
    cg[0][0] = S.c[0];
    cg[0][1] = S.c[1];
    cg[1][0] = S.c[2];
    cg[1][1] = S.c[3];
  }
  for (int rg = 0; rg < (two ? 2 : 1); rg++) {
    const int64_t row0 = (t + 4 * rg) * kTileRows;
    for (int g = 0; g < G; g++)
      for (int bl = 0; bl < W; bl++) {
        const int64_t b = b0 + W * g + bl;
        if (b >= j.batch) break;
        store_column<W>(j, cg[rg][g], bl, row0, t_end * kTileRows, b);
      }
  }
}

void ternary_amx(const TernaryJob& j, int64_t t0, int64_t t1) {
  if (j.xv == nullptr) {
    kAvx512VnniKernels->ternary(j, t0, t1);  // small batch: the VNNI kernels
    return;
  }
  const int w = batch_width(j.batch);
  load_config(w);
  AmxScratch& S = t_amx;
  for (int64_t t = t0; t < t1; t += 8) {
    const int64_t te = t + 8 < t1 ? t + 8 : t1;
    if (w == 8) {
      amx_unit<1, 8>(j, t, te, 0, S);
      continue;
    }
    int64_t b = 0;
    for (; b + 16 < j.batch; b += 32) amx_unit<2, 16>(j, t, te, b, S);
    if (b < j.batch) amx_unit<1, 16>(j, t, te, b, S);
  }
  _tile_release();
}

// B in VNNI order for every group g of W batch rows (W = batch_width(batch)):
// dst[(g * k4 + q) * 4W + bl * 4 + i] = x[(W g + bl) * xs + 4 q + i], zero for batch rows >= batch. x rows are
// xs bytes (zero padded to whole blocks by prep_x). One 16-lane dword gather per 64 output bytes: a B row of
// 16 batch rows (W = 16), or two consecutive B rows of 8 (W = 8).
void prep_xv_amx(const int8_t* x, int64_t batch, int64_t xs, int8_t* dst) {
  const int w = batch_width(batch);
  const int64_t k4 = xs / 4;
  const int64_t groups = (batch + w - 1) / w;
  const int32_t stride = static_cast<int32_t>(k4);  // dwords per x row
  for (int64_t g = 0; g < groups; g++) {
    const int32_t* base = reinterpret_cast<const int32_t*>(x + g * w * xs);
    int8_t* d = dst + g * k4 * 4 * w;
    const int64_t valid = batch - g * w < w ? batch - g * w : w;  // real batch rows in this group
    __m512i idx;
    __mmask16 m;
    if (w == 16) {
      idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(stride));
      m = static_cast<__mmask16>((1u << valid) - 1);
    } else {
      // lanes 0-7: row l of B row q, lanes 8-15: row l - 8 of B row q + 1
      idx = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(stride)),
                             _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
      const unsigned half = (1u << valid) - 1;
      m = static_cast<__mmask16>(half | (half << 8));
    }
    const int64_t step = w == 16 ? 1 : 2;  // B rows per gather
    for (int64_t q = 0; q < k4; q += step) {
      const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, _mm512_add_epi32(idx, _mm512_set1_epi32(static_cast<int32_t>(q))), base, 4);
      _mm512_storeu_si512(d + q * 4 * w, v);
    }
  }
}

}  // namespace

const AmxKernels kAmxTable = {ternary_amx, prep_xv_amx, 2};
const AmxKernels* const kAmxKernels = &kAmxTable;

}  // namespace bd

#pragma GCC pop_options

#else
namespace bd {
const AmxKernels* const kAmxKernels = nullptr;
}
#endif
