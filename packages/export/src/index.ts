export { exportTernary, resolveCheckpoint } from './export.ts';
export type { ExportOptions, ExportReport } from './export.ts';
