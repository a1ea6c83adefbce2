export { answerCrossEntropy } from './answer-ce.ts';
export { logitKd } from './logit-kd.ts';
export { attentionRelationKd } from './attention-relation-kd.ts';
export type { QKV, Relation, AttentionRelationKdOptions } from './attention-relation-kd.ts';
export type { RefTensor, RefQKV } from './reference.ts';
export { fusedHeadLoss, AUTO_CHUNK_BYTES } from './fused-head-loss.ts';
export type { FusedHeadLossOptions, FusedHeadLossResult, FusedCeOptions, FusedKdOptions } from './fused-head-loss.ts';
export { untaped } from './untaped.ts';
