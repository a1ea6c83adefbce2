import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isGgufFile } from '@bitdistill/format';

/** A GGUF file (`export --format gguf`) or an export folder (its config.json has quantization_config). */
export function isExport(path: string): boolean {
  if (existsSync(path) && statSync(path).isFile()) return isGgufFile(path);
  const p = join(path, 'config.json');
  if (!existsSync(p)) return false;
  try {
    return (JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>)['quantization_config'] !== undefined;
  } catch {
    return false; // not JSON: the loader that runs next reports it with the file name
  }
}
