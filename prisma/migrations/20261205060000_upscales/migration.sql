-- CreateEnum
CREATE TYPE "GenerationKind" AS ENUM ('GENERATE', 'UPSCALE');

-- AlterTable: an upscale is a row of the queue without a model; rows before it are generations.
ALTER TABLE "Generation" ADD COLUMN     "kind" "GenerationKind" NOT NULL DEFAULT 'GENERATE',
ALTER COLUMN "modelId" DROP NOT NULL;

-- CreateIndex
CREATE INDEX "Generation_kind_owner_createdAt_idx" ON "Generation"("kind", "owner", "createdAt");
