// Module-resolution hook for test/tfjs-free.test.ts: any import of a @tensorflow package fails, naming the importer.
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('@tensorflow/')) throw new Error(`tfjs loaded: ${specifier} imported by ${context.parentURL}`);
  return next(specifier, context);
}
