/**
 * The switch for the fused training ops (issue 15): backends register fused kernels (BitLinear, SwiGLU, causal
 * attention, attention-relation KD, the head loss); with the switch off every op runs its op-by-op twin instead. It lives here,
 * free of tfjs, so that model and losses read the same flag. BITDISTILL_FUSED=0 starts with it off.
 */
let fusedOn = process.env['BITDISTILL_FUSED'] !== '0';

/** Switch the fused training ops on or off; returns the previous setting. */
export function setFusedOps(on: boolean): boolean {
  const prev = fusedOn;
  fusedOn = on;
  return prev;
}

export function fusedOpsEnabled(): boolean {
  return fusedOn;
}
