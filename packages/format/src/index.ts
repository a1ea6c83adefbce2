export {
  DTYPES,
  MAX_HEADER_BYTES,
  isDtype,
  dtypeBytes,
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  readShardedSafetensors,
  loadSafetensorsDir,
  openSafetensors,
  openShardedSafetensors,
  openSafetensorsDir,
  inMemoryTensor,
  serializeSafetensors,
  writeSafetensors,
  tensorToFloat32,
} from './safetensors.ts';
export type { Dtype, DtypeArrays, TensorEntry, TensorInfo, SafetensorsFile, SafetensorsHeader, LazyTensor, LazySafetensors } from './safetensors.ts';
export {
  f32ToF16,
  f16ToF32,
  f32ToBf16,
  bf16ToF32,
  f32BitsToF16Bits,
  f16BitsToF32Bits,
  f32BitsToBf16Bits,
  bf16BitsToF32Bits,
  f32ArrayToF16,
  f16ArrayToF32,
  f32ArrayToBf16,
  bf16ArrayToF32,
} from './half.ts';
export { parseLlama2c, readLlama2c, llama2cConfig, interleavedToHalfRope, halfToInterleavedRope } from './llama2c.ts';
export type { Llama2cHeader, Llama2cCheckpoint, HfLlamaConfig, F32Tensor } from './llama2c.ts';
export { packTernaryHF, unpackTernaryHF } from './ternary-pack.ts';
export {
  QK_K,
  TQ1_0_BLOCK_BYTES,
  TQ2_0_BLOCK_BYTES,
  ternaryBlockBytes,
  quantizeRowTq1_0Ref,
  quantizeRowTq2_0Ref,
  dequantizeRowTq1_0,
  dequantizeRowTq2_0,
  packTernaryGgml,
  unpackTernaryGgml,
} from './tq.ts';
export type { TernaryGgmlType } from './tq.ts';
export { QK8_0, Q8_0_BLOCK_BYTES, quantizeQ8_0, dequantizeQ8_0 } from './q8.ts';
export {
  GGUF_MAGIC,
  GGUF_VERSION,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAX_TENSOR_NAME,
  GGML_QUANT_VERSION,
  GGML_TYPES,
  LLAMA_FILE_TYPES,
  gv,
  ggmlTensorBytes,
  serializeGgufHeader,
  writeGguf,
  parseGguf,
  readGguf,
  isGgufFile,
  ggufMeta,
  ggufArray,
  bitnetGgufName,
  bitnetHfName,
} from './gguf.ts';
export type { GgmlType, GgufValue, GgufValueType, GgufTensor, GgufFile, WriteGgufOptions } from './gguf.ts';
export { readJsonObjectFile } from './json.ts';
