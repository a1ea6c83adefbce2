{
  "targets": [
    {
      "target_name": "bitdistill_kernels",
      "sources": [
        "native/addon.cc",
        "native/isa.cc",
        "native/gemm_napi.cc",
        "native/ternary_napi.cc",
        "native/tensor_ops_napi.cc",
        "native/fused_napi.cc",
        "native/decode_napi.cc",
        "native/kernels_scalar.cc",
        "native/kernels_avx2.cc",
        "native/kernels_avx512.cc",
        "native/kernels_amx.cc",
        "native/kernels_bf16.cc",
        "native/tensor_ops.cc"
      ],
      "cflags!": ["-fno-exceptions", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17", "-O2"],
      "cflags": ["-O3"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
