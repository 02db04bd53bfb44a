// Lint rules: typescript-eslint's type-aware recommended set; floating promises are errors because an
// unawaited rejection in a stream handler is a silent outage.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/generated/**', 'coverage/**', '.venv/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  // The dependency rule of ARCHITECTURE.md, enforced: the contract imports nothing of the project; the filter
  // service imports only the contract and the platform helpers (logging, metrics, admin endpoint, protobuf
  // codec and generated types, TLS, the Redis client, errors); the control plane never imports the filter service, except the
  // process wiring that embeds it.
  {
    files: ['filters/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)src/(?!(contract|observability|proto|generated|tls|redis)/|errors\\.js$)',
              message: 'filters/ may import only src/contract and the platform helpers (observability, proto, generated, tls, redis, errors).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/control/plane.ts', 'src/control/filter-policy-source.ts', 'src/cli/commands/filters.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ regex: '(^|/)filters/', message: 'the control plane never imports filters/ (only the process wiring that embeds the filter service).' }] }] },
  },
  {
    files: ['src/contract/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ regex: '^\\.\\./', message: 'src/contract imports nothing from the project.' }] }] },
  },
  { files: ['eslint.config.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  { files: ['**/*.mjs'], languageOptions: { globals: { process: 'readonly', URL: 'readonly', console: 'readonly' } } },
);
