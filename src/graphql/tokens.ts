// API tokens (SDQL_AUTH=tokens): their scopes, and the ADMIN-only queries and mutations that manage
// them (as `sdql tokens` does from the command line). The token store lives in src/auth.
import type { TokenInfo } from '../auth/index.ts';
import { builder } from './builder.ts';

export const Scope = builder.enumType('Scope', {
  description: 'What a token may do. Each scope grants what the ones above it grant.',
  values: {
    READ: { description: "Models, LoRAs, embeddings, prompts' tokens, the queue (others' prompts hidden), and its own generations and images." },
    GENERATE: { description: 'READ, and generate, cancel and delete its own generations and images.' },
    ADMIN: { description: "Everything: every owner's generations, `rescanModels`, tokens, and `priority` above 0." },
  },
});

const Token = builder.objectRef<TokenInfo>('Token').implement({
  description: 'An API token, without its text (only its SHA-256 is kept).',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'Unique; the `owner` of the generations it submits.' }),
    scopes: t.field({ type: [Scope], description: 'What it may do.', resolve: (token) => token.scopes }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it was created.' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true, description: 'When a request last came with it (to the minute); null if never.' }),
  }),
});

const CreatedToken = builder.objectRef<{ token: string; info: TokenInfo }>('CreatedToken').implement({
  description: 'A new token, with its text: shown this once, never again.',
  fields: (t) => ({
    token: t.exposeString('token', { description: 'The token (`sdql_…`): send it as `Authorization: Bearer <token>`, or as `authorization` in graphql-ws connectionParams.' }),
    name: t.string({ description: 'Its name.', resolve: (c) => c.info.name }),
    scopes: t.field({ type: [Scope], description: 'What it may do.', resolve: (c) => c.info.scopes }),
    createdAt: t.field({ type: 'DateTime', description: 'When it was created.', resolve: (c) => c.info.createdAt }),
  }),
});

builder.queryField('tokens', (t) =>
  t.field({
    type: [Token],
    description: 'Every API token, oldest first. Needs the ADMIN scope.',
    authScopes: { admin: true },
    resolve: (_r, _a, ctx) => ctx.auth.tokens.list(),
  }),
);

builder.mutationFields((t) => ({
  createToken: t.field({
    type: CreatedToken,
    description: 'Creates an API token. Needs the ADMIN scope. CONFLICT when the name is taken; BAD_USER_INPUT for a bad name or no scope.',
    authScopes: { admin: true },
    args: {
      name: t.arg.string({ required: true, description: 'Unique: 1 to 64 letters, digits or `_ . @ -`. Generations it submits record it as their `owner`.' }),
      scopes: t.arg({ type: [Scope], required: true, description: 'What it may do; at least one.' }),
    },
    resolve: (_r, { name, scopes }, ctx) => ctx.auth.tokens.create(name, scopes),
  }),
  revokeToken: t.field({
    type: Token,
    description: 'Deletes an API token: requests with it are refused from now on (UNAUTHENTICATED). Returns it. Needs the ADMIN scope; NOT_FOUND when no token has the name.',
    authScopes: { admin: true },
    args: { name: t.arg.string({ required: true, description: "The token's `name`." }) },
    resolve: (_r, { name }, ctx) => ctx.auth.tokens.revoke(name),
  }),
}));
