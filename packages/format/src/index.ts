export {
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  loadSafetensorsDir,
  openSafetensorsDir,
  inMemoryTensor,
  serializeSafetensors,
  writeSafetensors,
  tensorToFloat32,
} from './safetensors.ts';
export type { Dtype, DtypeArrays, TensorEntry, TensorInfo, SafetensorsFile, SafetensorsHeader, LazyTensor, LazySafetensors } from './safetensors.ts';
export { f32ToF16, f16ToF32, f32ArrayToF16, f16ArrayToF32, f32ArrayToBf16, bf16ArrayToF32 } from './half.ts';
export { parseLlama2c, readLlama2c } from './llama2c.ts';
export type { Llama2cHeader, Llama2cCheckpoint, HfLlamaConfig, F32Tensor } from './llama2c.ts';
export { packTernaryHF, unpackTernaryHF } from './ternary-pack.ts';
export { QK_K, packTernaryGgml, unpackTernaryGgml } from './tq.ts';
export type { TernaryGgmlType } from './tq.ts';
export { quantizeQ8_0, dequantizeQ8_0 } from './q8.ts';
export {
  GGML_QUANT_VERSION,
  LLAMA_FILE_TYPES,
  gv,
  ggmlTensorBytes,
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
