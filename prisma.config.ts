// For Prisma's CLI (`prisma generate`, `prisma migrate status|deploy`). sdql itself applies the
// migrations at start-up (src/db/migrate.ts) and needs none of this.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  // Only commands that connect need it: `DATABASE_URL=postgresql://… npx prisma migrate status`.
  datasource: { url: process.env.DATABASE_URL },
});
