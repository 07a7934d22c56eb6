// The panel: connection, model and prompt, parameters, Generate/Cancel with live previews, history.
import { SdqlApi } from '../api/client.ts';
import {
  PanelCancelDocument,
  PanelCapabilitiesDocument,
  PanelDeleteGenerationDocument,
  PanelHistoryDocument,
  PanelPromptTokensDocument,
  PanelServerDocument,
  type PanelGenerationFragment,
  type PanelServerQuery,
} from '../api/generated/graphql.ts';
import type { Host } from '../host/host.ts';
import { fill, h, setValue, valueOf } from './dom.ts';
import { loadSettings, saveSettings, type Settings } from './settings.ts';
import { describe, placeAgain, runGeneration, type ModelInfo } from './workflow.ts';

interface ServerState {
  models: PanelServerQuery['models'];
  loras: PanelServerQuery['loras'];
  embeddings: PanelServerQuery['embeddings'];
  schedulers: string[];
  canEdit: boolean;
  version: string;
}

/** Builds the panel into `root` over `host`; returns a function that closes its connection. */
export function startPanel(root: HTMLElement, host: Host, storage: Storage = localStorage): () => Promise<void> {
  const settings = loadSettings(storage);
  const save = () => saveSettings(settings, storage);
  let api: SdqlApi | null = null;
  let server: ServerState | null = null;
  let lastSeed: number | null = null;
  let running: { canceled: boolean; id?: string } | null = null;
  let retry: ReturnType<typeof setTimeout> | undefined;

  // Connection
  const url = h('sp-textfield', { class: 'grow', 'data-test': 'url', placeholder: 'http://127.0.0.1:4000' });
  const token = h('sp-textfield', { class: 'grow', 'data-test': 'token', type: 'password', placeholder: 'token (when the server asks for one)' });
  const status = h('div', { class: 'status', 'data-test': 'status' }, 'not connected');
  // Models, LoRAs, embeddings
  const model = h('select', { class: 'grow', 'data-test': 'model' });
  const modelError = h('div', { class: 'hint', 'data-test': 'model-error' });
  const lora = h('select', { class: 'grow', 'data-test': 'lora' });
  const loraWeight = h('sp-textfield', { type: 'number', value: '0.8', style: 'width:56px' });
  const embedding = h('select', { class: 'grow', 'data-test': 'embedding' });
  // Prompt
  const prompt = h('sp-textfield', { multiline: true, 'data-test': 'prompt', placeholder: 'what to paint' });
  const negative = h('sp-textfield', { multiline: true, 'data-test': 'negative', placeholder: 'negative prompt' });
  const tokens = h('div', { class: 'hint', 'data-test': 'tokens' });
  // Parameters
  const steps = h('sp-textfield', { type: 'number', 'data-test': 'steps', style: 'width:56px' });
  const cfg = h('sp-textfield', { type: 'number', 'data-test': 'cfg', style: 'width:56px' });
  const scheduler = h('select', { 'data-test': 'scheduler' });
  const seedMode = h('select', { 'data-test': 'seed-mode' }, h('option', { value: 'random' }, 'random seed'), h('option', { value: 'fixed' }, 'fixed seed'), h('option', { value: 'last' }, 'last seed'));
  const seed = h('sp-textfield', { type: 'number', 'data-test': 'seed', style: 'width:96px' });
  const batch = h('sp-textfield', { type: 'number', 'data-test': 'batch', style: 'width:48px' });
  const strength = h('sp-textfield', { type: 'number', 'data-test': 'strength', style: 'width:56px' });
  const selectionMode = h('select', { 'data-test': 'selection-mode' }, h('option', { value: 'inpaint' }, 'repaint the selection (inpaint)'), h('option', { value: 'img2img' }, 'redraw the selection (img2img)'));
  const modeHint = h('div', { class: 'hint', 'data-test': 'mode' });
  // Run
  const generate = h('sp-button', { variant: 'cta', 'data-test': 'generate' }, 'Generate');
  const cancel = h('sp-button', { variant: 'secondary', 'data-test': 'cancel', disabled: true }, 'Cancel');
  const bar = h('sp-progressbar', { max: 100, value: 0, class: 'grow' });
  const runStatus = h('div', { class: 'message', 'data-test': 'run-status' });
  const preview = h('img', { class: 'preview', 'data-test': 'preview', alt: '' });
  // History
  const search = h('sp-textfield', { class: 'grow', 'data-test': 'history-search', placeholder: 'search the history' });
  const history = h('div', { class: 'history', 'data-test': 'history' });

  setValue(url, settings.url);
  setValue(token, settings.token);
  setValue(prompt, settings.prompt);
  setValue(negative, settings.negativePrompt);
  setValue(steps, settings.steps);
  setValue(cfg, settings.guidanceScale);
  setValue(seed, settings.seed);
  setValue(batch, settings.numImages);
  setValue(strength, settings.strength);
  seedMode.value = settings.seedMode;
  selectionMode.value = settings.selectionMode;

  const setStatus = (text: string, kind: 'ok' | 'error' | '' = '') => {
    status.textContent = text;
    status.className = `status ${kind}`;
  };
  const setRun = (text: string, error = false) => {
    runStatus.textContent = text;
    runStatus.className = `message${error ? ' error' : ''}`;
  };

  /** Reads the fields into the settings and saves them. */
  const readFields = () => {
    settings.url = valueOf(url).trim() || 'http://127.0.0.1:4000';
    settings.token = valueOf(token).trim();
    settings.modelId = model.value;
    settings.prompt = valueOf(prompt);
    settings.negativePrompt = valueOf(negative);
    settings.steps = Number(valueOf(steps)) || 25;
    settings.guidanceScale = Number(valueOf(cfg)) || 7.5;
    settings.scheduler = scheduler.value || settings.scheduler;
    settings.seedMode = seedMode.value as Settings['seedMode'];
    settings.seed = Math.max(0, Math.floor(Number(valueOf(seed)) || 0));
    settings.numImages = Math.min(16, Math.max(1, Math.floor(Number(valueOf(batch)) || 1)));
    settings.strength = Number(valueOf(strength)) || 0.75;
    settings.selectionMode = selectionMode.value as Settings['selectionMode'];
    save();
  };

  const selectedModel = (): ModelInfo | null => server?.models.find((m) => m.id === model.value && m.supported) ?? null;

  async function connect() {
    clearTimeout(retry);
    readFields();
    await api?.dispose();
    const connection = { url: settings.url, token: settings.token || undefined };
    const current = new SdqlApi(connection, {
      onSocket: (state, reason) => {
        if (api !== current) return;
        if (state === 'closed' && server) {
          server = null;
          setStatus(`lost ${settings.url}${reason ? ` (${reason})` : ''}: reconnecting…`, 'error');
          schedule();
        } else if (state === 'connected' && !server) void load(current);
      },
    });
    api = current;
    setStatus(`connecting to ${settings.url}…`);
    await load(current);
  }

  function schedule() {
    clearTimeout(retry);
    retry = setTimeout(() => api && void load(api), 2000);
  }

  async function load(current: SdqlApi) {
    try {
      const [info, capabilities] = await Promise.all([current.request(PanelServerDocument, {}), current.request(PanelCapabilitiesDocument, {})]);
      if (api !== current) return;
      const fields = new Set(capabilities.generateInput?.inputFields?.map((f) => f.name));
      server = {
        models: info.models,
        loras: info.loras,
        embeddings: info.embeddings,
        schedulers: capabilities.schedulers?.enumValues?.map((v) => v.name) ?? [],
        canEdit: fields.has('mask') && fields.has('outpaint'),
        version: info.system.version,
      };
      setStatus(`connected to ${settings.url} · sdql ${server.version}`, 'ok');
      renderServer();
      void refreshHistory();
      void updateMode();
    } catch (error) {
      if (api !== current) return;
      server = null;
      setStatus(describe(error), 'error');
      // Retry until the server answers; a refused token waits for the user.
      if (!/token/.test(describe(error))) schedule();
    }
  }

  function renderServer() {
    if (!server) return;
    const supported = server.models.filter((m) => m.supported);
    fill(
      model,
      ...server.models.map((m) => h('option', { value: m.id, disabled: !m.supported, title: m.error ?? '', class: m.supported ? '' : 'unsupported' }, m.supported ? m.name : `${m.name} — ${m.error ?? 'unsupported'}`)),
    );
    model.value = supported.some((m) => m.id === settings.modelId) ? settings.modelId : (supported[0]?.id ?? '');
    modelError.textContent = supported.length ? '' : `no usable model on the server: put one in its models folder (${server.models.length} found, none supported)`;
    fill(lora, h('option', { value: '' }, server.loras.length ? 'add a LoRA…' : 'no LoRAs'), ...server.loras.map((l) => h('option', { value: l.tagName, disabled: !!l.error, title: l.error ?? l.triggerWords.join(', ') }, l.name)));
    fill(embedding, h('option', { value: '' }, server.embeddings.length ? 'add an embedding…' : 'no embeddings'), ...server.embeddings.map((e) => h('option', { value: e.name, disabled: !!e.error }, e.name)));
    fill(scheduler, ...server.schedulers.map((s) => h('option', { value: s }, s)));
    scheduler.value = server.schedulers.includes(settings.scheduler) ? settings.scheduler : (server.schedulers[0] ?? '');
    void countTokens();
  }

  let tokenTimer: ReturnType<typeof setTimeout> | undefined;
  async function countTokens() {
    const current = api;
    const m = selectedModel();
    if (!current || !m || !valueOf(prompt)) {
      tokens.textContent = '';
      return;
    }
    try {
      const { promptTokens } = await current.request(PanelPromptTokensDocument, { modelId: m.id, prompt: valueOf(prompt), steps: settings.steps });
      tokens.textContent = `${promptTokens.tokenCount}/${promptTokens.chunkCount * promptTokens.maxLength} tokens (${promptTokens.chunkCount} chunk${promptTokens.chunkCount === 1 ? '' : 's'} of ${promptTokens.maxLength})`;
    } catch (error) {
      tokens.textContent = describe(error);
    }
  }

  /** Says which mode Generate will use, from the document and its selection. */
  async function updateMode() {
    try {
      const document = await host.activeDocument();
      if (!document) return void (modeHint.textContent = 'no document open');
      const selection = await host.selection(document.id);
      const b = selection?.bounds;
      const past = b && (b.left < 0 || b.top < 0 || b.left + b.width > document.width || b.top + b.height > document.height);
      modeHint.textContent = !b
        ? `txt2img: the whole document (${document.width}×${document.height} px)`
        : past
          ? `outpaint: the selection reaches past the canvas (${b.width}×${b.height} px)`
          : `${selectionMode.value}: the selection (${b.width}×${b.height} px at ${b.left}, ${b.top})`;
    } catch (error) {
      modeHint.textContent = describe(error);
    }
  }

  async function onGenerate() {
    readFields();
    const m = selectedModel();
    if (!api || !server) return setRun('not connected: check the server URL above', true);
    if (!m) return setRun('pick a supported model', true);
    if (!settings.prompt.trim()) return setRun('type a prompt', true);
    const signal = { canceled: false } as { canceled: boolean; id?: string };
    running = signal;
    generate.setAttribute('disabled', '');
    cancel.removeAttribute('disabled');
    bar.setAttribute('value', '0');
    setRun('reading the document…');
    try {
      const { generation } = await runGeneration(
        { api, host, settings, model: m, canEdit: server.canEdit, lastSeed },
        {
          submitted: (g, mode) => setRun(`${mode}: submitted ${g.width}×${g.height}${g.queuePosition ? `, queue position ${g.queuePosition}` : ''}`),
          progress: (event, position) => {
            if (event.preview?.dataUrl) preview.src = event.preview.dataUrl;
            if (event.status === 'QUEUED') setRun(`waiting${position ? `, queue position ${position}` : ''}`);
            else if (event.status === 'RUNNING') {
              const total = event.totalSteps || 1;
              bar.setAttribute('value', String(Math.round((100 * event.step) / total)));
              setRun(`step ${event.step}/${total}${event.etaMs !== null ? ` · ${Math.ceil(event.etaMs / 1000)} s left` : ''}`);
            }
          },
        },
        signal,
      );
      lastSeed = generation.seed;
      bar.setAttribute('value', '100');
      setRun(`placed ${generation.images.length} layer${generation.images.length === 1 ? '' : 's'}: ${generation.prompt.slice(0, 40)} · ${generation.seed}`);
    } catch (error) {
      setRun(describe(error), true);
    } finally {
      running = null;
      generate.removeAttribute('disabled');
      cancel.setAttribute('disabled', '');
      void refreshHistory();
    }
  }

  async function onCancel() {
    if (!running || !api) return;
    running.canceled = true;
    setRun('canceling…');
    if (running.id) await api.request(PanelCancelDocument, { id: running.id }).catch((error) => setRun(describe(error), true));
  }

  async function refreshHistory() {
    const current = api;
    if (!current || !server) return;
    try {
      const { generations } = await current.request(PanelHistoryDocument, { text: valueOf(search) || null, first: 20 });
      fill(history, ...generations.edges.map((e) => historyItem(current, e.node)));
    } catch (error) {
      fill(history, h('div', { class: 'message error' }, describe(error)));
    }
  }

  function historyItem(current: SdqlApi, g: PanelGenerationFragment): HTMLElement {
    const image = g.images[0];
    return h(
      'div',
      { class: 'history-item', 'data-test': 'history-item' },
      image ? h('img', { src: new URL(image.url, `${current.origin}/`).toString(), alt: '' }) : h('div', { style: 'width:48px' }),
      h('div', { class: 'text' }, h('div', {}, g.prompt), h('div', { class: 'hint' }, `${g.status.toLowerCase()} · seed ${g.seed} · ${g.width}×${g.height}${g.error ? ` · ${g.error}` : ''}`)),
      image
        ? h('sp-button', { variant: 'secondary', 'data-test': 'place-again', on: { click: () => placeAgain(current, host, image, g.prompt).then(() => setRun('placed again'), (e) => setRun(describe(e), true)) } }, 'Place')
        : null,
      h('sp-button', { variant: 'secondary', on: { click: () => reuse(g) } }, 'Reuse'),
      h('sp-button', { variant: 'secondary', 'data-test': 'delete', on: { click: () => current.request(PanelDeleteGenerationDocument, { id: g.id }).then(refreshHistory, (e) => setRun(describe(e), true)) } }, 'Delete'),
    );
  }

  function reuse(g: PanelGenerationFragment) {
    setValue(prompt, g.prompt);
    setValue(negative, g.negativePrompt);
    setValue(steps, g.steps);
    setValue(cfg, g.guidanceScale);
    setValue(seed, g.seed);
    setValue(batch, g.numImages);
    if (g.strength !== null) setValue(strength, g.strength);
    seedMode.value = 'fixed';
    if (server?.models.some((m) => m.id === g.modelId)) model.value = g.modelId;
    scheduler.value = g.scheduler;
    readFields();
    void countTokens();
  }

  const insert = (text: string) => {
    const current = valueOf(prompt);
    setValue(prompt, current ? `${current.replace(/\s+$/, '')}, ${text}` : text);
    readFields();
    void countTokens();
  };

  generate.addEventListener('click', () => void onGenerate());
  cancel.addEventListener('click', () => void onCancel());
  url.addEventListener('change', () => void connect());
  token.addEventListener('change', () => void connect());
  prompt.addEventListener('input', () => {
    clearTimeout(tokenTimer);
    tokenTimer = setTimeout(() => {
      readFields();
      void countTokens();
    }, 300);
  });
  for (const field of [negative, steps, cfg, seed, batch, strength]) field.addEventListener('change', readFields);
  for (const field of [scheduler, seedMode]) field.addEventListener('change', readFields);
  model.addEventListener('change', () => {
    readFields();
    void countTokens();
  });
  selectionMode.addEventListener('change', () => {
    readFields();
    void updateMode();
  });
  lora.addEventListener('change', () => {
    const chosen = server?.loras.find((l) => l.tagName === lora.value);
    if (chosen) insert([`<lora:${chosen.tagName}:${Number(valueOf(loraWeight)) || 1}>`, ...chosen.triggerWords.slice(0, 3)].join(', '));
    lora.value = '';
  });
  embedding.addEventListener('change', () => {
    if (embedding.value) insert(embedding.value);
    embedding.value = '';
  });
  search.addEventListener('change', () => void refreshHistory());
  // The document, its selection and the mode change outside the panel: look again when the pointer comes back.
  root.addEventListener('mouseenter', () => void updateMode());

  const row = (...children: (Node | string)[]) => h('div', { class: 'row' }, ...children);
  fill(
    root,
    h('div', { class: 'section' }, row(url, h('sp-button', { variant: 'secondary', 'data-test': 'connect', on: { click: () => void connect() } }, 'Connect')), row(token), status),
    h('div', { class: 'section' }, row('Model', model), modelError, row(lora, loraWeight), row(embedding)),
    h('div', { class: 'section' }, prompt, tokens, negative),
    h('div', { class: 'section' }, row('Steps', steps, 'CFG', cfg, 'Batch', batch), row(scheduler), row(seedMode, seed), row('Strength', strength), row(selectionMode), modeHint),
    h('div', { class: 'section' }, row(generate, cancel, bar), runStatus, preview),
    h('div', { class: 'section' }, row(search, h('sp-button', { variant: 'secondary', on: { click: () => void refreshHistory() } }, 'Refresh')), history),
  );
  void connect();
  void updateMode();
  return async () => {
    clearTimeout(retry);
    await api?.dispose();
    api = null;
  };
}
