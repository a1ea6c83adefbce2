// AMX throughput probe (what bounds native/kernels_amx.cc): times tdpbusd alone, tileloadd alone (from L1) and
// the two interleaved, on one core. Not part of the addon or the tests.
//   g++ -O2 -o /tmp/amx-probe packages/kernels-cpu/scripts/amx-probe.cc && /tmp/amx-probe
// Measured on the 2026-11-28 Xeon (2 vCPUs): tdpbusd 9.5 ns, tileloadd 7.0 ns, load + tdpbusd pair 18.6 ns,
// i.e. the tile loads do not overlap the products.
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct alignas(64) TileConfig {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

static double now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

__attribute__((target("amx-tile,amx-int8"))) int main() {
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) {
    printf("no AMX tile-data permission (CPU or kernel without AMX)\n");
    return 1;
  }
  TileConfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int i = 0; i < 8; i++) {
    cfg.rows[i] = 16;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
  alignas(64) static int8_t buf[32 * 1024];
  memset(buf, 1, sizeof buf);
  const int n = 1000000;
  _tile_loadd(4, buf, 64);
  _tile_loadd(6, buf + 1024, 64);
  double t = now_ns();
  for (int i = 0; i < n; i++) {
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 6);
    _tile_dpbusd(2, 4, 6);
    _tile_dpbusd(3, 4, 6);
  }
  printf("tdpbusd (4 independent accumulators): %.2f ns each\n", (now_ns() - t) / (4.0 * n));
  t = now_ns();
  for (int i = 0; i < n; i++) {
    _tile_loadd(4, buf + ((i * 1024) & 32767), 64);
    _tile_loadd(5, buf + ((i * 1024 + 2048) & 32767), 64);
  }
  printf("tileloadd 1 KiB from L1: %.2f ns each\n", (now_ns() - t) / (2.0 * n));
  t = now_ns();
  for (int i = 0; i < n; i++) {
    _tile_loadd(4, buf + ((i * 1024) & 32767), 64);
    _tile_dpbusd(0, 4, 6);
    _tile_loadd(5, buf + ((i * 1024 + 2048) & 32767), 64);
    _tile_dpbusd(1, 5, 6);
  }
  printf("tileloadd + tdpbusd: %.2f ns per pair\n", (now_ns() - t) / (2.0 * n));
  _tile_release();
  return 0;
}
