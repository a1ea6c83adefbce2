/**
 * loadTokenizer(path): the tokenizer of a model folder (or a tokenizer file given directly). In a folder it
 * takes tokenizer.json (Hugging Face) if present, else a llama2.c tokenizer: tokenizer.bin, else the one
 * tok*.bin file (tok512.bin, tok4096.bin... as llama2.c's train_vocab names them).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ArgumentError, NotFoundError } from '@bitdistill/core';
import { loadHfTokenizer } from './hf-tokenizer.ts';
import { loadLlama2cTokenizer } from './llama2c-tokenizer.ts';
import type { Llama2cTokenizerOptions } from './llama2c-tokenizer.ts';
import type { Tokenizer } from './tokenizer.ts';

export type LoadTokenizerOptions = Llama2cTokenizerOptions;

export function loadTokenizer(path: string, options: LoadTokenizerOptions = {}): Tokenizer {
  if (!existsSync(path)) {
    throw new NotFoundError(path, `${path} does not exist`, { hint: 'pass a model folder or a tokenizer file' });
  }
  if (!statSync(path).isDirectory()) {
    return basename(path).endsWith('.json') ? loadHfTokenizer(path) : loadLlama2cTokenizer(path, options);
  }
  const json = join(path, 'tokenizer.json');
  if (existsSync(json)) return loadHfTokenizer(json);
  const bin = join(path, 'tokenizer.bin');
  if (existsSync(bin)) return loadLlama2cTokenizer(bin, options);
  const toks = readdirSync(path)
    .filter((f) => /^tok.*\.bin$/.test(f))
    .sort();
  if (toks.length > 1) {
    throw new ArgumentError(`${path} holds several llama2.c tokenizers (${toks.join(', ')}); which one is meant is unclear`, {
      hint: 'keep one, or copy the right one to tokenizer.bin',
    });
  }
  if (toks[0] !== undefined) return loadLlama2cTokenizer(join(path, toks[0]), options);
  throw new NotFoundError(path, `no tokenizer in ${path}`, {
    hint: "looked for tokenizer.json (Hugging Face), tokenizer.bin and tok*.bin (llama2.c); copy the model's tokenizer into the folder",
  });
}
