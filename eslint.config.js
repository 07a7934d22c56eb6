import js from '@eslint/js';
import graphqlPlugin from '@graphql-eslint/eslint-plugin';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// GraphQL: the printed schema and the documents of clients/ (.graphql files, and the /* GraphQL */
// templates of their .ts files), the documents checked against the schema.
const graphQLConfig = { schema: 'schema/schema.graphql', documents: ['clients/**/*.graphql', 'clients/**/*.ts', '!clients/**/node_modules/**', '!clients/photoshop/src/api/generated/**'] };
const graphqlLanguage = { parser: graphqlPlugin.parser, parserOptions: { graphQLConfig } };

export default tseslint.config(
  { ignores: ['node_modules/', 'data/', 'models/', 'src/db/generated/', 'clients/typescript/generated/', 'clients/photoshop/src/api/generated/', 'clients/**/dist/', 'clients/**/dist-browser/', 'clients/**/test-output/'] },
  { files: ['**/*.{js,mjs,ts}'], extends: [js.configs.recommended, ...tseslint.configs.recommended] },
  { files: ['**/*.js', '**/*.mjs'], languageOptions: { globals: globals.node } },
  // Tests walk GraphQL responses (and page globals) whose shape the query, not a type, states.
  { files: ['test/**/*.ts', 'clients/*/test/**/*.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  {
    files: ['**/*.{js,mjs,ts}'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // Lifts the GraphQL documents out of the clients' code for the rules below.
  { files: ['clients/**/*.ts'], processor: graphqlPlugin.processor },
  {
    files: ['schema/schema.graphql'],
    languageOptions: graphqlLanguage,
    plugins: { '@graphql-eslint': graphqlPlugin },
    rules: {
      ...graphqlPlugin.configs['flat/schema-recommended'].rules,
      // Every element described (test/graphql/descriptions.test.ts names any that is not).
      '@graphql-eslint/require-description': [
        'error',
        {
          types: true,
          rootField: true,
          FieldDefinition: true,
          InputValueDefinition: true,
          EnumValueDefinition: true,
          DirectiveDefinition: true,
        },
      ],
      // Objects with an identity implement Node; results (PngInfo, PromptTokens, …) have none.
      '@graphql-eslint/strict-id-in-types': 'off',
      '@graphql-eslint/require-deprecation-reason': 'error',
      '@graphql-eslint/no-unreachable-types': 'error',
    },
  },
  {
    files: ['clients/**/*.graphql'],
    languageOptions: graphqlLanguage,
    plugins: { '@graphql-eslint': graphqlPlugin },
    rules: graphqlPlugin.configs['flat/operations-recommended'].rules,
  },
  // The plugin counts a fragment as used only from another file, and all the templates of one .ts
  // file count as one. test/clients/typescript.test.ts validates each operation with graphql-js,
  // which refuses unused fragments.
  { files: ['clients/**/*.ts/*.graphql'], rules: { '@graphql-eslint/no-unused-fragments': 'off' } },
);
