// A Stable Diffusion pipeline loaded from a diffusers/Optimum ONNX folder: its four sessions and
// its tokenizer, checked to fit together before the first request runs.
import { clipSkipBeyondMessage, exposeHiddenStates, layerNorm, type HiddenStates } from './clip-skip.ts';
import { expandEmbeddingTokens } from './embeddings.ts';
import { badInput, invalidModel } from './errors.ts';
import { Adaptation, adaptersKey, type Adapters } from './lora/adapt.ts';
import { ModelEditor } from './lora/model-editor.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import { OnnxModel, type ModelBuffer, type OutputTensor, type RuntimeOptions } from './onnx-model.ts';
import { providersFor, type Submodel } from './providers.ts';
import type { SessionPool } from './session-pool.ts';
import { ClipTokenizer } from './tokenizer.ts';

/**
 * onnxruntime's memory pattern (one block planned for all of a run's activations) per submodel. Off,
 * the peak RSS of a 512² run fell to 0.53× for the UNet (batch 2), 0.70× for the VAE decoder and
 * 0.79× for the encoder, and did not move for the text encoder (bench `memory`); step time showed no
 * slowdown there, nor in issue 11's SD 1.5 measurement (8.37–8.62 s off, 8.52–8.86 s on).
 */
export const MEM_PATTERN = { text_encoder: true, unet: false, vae_decoder: false, vae_encoder: false } as const satisfies Record<Submodel, boolean>;

/** The hidden states of a text encoder, once exposed, or why they cannot be. */
type HiddenStatesState = { states: HiddenStates } | { error: unknown };

export class StableDiffusionModel {
  /** Set once a request with clip skip needs them (at load for a text encoder edited in memory). */
  private hiddenStates: Promise<HiddenStatesState> | undefined;

  private constructor(
    readonly info: ModelFolderInfo,
    readonly tokenizer: ClipTokenizer,
    private textEncoderSession: OnnxModel,
    readonly unet: OnnxModel,
    readonly vaeDecoder: OnnxModel,
    readonly vaeEncoder: OnnxModel | undefined,
    /** What the LoRAs and embeddings it was loaded with left out. */
    readonly warnings: readonly string[] = [],
    private readonly embeddingTokens: ReadonlyMap<string, readonly string[]> = new Map(),
    private readonly runtime: RuntimeOptions = {},
    /** Where the sessions of unchanged files come from and go back to; without one, this model owns them all. */
    private readonly pool?: SessionPool,
    /** SDXL's second text encoder (CLIPTextModelWithProjection) and its tokenizer. */
    readonly second?: { textEncoder: OnnxModel; tokenizer: ClipTokenizer },
  ) {}

  get textEncoder(): OnnxModel {
    return this.textEncoderSession;
  }

  /** Loads the folder's models; `adapters` (LoRAs, textual-inversion embeddings) are merged into the
   * text encoder and the UNet on the way, in memory. Submodels loaded from their files unchanged come
   * from `pool`, shared with the other models that use them. */
  static async load(info: ModelFolderInfo, runtime: RuntimeOptions = {}, adapters?: Adapters, pool?: SessionPool): Promise<StableDiffusionModel> {
    if (info.error) throw invalidModel(`model ${info.id}: ${info.error}`);
    const { paths } = info;
    const loaded: OnnxModel[] = [];
    // A merged submodel is cached as a variant of its file, keyed by the adapters merged into it.
    const variant = adapters && `adapters ${await adaptersKey(adapters)}`;
    const load = async (submodel: Submodel, path: string, buffer?: ModelBuffer) => {
      const options = { memPattern: MEM_PATTERN[submodel], ...submodelRuntime(runtime, submodel) };
      const model = buffer ? await OnnxModel.fromBuffer(path, buffer, options, variant) : pool ? await pool.acquire(path, options) : await OnnxModel.load(path, options);
      loaded.push(model);
      return model;
    };
    try {
      const tokenizer = await ClipTokenizer.fromFolder(paths.tokenizer);
      const tokenizer2 = paths.tokenizer2 ? await ClipTokenizer.fromFolder(paths.tokenizer2) : undefined;
      const adaptation = adapters && (await Adaptation.prepare(info, adapters));
      let hiddenStates: HiddenStatesState | undefined;
      const exposeInMemory = async (editor: ModelEditor) => {
        hiddenStates = await exposeHiddenStates(editor).then((states) => ({ states }), (error: unknown) => ({ error }));
      };
      // A refiner's only text encoder is text_encoder_2: it takes the LoRAs' lora_te2_ modules and the embeddings' clip_g.
      const textEncoder = info.sdxl?.textEncoder2Only ? adaptation?.textEncoder2(paths.textEncoder, tokenizer, { only: true }) : adaptation?.textEncoder(paths.textEncoder, tokenizer, exposeInMemory);
      const model = new StableDiffusionModel(
        info,
        tokenizer,
        await load('text_encoder', paths.textEncoder, await textEncoder),
        await load('unet', paths.unet, await adaptation?.unet(paths.unet)),
        await load('vae_decoder', paths.vaeDecoder),
        paths.vaeEncoder ? await load('vae_encoder', paths.vaeEncoder) : undefined,
        adaptation?.warnings,
        adaptation?.expansions,
        runtime,
        pool,
        // SDXL's second text encoder is placed where the first is.
        paths.textEncoder2 && tokenizer2 ? { textEncoder: await load('text_encoder', paths.textEncoder2, await adaptation?.textEncoder2(paths.textEncoder2, tokenizer2)), tokenizer: tokenizer2 } : undefined,
      );
      if (hiddenStates) model.hiddenStates = Promise.resolve(hiddenStates);
      model.check();
      return model;
    } catch (error) {
      await Promise.all(loaded.map((m) => (pool ? pool.release(m) : m.release())));
      throw error;
    }
  }

  /** A prompt with the trigger word of each multi-vector embedding written as all its tokens (diffusers'
   * maybe_convert_prompt): text goes through this before the tokenizer. */
  expandEmbeddingTokens(text: string): string {
    return expandEmbeddingTokens(text, this.embeddingTokens);
  }

  /**
   * The prompt embeddings of one chunk of token ids, [tokens × hidden]: the text encoder's last hidden
   * state, or for clip skip N its hidden state N layers from the end through the final LayerNorm
   * (see clip-skip.ts). BAD_USER_INPUT when the encoder has fewer layers than N − 1.
   */
  async encodeTokens(ids: Int32Array, clipSkip: number): Promise<{ data: Float32Array; dims: readonly number[] }> {
    const feeds = { input_ids: { data: ids, dims: [1, ids.length] } };
    if (clipSkip === 1) return (await this.textEncoder.run(feeds, [this.textEncoderOutput]))[this.textEncoderOutput];
    const state = await (this.hiddenStates ??= this.exposeHiddenStates());
    if ('error' in state) throw state.error;
    const { outputs, finalLayerNorm } = state.states;
    const index = outputs.length - clipSkip;
    if (index < 0) throw badInput(clipSkipBeyondMessage(this.info.id, clipSkip, outputs.length - 1));
    const hidden = (await this.textEncoder.run(feeds, [outputs[index]]))[outputs[index]];
    return { data: layerNorm(hidden.data, finalLayerNorm), dims: hidden.dims };
  }

  /**
   * SDXL's prompt embeddings of one chunk from text encoder `encoder` (0 or 1): hidden_states[-2] (the
   * penultimate layer's output, before the final LayerNorm), and for text_encoder_2 (the second, or a
   * refiner's only one) its projected pooled output (`text_embeds`), as diffusers'
   * StableDiffusionXLPipeline.encode_prompt takes them.
   */
  async encodeTokensXL(encoder: 0 | 1, ids: Int32Array): Promise<{ hidden: OutputTensor; pooled?: Float32Array }> {
    const session = encoder === 0 ? this.textEncoder : this.second?.textEncoder;
    if (!session) throw invalidModel(`model ${this.info.id} has no second text encoder`);
    const name = penultimateOutput(session, this.info.id);
    const pooled = encoder === 1 || this.info.sdxl?.textEncoder2Only;
    const out = await session.run({ input_ids: { data: ids, dims: [1, ids.length] } }, pooled ? [name, 'text_embeds'] : [name]);
    return { hidden: out[name], pooled: out.text_embeds?.data };
  }

  /** Reloads the text encoder from its file with its hidden states as outputs (when it lacks them). */
  private async exposeHiddenStates(): Promise<HiddenStatesState> {
    try {
      const path = this.info.paths.textEncoder;
      const editor = await ModelEditor.open(path);
      const states = await exposeHiddenStates(editor);
      if (!states.outputs.every((name) => this.textEncoder.outputNames.includes(name))) {
        const session = await OnnxModel.fromBuffer(path, await editor.toBuffer(), submodelRuntime(this.runtime, 'text_encoder'), 'hidden states');
        const previous = this.textEncoderSession;
        this.textEncoderSession = session;
        // Nothing else runs it now: the engine thread runs one request at a time.
        await this.releaseSession(previous);
      }
      return { states };
    } catch (error) {
      return { error };
    }
  }

  /** Output name of the VAE encoder: Optimum ≥ 1.23 exports the distribution's parameters, older exports a sample. */
  get vaeEncoderOutput(): 'latent_parameters' | 'latent_sample' | undefined {
    if (!this.vaeEncoder) return undefined;
    return this.vaeEncoder.outputNames.includes('latent_parameters') ? 'latent_parameters' : 'latent_sample';
  }

  get textEncoderOutput(): string {
    const names = this.textEncoder.outputNames;
    return names.includes('last_hidden_state') ? 'last_hidden_state' : names[0];
  }

  /** Static shapes that must agree between the submodels; dynamic dimensions are checked when they run. */
  private check(): void {
    const id = this.info.id;
    if (this.info.sdxl) this.checkXL();
    for (const [model, inputs] of [
      [this.textEncoder, ['input_ids']],
      [this.unet, ['sample', 'timestep', 'encoder_hidden_states']],
      [this.vaeDecoder, ['latent_sample']],
    ] as const) {
      for (const name of inputs) if (!model.hasInput(name)) throw invalidModel(`model ${id}: ${model.path} has no input "${name}"`);
    }
    if (this.vaeEncoder && !this.vaeEncoder.hasInput('sample')) throw invalidModel(`model ${id}: the VAE encoder has no input "sample"`);
    if (this.vaeEncoder && !['latent_parameters', 'latent_sample'].some((n) => this.vaeEncoder!.outputNames.includes(n))) {
      throw invalidModel(`model ${id}: the VAE encoder outputs neither latent_parameters nor latent_sample`);
    }
    const channels = this.unet.inputShape('sample')[1];
    if (typeof channels === 'number' && channels !== 4 && channels !== 9) {
      throw invalidModel(`model ${id}: the UNet takes ${channels} latent channels; 4 (or 9 for inpainting) are supported`);
    }
    const unetContext = this.unet.inputShape('encoder_hidden_states')[2];
    const latentChannels = this.vaeDecoder.inputShape('latent_sample')[1];
    if (typeof latentChannels === 'number' && latentChannels !== 4) {
      throw invalidModel(`model ${id}: the VAE decoder takes ${latentChannels} latent channels, not 4`);
    }
    if (typeof unetContext === 'number' && this.info.crossAttentionDim && unetContext !== this.info.crossAttentionDim) {
      throw invalidModel(`model ${id}: the UNet's encoder_hidden_states width ${unetContext} differs from its config (${this.info.crossAttentionDim})`);
    }
    const textWidth = this.textEncoder.outputShape(this.textEncoderOutput)[2];
    if (!this.second && typeof unetContext === 'number' && typeof textWidth === 'number' && unetContext !== textWidth) {
      throw invalidModel(`model ${id}: the text encoder gives ${textWidth}-wide embeddings but the UNet expects ${unetContext}`);
    }
  }

  /** Each loaded submodel: the providers its session runs on, and whether it came from the optimised-model cache. */
  get submodels(): { name: Submodel; model: OnnxModel }[] {
    const all = [['text_encoder', this.textEncoder], ['unet', this.unet], ['vae_decoder', this.vaeDecoder], ['vae_encoder', this.vaeEncoder]] as const;
    return all.filter((entry): entry is readonly [Submodel, OnnxModel] => entry[1] !== undefined).map(([name, model]) => ({ name, model }));
  }

  /** What SDXL adds: text_encoder_2 with projected pooled output (beside the first, or alone in a
   * refiner), and a UNet that takes it and the time ids. */
  private checkXL(): void {
    const id = this.info.id;
    const encoders = this.info.sdxl?.textEncoder2Only ? [this.textEncoder] : [this.textEncoder, this.second?.textEncoder];
    const second = encoders.at(-1);
    if (!second) throw invalidModel(`model ${id}: SDXL needs text_encoder_2 and tokenizer_2`);
    if (!second.outputNames.includes('text_embeds')) throw invalidModel(`model ${id}: text_encoder_2 has no text_embeds output (CLIPTextModelWithProjection's pooled projection)`);
    for (const name of ['text_embeds', 'time_ids']) if (!this.unet.hasInput(name)) throw invalidModel(`model ${id}: the SDXL UNet has no input "${name}"`);
    const widths = encoders.map((encoder) => encoder!.outputShape(penultimateOutput(encoder!, id))[2]);
    const context = this.unet.inputShape('encoder_hidden_states')[2];
    if (typeof context === 'number' && widths.every((w) => typeof w === 'number') && context !== widths.reduce((a, b) => (a as number) + (b as number), 0)) {
      throw invalidModel(`model ${id}: the text ${widths.length > 1 ? 'encoders give' : 'encoder gives'} ${widths.join(' + ')}-wide embeddings but the UNet expects ${context}`);
    }
  }

  async release(): Promise<void> {
    await Promise.all([this.textEncoder, this.second?.textEncoder, this.unet, this.vaeDecoder, this.vaeEncoder].map((m) => m && this.releaseSession(m)));
  }

  private releaseSession(model: OnnxModel): Promise<void> {
    return this.pool ? this.pool.release(model) : model.release();
  }
}

/** The runtime options of one submodel: its providers from the placement, else the default list. */
function submodelRuntime(runtime: RuntimeOptions, submodel: Submodel): RuntimeOptions {
  return { ...runtime, executionProviders: providersFor(runtime.executionProviders, runtime.placement, submodel) };
}

/** The output holding hidden_states[-2] of a text encoder exported with its hidden states (Optimum's SDXL exports). */
function penultimateOutput(encoder: OnnxModel, modelId: string): string {
  const count = encoder.outputNames.filter((name) => /^hidden_states\.\d+$/.test(name)).length;
  if (count < 2) throw invalidModel(`model ${modelId}: ${encoder.path} does not output its hidden states (hidden_states.0, …), which SDXL's prompt embeddings come from`);
  return `hidden_states.${count - 2}`;
}
