// The engine's one entry: what the server, the worker and `sdql generate` use of src/diffusion/.
// A request goes the same way for all of them: prepareRequest (checked against the model, defaults,
// LoRAs and embeddings resolved from an AdapterSource), then an engine's run.
export { adapterSource, folderAdapterSource, prepareRequest, resolveAdapters } from './adapters.ts';
export type { AdapterSource, LoraChoice, LoraFileRef, RequestParams, ResolvedAdapters } from './adapters.ts';
export { listEmbeddings } from './embeddings.ts';
export type { EmbeddingInfo } from './embeddings.ts';
export { Engine } from './engine.ts';
export type { EngineOptions, EngineResult, EngineStepProgress, GenerationEngine, PreviewSettings, RunOptions } from './engine.ts';
export { EngineThread } from './engine-thread.ts';
export { DiffusionError, badInput } from './errors.ts';
export type { DiffusionErrorCode } from './errors.ts';
export { createDemoAdapters } from './fixtures/adapters.ts';
export { createFixturePipeline } from './fixtures/index.ts';
export { encodeImage, inputImageBytes, probeImage, verifyImage } from './image.ts';
export { encodeImageWithInfo, infotextAdapters, readImageInfo, type ImageInfo, type InfotextAdapters } from './image-info.ts';
export type { BlobLike, ImageFormat, RgbImage } from './image.ts';
export { embeddingShortHash, loraShortHash, sha256File } from './a1111-hashes.ts';
export { INPAINT_AREAS, INPAINT_DEFAULTS, INPAINT_FILLS, INPAINT_LIMITS, inpaintDefaults, inpaintInfotext } from './inpaint.ts';
export type { InpaintArea, InpaintFill, InpaintRequest, Outpaint } from './inpaint.ts';
export { a1111Selection, formatInfotext, parseInfotext, schedulerFromA1111, type InfotextParams } from './infotext.ts';
export { LIMITS } from './limits.ts';
export { listLoras } from './lora/lora-info.ts';
export type { LoraFileInfo } from './lora/lora-info.ts';
export { inspectModelFolder, scanModelsDir } from './model-folder.ts';
export type { ModelFamily, ModelFolderInfo } from './model-folder.ts';
export type { GenerateResult, StepProgress } from './pipeline.ts';
export { addPngText, readPngText } from './png-text.ts';
export { encodePreview, renderPreview, wantsPreview } from './preview.ts';
export { analyzePrompt, tokenizeText } from './prompt/analyze.ts';
export type { PromptAnalysis } from './prompt/analyze.ts';
export type { LoraTag } from './prompt/lora-tags.ts';
export { isBreak } from './prompt/parse.ts';
export type { WeightedSegment } from './prompt/parse.ts';
export { DEFAULTS, PROMPT_SYNTAXES, resolveRequest } from './request.ts';
export type { GenerateParams, GenerateRequest, PromptSyntax } from './request.ts';
export { SCHEDULER_NAMES } from './schedulers/index.ts';
export type { SchedulerName } from './schedulers/index.ts';
export { findTaesdDecoder } from './taesd.ts';
