// What the panel remembers between sessions (localStorage, which UXP keeps per plugin).

export interface Settings {
  url: string;
  token: string;
  modelId: string;
  prompt: string;
  negativePrompt: string;
  steps: number;
  guidanceScale: number;
  scheduler: string;
  seedMode: 'random' | 'fixed' | 'last';
  seed: number;
  numImages: number;
  strength: number;
  /** With a selection: repaint it (inpainting, the selection as the mask) or redraw it (img2img). */
  selectionMode: 'inpaint' | 'img2img';
  /** Pixels of the document around the selection that the model sees (`onlyMaskedPadding`). */
  context: number;
  /** Live previews while it runs (`previewEvery` 1, or 0). */
  previews: boolean;
}

export const DEFAULT_SETTINGS: Settings = {
  url: 'http://127.0.0.1:4000',
  token: '',
  modelId: '',
  prompt: '',
  negativePrompt: '',
  steps: 25,
  guidanceScale: 7.5,
  scheduler: 'DPMPP_2M_KARRAS',
  seedMode: 'random',
  seed: 0,
  numImages: 1,
  strength: 0.75,
  selectionMode: 'inpaint',
  context: 32,
  previews: true,
};

const KEY = 'sdql.settings';

export function loadSettings(storage: Storage = localStorage): Settings {
  try {
    const saved = JSON.parse(storage.getItem(KEY) ?? '{}') as Partial<Settings>;
    return { ...DEFAULT_SETTINGS, ...saved };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}

export function saveSettings(settings: Settings, storage: Storage = localStorage): void {
  storage.setItem(KEY, JSON.stringify(settings));
}
