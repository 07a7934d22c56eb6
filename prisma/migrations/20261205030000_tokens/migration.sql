-- CreateEnum
CREATE TYPE "Scope" AS ENUM ('READ', 'GENERATE', 'ADMIN');

-- AlterTable: generations made before tokens belong to the local user.
ALTER TABLE "Generation" ADD COLUMN     "owner" TEXT NOT NULL DEFAULT 'local';

-- CreateTable
CREATE TABLE "Token" (
    "name" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "scopes" "Scope"[],
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastUsedAt" TIMESTAMP(3),

    CONSTRAINT "Token_pkey" PRIMARY KEY ("name")
);

-- CreateTable
CREATE TABLE "Secret" (
    "name" TEXT NOT NULL,
    "value" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Secret_pkey" PRIMARY KEY ("name")
);

-- CreateIndex
CREATE INDEX "Generation_owner_status_createdAt_idx" ON "Generation"("owner", "status", "createdAt");

-- CreateIndex
CREATE UNIQUE INDEX "Token_hash_key" ON "Token"("hash");
