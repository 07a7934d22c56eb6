import { PullError, type ModelPullJob } from '../registry/index.ts';
import { builder } from './builder.ts';
import { notFound, userError } from './errors.ts';

const ModelPullStatus = builder.enumType('ModelPullStatus', {
  description: 'Where a pull from the Hugging Face Hub stands.',
  values: {
    RUNNING: { description: 'Listing the repository or downloading; see `bytesDone`.' },
    SUCCEEDED: { description: 'The model is in SDQL_MODELS_DIR, and the models were rescanned: see `model`.' },
    FAILED: { description: 'See `error`. Files downloaded so far stay (except after CHECKSUM_MISMATCH): the same pull again resumes.' },
  },
});

const ModelPullKind = builder.enumType('ModelPullKind', {
  description: 'What a pull downloads.',
  values: {
    ONNX: { description: 'A diffusers/Optimum ONNX pipeline: a model folder.' },
    CHECKPOINT: { description: 'One `.safetensors` checkpoint file (and its `.yaml`, when the repository has one).' },
  },
});

const ModelPullErrorCode = builder.enumType('ModelPullErrorCode', {
  description: 'Why a pull failed.',
  values: {
    BAD_USER_INPUT: { description: 'The name was taken while the pull ran.' },
    NOT_FOUND: { description: 'The Hub has no such repository, revision or file.' },
    UNAUTHORIZED: { description: 'The repository is private or gated: the server needs an HF_TOKEN that may read it.' },
    NO_MODEL: { description: 'The repository holds no ONNX pipeline and no single `.safetensors` checkpoint (give `subfolder` or `file`).' },
    CHECKSUM_MISMATCH: { description: "A file did not match the Hub's SHA-256: everything of the pull was deleted." },
    DOWNLOAD_FAILED: { description: 'The network or the Hub failed; the same pull again resumes.' },
  },
});

const ModelPull = builder.objectRef<ModelPullJob>('ModelPull').implement({
  description: 'A download of a model from the Hugging Face Hub into SDQL_MODELS_DIR (`pullModel`). Pulls live in the memory of the server that runs them.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'For `modelPull` and `modelPullProgress`.' }),
    repo: t.exposeString('repo', { description: 'The repository, `owner/name`.' }),
    revision: t.exposeString('revision', { description: 'The branch, tag or commit pulled.' }),
    subfolder: t.exposeString('subfolder', { nullable: true, description: 'Where in the repository the pipeline is, when not at its top.' }),
    file: t.exposeString('file', { nullable: true, description: 'The checkpoint file asked for, if one was.' }),
    name: t.exposeString('name', { description: "The model's `name` once pulled." }),
    status: t.expose('status', { type: ModelPullStatus, description: 'Running, succeeded or failed.' }),
    kind: t.expose('kind', { type: ModelPullKind, nullable: true, description: 'What the repository holds, once listed.' }),
    files: t.exposeStringList('files', { description: 'The repository paths being downloaded (empty until listed); files sdql does not use are left out.' }),
    filesDone: t.exposeInt('filesDone', { description: 'Files downloaded and checked.' }),
    currentFile: t.exposeString('currentFile', { nullable: true, description: 'The file downloading now.' }),
    bytesDone: t.field({ type: 'SafeInt', description: 'Bytes downloaded (resumed ones included).', resolve: (p) => p.bytesDone }),
    bytesTotal: t.field({ type: 'SafeInt', description: 'Bytes of all `files` (0 until listed).', resolve: (p) => p.bytesTotal }),
    error: t.exposeString('error', { nullable: true, description: 'Why it failed, in words to act on.' }),
    errorCode: t.expose('errorCode', { type: ModelPullErrorCode, nullable: true, description: 'Why it failed, for programs.' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', description: 'When it was submitted.' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true, description: 'When it succeeded or failed.' }),
    model: t.prismaField({
      type: 'Model',
      nullable: true,
      description: 'The model, once SUCCEEDED and listed by `models`.',
      resolve: (query, pull, _a, ctx) => (pull.status === 'SUCCEEDED' ? ctx.db.prisma.model.findFirst({ ...query, where: { id: pull.name, present: true } }) : null),
    }),
  }),
});

function findPull(pulls: { get(id: string): ModelPullJob | undefined }, id: string | number): ModelPullJob {
  const pull = pulls.get(String(id));
  if (!pull) throw notFound('model pull', String(id));
  return pull;
}

const pullId = { required: true, description: 'The `id` of a pull on this server. NOT_FOUND when there is none (pulls are forgotten at restart).' } as const;

builder.queryFields((t) => ({
  modelPulls: t.field({
    type: [ModelPull],
    description: 'The pulls from the Hub this server ran since it started, newest first. Needs the ADMIN scope.',
    authScopes: { admin: true },
    resolve: (_r, _a, ctx) => ctx.pulls.list(),
  }),
  modelPull: t.field({
    type: ModelPull,
    description: 'One pull by `id`. Needs the ADMIN scope.',
    authScopes: { admin: true },
    args: { id: t.arg.id(pullId) },
    resolve: (_r, { id }, ctx) => findPull(ctx.pulls, id),
  }),
}));

builder.mutationField('pullModel', (t) =>
  t.field({
    type: ModelPull,
    description:
      'Downloads a model from the Hugging Face Hub (HF_ENDPOINT) into SDQL_MODELS_DIR in the background: a diffusers/Optimum ONNX pipeline, ' +
      'or one `.safetensors` checkpoint. Returns the RUNNING pull at once; follow it with `modelPullProgress`. Files are checked against ' +
      "the Hub's SHA-256; the model is rescanned (and `modelsChanged` announced) when complete. BAD_USER_INPUT for a malformed repository id " +
      'or path, an unsafe name, or a name that a model or a running pull has. Needs the ADMIN scope (it writes to the models folder).',
    authScopes: { admin: true },
    args: {
      repo: t.arg.string({ required: true, description: 'The repository, `owner/name` (e.g. `onnx-community/stable-diffusion-v1-5-ONNX`).' }),
      revision: t.arg.string({ description: 'A branch, tag or commit (default `main`).' }),
      subfolder: t.arg.string({ description: 'Where the pipeline is inside the repository, when not at its top.' }),
      file: t.arg.string({ description: 'One `.safetensors` checkpoint of the repository to pull instead of a pipeline.' }),
      name: t.arg.string({ description: "The model's `name` (default: the checkpoint's file name with `file`, else the repository's or subfolder's name)." }),
    },
    resolve: (_r, args, ctx) => {
      try {
        return ctx.pulls.start({ repo: args.repo, revision: args.revision ?? undefined, subfolder: args.subfolder ?? undefined, file: args.file ?? undefined, name: args.name ?? undefined });
      } catch (error) {
        if (error instanceof PullError) throw userError('BAD_USER_INPUT', error.message);
        throw error;
      }
    },
  }),
);

builder.subscriptionField('modelPullProgress', (t) =>
  t.field({
    type: ModelPull,
    description: "A pull's state now, then as it downloads (about 200 progress events in all, and one per file), ending after SUCCEEDED or FAILED. Needs the ADMIN scope.",
    authScopes: { admin: true },
    args: { id: t.arg.id(pullId) },
    subscribe: (_r, { id }, ctx) => ctx.pulls.watch(findPull(ctx.pulls, id).id),
    resolve: (pull) => pull,
  }),
);
