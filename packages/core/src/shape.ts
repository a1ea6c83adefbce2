import { ShapeError } from './errors.ts';

export type Shape = readonly number[];

export function shapeToString(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Assert that `actual` matches `expected`, where a `null` entry in `expected` matches any size.
 * `what` names the argument in the error, e.g. "logitKd: studentLogits".
 */
export function assertShape(what: string, actual: Shape, expected: readonly (number | null)[]): void {
  const ok = actual.length === expected.length && expected.every((e, i) => e === null || e === actual[i]);
  if (!ok) {
    const exp = `[${expected.map((e) => (e === null ? '*' : String(e))).join(', ')}]`;
    throw new ShapeError(`${what}: expected shape ${exp}, got ${shapeToString(actual)}`);
  }
}
