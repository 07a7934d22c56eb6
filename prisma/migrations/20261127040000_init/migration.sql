-- Trigram indexes make prompt search (ILIKE '%…%', Prisma's `contains`) fast.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- CreateEnum
CREATE TYPE "GenerationStatus" AS ENUM ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELED');

-- CreateEnum
CREATE TYPE "ModelFamily" AS ENUM ('SD1', 'SD2', 'SDXL', 'UNKNOWN');

-- CreateEnum
CREATE TYPE "Precision" AS ENUM ('FP32', 'FP16');

-- CreateTable
CREATE TABLE "Model" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "family" "ModelFamily" NOT NULL DEFAULT 'UNKNOWN',
    "supported" BOOLEAN NOT NULL DEFAULT false,
    "predictionType" TEXT,
    "vaeScaleFactor" INTEGER,
    "nativeWidth" INTEGER,
    "nativeHeight" INTEGER,
    "canImg2img" BOOLEAN NOT NULL DEFAULT false,
    "canInpaint" BOOLEAN NOT NULL DEFAULT false,
    "precision" "Precision",
    "sizeBytes" BIGINT NOT NULL DEFAULT 0,
    "unetSha256" TEXT,
    "unetStamp" TEXT,
    "error" TEXT,
    "present" BOOLEAN NOT NULL DEFAULT true,
    "scannedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Model_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Lora" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "sizeBytes" BIGINT NOT NULL DEFAULT 0,
    "sha256" TEXT,
    "fileStamp" TEXT,
    "baseModelVersion" TEXT,
    "networkDim" INTEGER,
    "networkAlpha" DOUBLE PRECISION,
    "triggerWords" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "error" TEXT,
    "present" BOOLEAN NOT NULL DEFAULT true,
    "scannedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Lora_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Generation" (
    "id" TEXT NOT NULL,
    "status" "GenerationStatus" NOT NULL DEFAULT 'QUEUED',
    "modelId" TEXT NOT NULL,
    "modelHash" TEXT,
    "prompt" TEXT NOT NULL,
    "negativePrompt" TEXT NOT NULL DEFAULT '',
    "scheduler" TEXT NOT NULL,
    "width" INTEGER NOT NULL,
    "height" INTEGER NOT NULL,
    "steps" INTEGER NOT NULL,
    "guidanceScale" DOUBLE PRECISION NOT NULL,
    "guidanceRescale" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "eta" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "strength" DOUBLE PRECISION,
    "seed" BIGINT NOT NULL,
    "numImages" INTEGER NOT NULL DEFAULT 1,
    "priority" INTEGER NOT NULL DEFAULT 0,
    "step" INTEGER NOT NULL DEFAULT 0,
    "totalSteps" INTEGER,
    "error" TEXT,
    "warnings" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "workerId" TEXT,
    "heartbeatAt" TIMESTAMP(3),
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "cancelRequested" BOOLEAN NOT NULL DEFAULT false,
    "request" JSONB NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" TIMESTAMP(3),
    "finishedAt" TIMESTAMP(3),

    CONSTRAINT "Generation_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Image" (
    "id" TEXT NOT NULL,
    "generationId" TEXT NOT NULL,
    "index" INTEGER NOT NULL,
    "path" TEXT NOT NULL,
    "width" INTEGER NOT NULL,
    "height" INTEGER NOT NULL,
    "seed" BIGINT NOT NULL,
    "format" TEXT NOT NULL,
    "bytes" INTEGER NOT NULL,
    "sha256" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Image_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "Generation_createdAt_idx" ON "Generation"("createdAt");

-- CreateIndex
CREATE INDEX "Generation_status_createdAt_idx" ON "Generation"("status", "createdAt");

-- CreateIndex
CREATE INDEX "Generation_status_priority_createdAt_id_idx" ON "Generation"("status", "priority" DESC, "createdAt", "id");

-- CreateIndex
CREATE INDEX "Generation_modelId_createdAt_idx" ON "Generation"("modelId", "createdAt");

-- CreateIndex
CREATE INDEX "Generation_prompt_idx" ON "Generation" USING GIN ("prompt" gin_trgm_ops);

-- CreateIndex
CREATE INDEX "Generation_negativePrompt_idx" ON "Generation" USING GIN ("negativePrompt" gin_trgm_ops);

-- CreateIndex
CREATE UNIQUE INDEX "Image_path_key" ON "Image"("path");

-- CreateIndex
CREATE UNIQUE INDEX "Image_generationId_index_key" ON "Image"("generationId", "index");

-- AddForeignKey
ALTER TABLE "Generation" ADD CONSTRAINT "Generation_modelId_fkey" FOREIGN KEY ("modelId") REFERENCES "Model"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Image" ADD CONSTRAINT "Image_generationId_fkey" FOREIGN KEY ("generationId") REFERENCES "Generation"("id") ON DELETE CASCADE ON UPDATE CASCADE;
