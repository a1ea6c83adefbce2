/**
 * Values from a file, rendered for error messages: short, and never by walking a structure, since a label or
 * token from a corrupt file can be a megabyte string or a list nested 100,000 deep (JSON.stringify and String()
 * of that overflow the stack).
 */

/** A value for a message: short, and never a walk over a deep or huge structure. */
export function preview(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return `a ${typeof v === 'object' ? 'mapping' : typeof v}`;
}

/** Names for a message: at most 20, each cut short. */
export function nameList(names: readonly unknown[]): string {
  const shown = names.slice(0, 20).map((n) => (typeof n !== 'string' ? preview(n) : n.length > 40 ? `${n.slice(0, 40)}...` : n));
  return names.length > 20 ? `${shown.join(', ')} and ${names.length - 20} more` : shown.join(', ');
}
