export type { Tokenizer, TokenizerKind, EncodeOptions, DecodeOptions } from './tokenizer.ts';
export { loadTokenizer } from './load-tokenizer.ts';
export type { LoadTokenizerOptions } from './load-tokenizer.ts';
export { loadHfTokenizer } from './hf-tokenizer.ts';
export { loadLlama2cTokenizer, parseLlama2cTokenizer } from './llama2c-tokenizer.ts';
export type { Llama2cTokenizerOptions } from './llama2c-tokenizer.ts';
export * from './tasks-index.ts';
