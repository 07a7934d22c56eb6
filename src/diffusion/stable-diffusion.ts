// A Stable Diffusion pipeline loaded from a diffusers/Optimum ONNX folder: its four sessions and
// its tokenizer, checked to fit together before the first request runs.
import { expandEmbeddingTokens } from './embeddings.ts';
import { invalidModel } from './errors.ts';
import { Adaptation, type Adapters } from './lora/adapt.ts';
import type { ModelFolderInfo } from './model-folder.ts';
import { OnnxModel, type ModelBuffer, type RuntimeOptions } from './onnx-model.ts';
import { ClipTokenizer } from './tokenizer.ts';

export class StableDiffusionModel {
  private constructor(
    readonly info: ModelFolderInfo,
    readonly tokenizer: ClipTokenizer,
    readonly textEncoder: OnnxModel,
    readonly unet: OnnxModel,
    readonly vaeDecoder: OnnxModel,
    readonly vaeEncoder: OnnxModel | undefined,
    /** What the LoRAs and embeddings it was loaded with left out. */
    readonly warnings: readonly string[] = [],
    private readonly embeddingTokens: ReadonlyMap<string, readonly string[]> = new Map(),
  ) {}

  /** Loads the folder's models; `adapters` (LoRAs, textual-inversion embeddings) are merged into the
   * text encoder and the UNet on the way, in memory. */
  static async load(info: ModelFolderInfo, runtime: RuntimeOptions = {}, adapters?: Adapters): Promise<StableDiffusionModel> {
    if (info.error) throw invalidModel(`model ${info.id}: ${info.error}`);
    const { paths } = info;
    const loaded: OnnxModel[] = [];
    const load = async (path: string, buffer?: ModelBuffer) => {
      const model = buffer ? await OnnxModel.fromBuffer(path, buffer, runtime) : await OnnxModel.load(path, runtime);
      loaded.push(model);
      return model;
    };
    try {
      const tokenizer = await ClipTokenizer.fromFolder(paths.tokenizer);
      const adaptation = adapters && (await Adaptation.prepare(info, adapters));
      const model = new StableDiffusionModel(
        info,
        tokenizer,
        await load(paths.textEncoder, await adaptation?.textEncoder(paths.textEncoder, tokenizer)),
        await load(paths.unet, await adaptation?.unet(paths.unet)),
        await load(paths.vaeDecoder),
        paths.vaeEncoder ? await load(paths.vaeEncoder) : undefined,
        adaptation?.warnings,
        adaptation?.expansions,
      );
      model.check();
      return model;
    } catch (error) {
      await Promise.all(loaded.map((m) => m.release()));
      throw error;
    }
  }

  /** A prompt with the trigger word of each multi-vector embedding written as all its tokens (diffusers'
   * maybe_convert_prompt): text goes through this before the tokenizer. */
  expandEmbeddingTokens(text: string): string {
    return expandEmbeddingTokens(text, this.embeddingTokens);
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
    if (typeof unetContext === 'number' && typeof textWidth === 'number' && unetContext !== textWidth) {
      throw invalidModel(`model ${id}: the text encoder gives ${textWidth}-wide embeddings but the UNet expects ${unetContext}`);
    }
  }

  async release(): Promise<void> {
    await Promise.all([this.textEncoder, this.unet, this.vaeDecoder, this.vaeEncoder].map((m) => m?.release()));
  }
}
