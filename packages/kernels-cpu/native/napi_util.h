// Node-API helpers shared by the addon's translation units: argument reading (counts, integers in range,
// numbers, booleans, typed arrays of one element type) and the errors it throws, the saturating size arithmetic
// of every length check, and the registration function of each translation unit (addon.cc's Init calls them).
// Arguments are checked in the addon again (the TypeScript side checks first): a length that does not fit throws
// an error with code E_ARGUMENT (E_MEMORY when scratch cannot be had) instead of reading out of bounds;
// src/native.ts turns those into the project's typed errors. Every size a check compares is computed with
// saturating arithmetic (prod, sat_add), so no extreme dimension can overflow int64 into a passing check.
#pragma once
#include <node_api.h>
#include <stdint.h>

#include <string>

namespace bd {

// Saturating size arithmetic: a product or sum that would overflow int64 (or has a negative operand) is INT64_MAX,
// which no buffer length reaches, so a `len < prod(...)` or `len != prod(...)` check fails closed.
constexpr int64_t kSat = INT64_MAX;
inline int64_t sat_mul(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return kSat;
  return r;
}
inline int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) return kSat;
  return r;
}
inline int64_t prod(int64_t a) { return a < 0 ? kSat : a; }
template <typename... Rest>
inline int64_t prod(int64_t a, int64_t b, Rest... rest) {
  return prod(sat_mul(a, b), rest...);
}

// ---------------------------------------------------------------------------------------------------------
// Node-API helpers

inline bool throw_if(napi_env env, bool cond, const char* msg) {
  if (cond) napi_throw_range_error(env, "E_ARGUMENT", msg);
  return cond;
}

inline bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value* argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return false;
  if (argc < want) {
    napi_throw_type_error(env, "E_ARGUMENT", "too few arguments");
    return false;
  }
  return true;
}

inline bool get_i64(napi_env env, napi_value v, int64_t lo, int64_t hi, int64_t* out, const char* what) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= static_cast<double>(lo)) ||
      !(d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<int64_t>(d))) {
    std::string msg = std::string(what) + " must be an integer in range";
    napi_throw_range_error(env, "E_ARGUMENT", msg.c_str());
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

inline bool get_f64(napi_env env, napi_value v, double* out) {
  if (napi_get_value_double(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "E_ARGUMENT", "expected a number");
    return false;
  }
  return true;
}

inline bool get_bool(napi_env env, napi_value v, bool* out) {
  if (napi_get_value_bool(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "E_ARGUMENT", "expected a boolean");
    return false;
  }
  return true;
}

// A typed array of the given type: its data pointer (offset applied) and element count.
template <typename T>
inline bool get_typed(napi_env env, napi_value v, napi_typedarray_type want, T** data, size_t* len, const char* what) {
  bool is_ta = false;
  napi_typedarray_type type;
  void* ptr = nullptr;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, len, &ptr, &ab, &off) != napi_ok || type != want) {
    std::string msg = std::string(what) + " has the wrong typed-array type";
    napi_throw_type_error(env, "E_ARGUMENT", msg.c_str());
    return false;
  }
  *data = static_cast<T*>(ptr);
  return true;
}

inline napi_value make_number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

inline napi_value make_string(napi_env env, const char* s) {
  napi_value out;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

constexpr int64_t kMaxDim = int64_t{1} << 31;

// ---------------------------------------------------------------------------------------------------------
// Registration: each translation unit defines its functions on the exports object.

void register_isa(napi_env env, napi_value exports);         // isa.cc
void register_gemm(napi_env env, napi_value exports);        // gemm_napi.cc
void register_ternary(napi_env env, napi_value exports);     // ternary_napi.cc
void register_tensor_ops(napi_env env, napi_value exports);  // tensor_ops_napi.cc
void register_fused(napi_env env, napi_value exports);       // fused_napi.cc
void register_decode(napi_env env, napi_value exports);      // decode_napi.cc

}  // namespace bd
