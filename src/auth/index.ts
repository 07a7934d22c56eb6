// Who is asking and what they may do. With SDQL_AUTH=tokens every GraphQL request carries a token:
// random, shown once, stored only as its SHA-256, with scopes (READ < GENERATE < ADMIN, each with
// the ones before it); its name is the owner of what it submits. With SDQL_AUTH=off everyone who
// reaches the port is the local admin. Image files are fetched by <img> tags, which send no headers:
// their URLs carry an expiring HMAC of their path instead.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config.ts';
import { Prisma, type PrismaClient, type Scope, type Token } from '../db/index.ts';
import { log } from '../log.ts';

export type { Scope } from '../db/index.ts';

/** Every scope, each granting what those before it grant. */
export const SCOPES: readonly Scope[] = ['READ', 'GENERATE', 'ADMIN'];

/** The owner of what is submitted while authentication is off (and of what was stored before tokens). */
export const LOCAL_OWNER = 'local';

export interface Viewer {
  /** The token's name (LOCAL_OWNER with auth off): what generations record as their owner. */
  name: string;
  /** May generate, cancel and delete its own generations. */
  canGenerate: boolean;
  /** May do everything, to every owner's generations. */
  admin: boolean;
}

function viewerOf(name: string, scopes: readonly Scope[]): Viewer {
  const admin = scopes.includes('ADMIN');
  return { name, admin, canGenerate: admin || scopes.includes('GENERATE') };
}

export const LOCAL_VIEWER: Viewer = viewerOf(LOCAL_OWNER, ['ADMIN']);

/** What a viewer may see of the Generation table: its own rows, or every row for an admin. */
export const ownedBy = (viewer: Viewer): { owner?: string } => (viewer.admin ? {} : { owner: viewer.name });

/** Whether `viewer` may see and act on what `owner` owns. */
export const mayAccess = (viewer: Viewer, owner: string) => viewer.admin || viewer.name === owner;

/** A request the token store refuses, with the code a client can act on. */
export class AuthError extends Error {
  override name = 'AuthError';
  constructor(
    readonly code: 'BAD_USER_INPUT' | 'NOT_FOUND' | 'CONFLICT',
    message: string,
  ) {
    super(message);
  }
}

export const TOKEN_PREFIX = 'sdql_';
/** 256 random bits. */
const newToken = () => `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

/** A token as listed: everything but its hash. */
export type TokenInfo = Omit<Token, 'hash'>;
const INFO = { name: true, scopes: true, createdAt: true, lastUsedAt: true } as const;

const TOKEN_NAME = /^[A-Za-z0-9][\w.@-]{0,63}$/;
/** lastUsedAt is written at most this often per token, so that reading is not a write per request. */
const LAST_USED_RESOLUTION_MS = 60_000;

/** The token of an Authorization header or a graphql-ws connectionParams.authorization: `Bearer sdql_…` or the bare token. */
export function bearerToken(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const token = value.trim().replace(/^bearer\s+/i, '');
  return token.startsWith(TOKEN_PREFIX) ? token : undefined;
}

/** The tokens of a database: for the server, its GraphQL mutations and `sdql tokens`. */
export class Tokens {
  constructor(private readonly prisma: PrismaClient) {}

  /** A new token; the only time its text is known. BAD_USER_INPUT for a bad name or no scope, CONFLICT when the name is taken. */
  async create(name: string, scopes: readonly Scope[]): Promise<{ token: string; info: TokenInfo }> {
    if (!TOKEN_NAME.test(name)) throw new AuthError('BAD_USER_INPUT', `name must be 1 to 64 letters, digits or _ . @ -, starting with a letter or digit, got "${name}"`);
    const unknown = scopes.filter((s) => !SCOPES.includes(s));
    if (unknown.length) throw new AuthError('BAD_USER_INPUT', `scopes must be among ${SCOPES.join(', ')}, got ${unknown.join(', ')}`);
    if (scopes.length === 0) throw new AuthError('BAD_USER_INPUT', `scopes must name at least one of ${SCOPES.join(', ')}`);
    const token = newToken();
    try {
      const info = await this.prisma.token.create({ data: { name, hash: hashToken(token), scopes: SCOPES.filter((s) => scopes.includes(s)) }, select: INFO });
      return { token, info };
    } catch (error) {
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002') {
        throw new AuthError('CONFLICT', `a token named "${name}" exists: revoke it first, or choose another name`);
      }
      throw error;
    }
  }

  list(): Promise<TokenInfo[]> {
    return this.prisma.token.findMany({ select: INFO, orderBy: { createdAt: 'asc' } });
  }

  /** Deletes a token: it is refused from the next request on. NOT_FOUND when there is none. */
  async revoke(name: string): Promise<TokenInfo> {
    try {
      return await this.prisma.token.delete({ where: { name }, select: INFO });
    } catch (error) {
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2025') throw new AuthError('NOT_FOUND', `no token is named "${name}"`);
      throw error;
    }
  }

  /** The viewer a token stands for; undefined for an unknown or revoked one. */
  async authenticate(token: string): Promise<Viewer | undefined> {
    const found = await this.prisma.token.findUnique({ where: { hash: hashToken(token) }, select: { name: true, scopes: true, lastUsedAt: true } });
    if (!found) return undefined;
    const now = Date.now();
    if (!found.lastUsedAt || now - found.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
      await this.prisma.token.updateMany({ where: { name: found.name }, data: { lastUsedAt: new Date(now) } });
    }
    return viewerOf(found.name, found.scopes);
  }

  /**
   * At the first start with tokens: creates the token `admin` when no token has ADMIN, and returns
   * its text (undefined when an admin token exists, or another server created it meanwhile).
   */
  async ensureAdmin(): Promise<string | undefined> {
    if (await this.hasAdmin()) return undefined;
    try {
      return (await this.create('admin', ['ADMIN'])).token;
    } catch (error) {
      if (!(error instanceof AuthError && error.code === 'CONFLICT')) throw error;
      // Another server created it meanwhile, or a token without ADMIN has the name.
      if (!(await this.hasAdmin())) log.warn('no token has the ADMIN scope and the name "admin" is taken: create one with `sdql tokens create <name> --scopes ADMIN`');
      return undefined;
    }
  }

  private async hasAdmin(): Promise<boolean> {
    // Tokens are few: read their scopes rather than filter an enum array in SQL, which the PGlite adapter cannot bind.
    return (await this.prisma.token.findMany({ select: { scopes: true } })).some((t) => t.scopes.includes('ADMIN'));
  }
}

/** The key that signs image URLs: one per database, created at the first start, so every server of a shared Postgres agrees. */
async function imageUrlKey(prisma: PrismaClient): Promise<Buffer> {
  const name = 'image-url-key';
  await prisma.secret.createMany({ data: [{ name, value: randomBytes(32).toString('base64url') }], skipDuplicates: true });
  const { value } = await prisma.secret.findUniqueOrThrow({ where: { name } });
  return Buffer.from(value, 'base64url');
}

/** An HMAC-SHA256 of a path and an expiry (Unix seconds), base64url. */
export function imageSignature(key: Buffer, path: string, exp: number): string {
  return createHmac('sha256', key).update(`${path}\n${exp}`).digest('base64url');
}

export interface Auth {
  /** Whether requests need tokens (SDQL_AUTH=tokens). */
  readonly enabled: boolean;
  readonly tokens: Tokens;
  /** The viewer of a request's credentials (an Authorization header value); undefined when they do not name a valid token. */
  authenticate(authorization: unknown): Promise<Viewer | undefined>;
  /** An image file's path with what makes it fetchable (`?exp=…&sig=…` with tokens; nothing with auth off). */
  signImagePath(path: string): string;
  /** Whether a request for an image path may be served: signed, unexpired and untampered with tokens. */
  imageRequestAllowed(path: string, query: URLSearchParams): boolean;
}

/** The server's authentication: reads (or at the first start creates) the URL-signing key. */
export async function createAuth(prisma: PrismaClient, config: Pick<Config, 'auth' | 'imageUrlTtlSeconds'>): Promise<Auth> {
  const tokens = new Tokens(prisma);
  if (config.auth === 'off') {
    return {
      enabled: false,
      tokens,
      authenticate: async () => LOCAL_VIEWER,
      signImagePath: (path) => path,
      imageRequestAllowed: () => true,
    };
  }
  const key = await imageUrlKey(prisma);
  const ttl = config.imageUrlTtlSeconds;
  // Expiries are rounded up to a tenth of the TTL, so that a URL stays the same for a while and browsers cache it.
  const step = Math.max(1, Math.ceil(ttl / 10));
  return {
    enabled: true,
    tokens,
    authenticate: async (authorization) => {
      const token = bearerToken(authorization);
      return token ? tokens.authenticate(token) : undefined;
    },
    signImagePath: (path) => {
      const exp = Math.ceil((Date.now() / 1000 + ttl) / step) * step;
      return `${path}?exp=${exp}&sig=${imageSignature(key, path, exp)}`;
    },
    imageRequestAllowed: (path, query) => {
      const exp = Number(query.get('exp'));
      const sig = Buffer.from(query.get('sig') ?? '');
      const expected = Buffer.from(imageSignature(key, path, exp));
      return Number.isSafeInteger(exp) && exp >= Date.now() / 1000 && sig.length === expected.length && timingSafeEqual(sig, expected);
    },
  };
}
