import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isGgufFile, readJsonObjectFile } from '@bitdistill/format';

/**
 * A GGUF file (`export --format gguf`) or an export folder (its config.json has quantization_config). A
 * config.json that is not a JSON object is a FormatError here: every loader that could run next would refuse it.
 */
export function isExport(path: string): boolean {
  if (existsSync(path) && statSync(path).isFile()) return isGgufFile(path);
  const p = join(path, 'config.json');
  if (!existsSync(p)) return false;
  const raw = readJsonObjectFile(p, 'config.json is corrupt: pass an intact checkpoint or export folder');
  return (raw as Record<string, unknown>)['quantization_config'] !== undefined;
}
