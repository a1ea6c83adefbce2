export { answerCrossEntropy } from './answer-ce.ts';
export { logitKd } from './logit-kd.ts';
export { attentionRelationKd, RELATIONS } from './attention-relation-kd.ts';
export type { QKV, Relation, AttentionRelationKdOptions } from './attention-relation-kd.ts';
export { answerCrossEntropyRef, logitKdRef, attentionRelationKdRef } from './reference.ts';
export type { RefTensor, RefQKV } from './reference.ts';
