import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '@bitdistill/core';
import { isGgufFile } from '@bitdistill/format';

/**
 * A GGUF file (`export --format gguf`) or an export folder (its config.json has quantization_config). A
 * config.json that is not a JSON object is a FormatError here: every loader that could run next would refuse it.
 */
export function isExport(path: string): boolean {
  if (existsSync(path) && statSync(path).isFile()) return isGgufFile(path);
  const p = join(path, 'config.json');
  if (!existsSync(p)) return false;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new FormatError(p, `not valid JSON: ${(e as Error).message}`, { hint: 'config.json is corrupt: pass an intact checkpoint or export folder', cause: e });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new FormatError(p, 'expected a JSON object', { hint: 'config.json holds the Hugging Face model keys as one object' });
  return (raw as Record<string, unknown>)['quantization_config'] !== undefined;
}
