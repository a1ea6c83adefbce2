// ESLint (flat config): the recommended rules of @eslint/js and typescript-eslint over every TypeScript source,
// test and script. Run by test/lint.test.ts as part of `npm test`, and by `npm run lint`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/types/**', '**/build/**', 'runs/**', '.tmp/**', 'out/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // A leading underscore marks a parameter or binding kept for its position or its side effect.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
