// Prompts: the syntax a request's prompts are read in, what a prompt tokenizes to (for a panel's token
// counter), the textual-inversion embeddings prompts can call up, and the LoRAs and embeddings a
// generation was submitted with.
import {
  DEFAULTS,
  LIMITS,
  adapterSource,
  analyzePrompt,
  isBreak,
  listEmbeddings,
  tokenizeText,
  type EmbeddingInfo,
  type LoraTag,
  type PromptAnalysis,
  type WeightedSegment,
} from '../diffusion/index.ts';
import { readStoredRequest } from '../jobs/request.ts';
import { builder } from './builder.ts';
import { HIDDEN, ownersOnly } from './ownership.ts';
import type { Context } from './context.ts';
import { notFound } from './errors.ts';
import { localId } from './ids.ts';

export const PromptSyntax = builder.enumType('PromptSyntax', {
  description: 'How the prompt and the negative prompt are read.',
  values: {
    A1111: {
      description:
        "AUTOMATIC1111's syntax: `(word)` ×1.1, `[word]` ÷1.1, `(word:1.3)`, `\\(` for a literal bracket; prompts past 75 tokens in chunks " +
        '(`BREAK` starts a new one); prompt editing `[from:to:when]`, `[to:when]`, `[from::when]` (`when` a step, or a fraction with a decimal point) ' +
        'and alternation `[a|b]`; `<lora:name:weight>` tags. A prompt of at most 75 tokens without any of these reads as PLAIN.',
    },
    PLAIN: { description: "diffusers' behaviour: the text as it is, cut after 75 tokens." },
  },
});

const Embedding = builder.node(builder.objectRef<EmbeddingInfo>('Embedding'), {
  description: 'A textual-inversion embedding of SDQL_EMBEDDINGS_DIR. Its name in a prompt or negative prompt applies it.',
  id: { description: 'Global id of `Embedding:<name>`.', resolve: (e) => e.name },
  // The folder is read on each request, as the `embeddings` query reads it.
  loadMany: async (names, ctx) => {
    const found = await listEmbeddings(ctx.config.embeddingsDir);
    return names.map((name) => found.find((e) => e.name === name));
  },
  fields: (t) => ({
    name: t.exposeString('name', { description: 'The trigger word: the file name without its extension (case-sensitive).' }),
    vectors: t.exposeInt('vectors', { nullable: true, description: 'Token vectors it stands for: tokens it takes in the prompt.' }),
    dim: t.exposeInt('dim', { nullable: true, description: 'Width of its vectors: 768 for SD 1.x models, 1024 for SD 2.x, 2048 for SDXL (768 for the first text encoder plus 1280 for the second, its clip_l and clip_g).' }),
    error: t.exposeString('error', { nullable: true, description: 'Why the file cannot be used, when it cannot.' }),
  }),
});

const PromptSegment = builder.objectRef<WeightedSegment>('PromptSegment').implement({
  description: 'A run of prompt text with its attention weight.',
  fields: (t) => ({
    text: t.exposeString('text', { description: 'The text, without the brackets and weights of the syntax; empty for a BREAK.' }),
    weight: t.float({ description: '1 for plain text; 1 for a BREAK.', resolve: (s) => (isBreak(s) ? 1 : s.weight) }),
    isBreak: t.boolean({ description: 'The `BREAK` keyword, which starts a new chunk.', resolve: (s) => isBreak(s) }),
  }),
});

const PromptLora = builder.objectRef<LoraTag & { found: boolean }>('PromptLora').implement({
  description: 'A `<lora:name:weight>` tag of a prompt.',
  fields: (t) => ({
    name: t.exposeString('name', { description: "The tag's name: a LoRA's `tagName` when `found`." }),
    weight: t.exposeFloat('weight', { description: "Multiplier of the text encoder's update, and of the UNet's unless `unetWeight` differs." }),
    unetWeight: t.exposeFloat('unetWeight', { description: "Multiplier of the UNet's update (`<lora:name:te:unet>`)." }),
    found: t.exposeBoolean('found', { description: 'Whether SDQL_LORAS_DIR has a usable LoRA of this id (a generation with a missing one is refused).' }),
  }),
});

const PromptTokens = builder.objectRef<PromptAnalysis>('PromptTokens').implement({
  description: "What a prompt amounts to under the A1111 syntax, as AUTOMATIC1111's token counter shows it (`tokenCount/maxLength`).",
  fields: (t) => ({
    tokenCount: t.exposeInt('tokenCount', { description: 'Tokens, counting 75 for each full chunk; with prompt editing, the most of any step.' }),
    maxLength: t.exposeInt('maxLength', { description: 'The token count at which another chunk begins: 75 × chunks.' }),
    chunkCount: t.exposeInt('chunkCount', { description: 'Chunks of 75 tokens, each encoded on its own.' }),
    segments: t.field({ type: [PromptSegment], description: 'The text counted, as weighted runs.', resolve: (p) => p.segments }),
    loras: t.field({ type: [PromptLora], description: 'The `<lora:…>` tags, which are not part of the text.', resolve: (p) => p.loras }),
    embeddings: t.exposeStringList('embeddings', { description: 'Embeddings (see `embeddings`) the prompt calls up.' }),
  }),
});

const AppliedLora = builder.objectRef<{ name: string; weight: number; unetWeight?: number }>('AppliedLora').implement({
  description: 'A LoRA a generation applies: one of its `loras`, or a `<lora:…>` tag of its prompt.',
  fields: (t) => ({
    name: t.exposeString('name', { description: "The LoRA's `tagName`." }),
    weight: t.exposeFloat('weight', { description: "Multiplier of the text encoder's update (and of the UNet's unless `unetWeight` differs)." }),
    unetWeight: t.float({ description: "Multiplier of the UNet's update.", resolve: (l) => l.unetWeight ?? l.weight }),
  }),
});


builder.prismaObjectFields('Generation', (t) => ({
  promptSyntax: t.field({ type: PromptSyntax, description: 'How its prompts were read.', resolve: (g) => (readStoredRequest(g).promptSyntax === 'PLAIN' ? 'PLAIN' : 'A1111') }),
  loras: t.field({
    type: [AppliedLora],
    description: `The LoRAs applied, from \`loras\` and from the prompt, as found when it was submitted. ${HIDDEN}`,
    ...ownersOnly([]),
    resolve: (g) => readStoredRequest(g).adapters?.loras ?? [],
  }),
  embeddings: t.stringList({
    description: `The embeddings its prompts called up, as found when it was submitted. ${HIDDEN}`,
    ...ownersOnly([]),
    resolve: (g) => readStoredRequest(g).adapters?.embeddings.map((e) => e.token) ?? [],
  }),
}));

function modelOf(ctx: Context, id: string | number) {
  const model = ctx.registry.model(localId('Model', id));
  if (!model) throw notFound('model', String(id));
  return model;
}

const MODEL_ARG = "The model whose tokenizer counts: its `id` or `name`. NOT_FOUND when there is none; MODEL_INVALID when its tokenizer cannot be read.";

builder.queryFields((t) => ({
  embeddings: t.field({
    type: [Embedding],
    description: 'The textual-inversion embeddings of SDQL_EMBEDDINGS_DIR, by name; unusable files too, with their `error`.',
    resolve: (_r, _a, ctx) => listEmbeddings(ctx.config.embeddingsDir),
  }),
  tokenize: t.intList({
    description: "CLIP token ids of a text with the model's tokenizer, with the start and end tokens, no padding and no truncation; no prompt syntax is read.",
    args: {
      modelId: t.arg.id({ required: true, description: MODEL_ARG }),
      text: t.arg.string({ required: true, description: `Any text, up to ${LIMITS.maxPromptChars} characters (else BAD_USER_INPUT).` }),
    },
    resolve: (_r, { modelId, text }, ctx) => tokenizeText(modelOf(ctx, modelId), text),
  }),
  promptTokens: t.field({
    type: PromptTokens,
    description: 'Tokens, chunks, weights, LoRA tags and embeddings of a prompt under the A1111 syntax, for a token counter.',
    args: {
      modelId: t.arg.id({ required: true, description: MODEL_ARG }),
      prompt: t.arg.string({ required: true, description: `A prompt in the A1111 syntax, up to ${LIMITS.maxPromptChars} characters (else BAD_USER_INPUT).` }),
      steps: t.arg.int({ description: `The steps prompt edits are scheduled over, which decide the texts counted. Default ${DEFAULTS.steps}.` }),
    },
    resolve: (_r, { modelId, prompt, steps }, ctx) =>
      analyzePrompt(modelOf(ctx, modelId), prompt, { steps: steps ?? undefined, adapters: adapterSource(ctx.registry, ctx.config.embeddingsDir) }),
  }),
}));
