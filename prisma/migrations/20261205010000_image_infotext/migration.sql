-- AlterTable
ALTER TABLE "Image" ADD COLUMN     "infotext" TEXT;
