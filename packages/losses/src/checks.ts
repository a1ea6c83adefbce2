/** Input checks shared by the three losses: every message names the function, the argument and what would fit. */
import { ArgumentError, ShapeError, shapeToString, type Shape } from '@bitdistill/core';

/** `x` must have rank `rank`; `dims` names the axes for the message, e.g. "[B, T, V]". */
export function checkRank(fn: string, name: string, shape: Shape, dims: string): void {
  const rank = dims.split(',').length;
  if (shape.length !== rank) {
    throw new ShapeError(`${fn}: ${name} must be ${dims} (rank ${rank}), got ${shapeToString(shape)}`);
  }
}

/** A [B, T] mask (or labels) that must match the first two axes of `against` ([B, T, ...]). */
export function checkBT(fn: string, name: string, shape: Shape, againstName: string, against: Shape): void {
  const [B, T] = against;
  if (shape.length !== 2 || shape[0] !== B || shape[1] !== T) {
    throw new ShapeError(`${fn}: ${name} must be [B, T] = [${B}, ${T}] to match ${againstName} ${shapeToString(against)}, got ${shapeToString(shape)}`, {
      hint: `${name} has one entry per position of ${againstName}`,
    });
  }
}

export function checkTemperature(fn: string, temperature: number): void {
  if (!Number.isFinite(temperature) || temperature <= 0) {
    throw new ArgumentError(`${fn}: temperature must be a finite number > 0, got ${temperature}`, {
      hint: 'the paper uses temperature = 5; 1 means no softening',
    });
  }
}
