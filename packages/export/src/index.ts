export { exportTernary } from './export.ts';
export type { ExportOptions, ExportReport } from './export.ts';
export { exportGguf, ggufDecoderMetadata } from './gguf.ts';
export type { GgufExportOptions, GgufExportReport } from './gguf.ts';
export { ggufTokenizerMetadata, TOKEN_TYPE } from './gguf-tokenizer.ts';
export type { GgufTokenizer } from './gguf-tokenizer.ts';
export type { SublnEpsMismatch } from './subln-eps.ts';
export { soupCheckpoints } from './soup.ts';
export type { SoupOptions, SoupReport } from './soup.ts';
