export { exportTernary, resolveCheckpoint } from './export.ts';
export type { ExportOptions, ExportReport } from './export.ts';
export { exportGguf, bitnetArchitectureProblems, ggufDecoderMetadata } from './gguf.ts';
export type { GgufExportOptions, GgufExportReport } from './gguf.ts';
export { ggufTokenizerMetadata, looksLikeControlToken, TOKEN_TYPE, QWEN2_PRETOKENIZER_REGEX } from './gguf-tokenizer.ts';
export type { GgufTokenizer } from './gguf-tokenizer.ts';
export { sublnEpsMismatch, describeSublnEpsMismatch } from './subln-eps.ts';
export type { SublnEpsMismatch } from './subln-eps.ts';
