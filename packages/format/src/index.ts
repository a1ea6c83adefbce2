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
  serializeSafetensors,
  writeSafetensors,
  tensorToFloat32,
} from './safetensors.ts';
export type { Dtype, DtypeArrays, TensorEntry, TensorInfo, SafetensorsFile, SafetensorsHeader } from './safetensors.ts';
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
