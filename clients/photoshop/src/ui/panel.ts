// The panel: connection, model and prompt, parameters, Generate/Cancel with live previews, history.
import { ApiError, SdqlApi } from '../api/client.ts';
import {
  PanelCancelDocument,
  PanelCapabilitiesDocument,
  PanelDeleteGenerationDocument,
  PanelHistoryDocument,
  PanelLimitsDocument,
  PanelModelLimitsDocument,
  PanelPromptTokensDocument,
  PanelServerDocument,
  type PanelGenerationFragment,
  type PanelServerQuery,
} from '../api/generated/graphql.ts';
import type { Host } from '../host/host.ts';
import { FALLBACK_LIMITS, type Limits } from '../image/geometry.ts';
import { fill, h, pick, picked, picker, setItems, setValue, valueOf } from './dom.ts';
import { loadSettings, saveSettings, type Settings } from './settings.ts';
import { describe, placeAgain, runGeneration, type Editing, type ModelInfo } from './workflow.ts';

interface ServerState {
  models: (PanelServerQuery['models'][number] & { maxPixels?: number | null })[];
  loras: PanelServerQuery['loras'];
  embeddings: PanelServerQuery['embeddings'];
  schedulers: string[];
  editing: Editing;
  limits: Limits;
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
  const model = picker({ class: 'grow', 'data-test': 'model', placeholder: 'no models' });
  const modelError = h('div', { class: 'hint', 'data-test': 'model-error' });
  const lora = picker({ class: 'grow', 'data-test': 'lora', placeholder: 'LoRA' });
  const loraWeight = h('sp-slider', { min: 0, max: 200, value: 80, 'value-label': '%', 'data-test': 'lora-weight' }, h('sp-label', { slot: 'label' }, 'Weight'));
  const embedding = picker({ class: 'grow', 'data-test': 'embedding', placeholder: 'embedding' });
  // Prompt
  const prompt = h('sp-textarea', { 'data-test': 'prompt', placeholder: 'what to paint' });
  const negative = h('sp-textarea', { 'data-test': 'negative', placeholder: 'negative prompt' });
  const tokens = h('div', { class: 'hint', 'data-test': 'tokens' });
  // Parameters (the sliders' ranges follow the server's limits once connected)
  const steps = h('sp-slider', { class: 'grow', min: 1, max: 150, 'data-test': 'steps' }, h('sp-label', { slot: 'label' }, 'Steps'));
  const batch = h('sp-slider', { class: 'grow', min: 1, max: 16, 'data-test': 'batch' }, h('sp-label', { slot: 'label' }, 'Batch'));
  const strength = h('sp-slider', { class: 'grow', min: 1, max: 100, 'value-label': '%', 'data-test': 'strength' }, h('sp-label', { slot: 'label' }, 'Strength (img2img)'));
  // UXP's slider has no documented step: CFG (in halves) is a number field.
  const cfg = h('sp-textfield', { type: 'number', 'data-test': 'cfg', style: 'width:56px' });
  const scheduler = picker({ class: 'grow', 'data-test': 'scheduler', placeholder: 'scheduler' });
  const seedMode = picker({ 'data-test': 'seed-mode' }, [
    { value: 'random', label: 'random seed' },
    { value: 'fixed', label: 'fixed seed' },
    { value: 'last', label: 'last seed' },
  ]);
  const seed = h('sp-textfield', { type: 'number', 'data-test': 'seed', style: 'width:96px' });
  const selectionMode = picker({ class: 'grow', 'data-test': 'selection-mode' }, [
    { value: 'inpaint', label: 'repaint the selection (inpaint)' },
    { value: 'img2img', label: 'redraw the selection (img2img)' },
  ]);
  const previews = h('sp-checkbox', { 'data-test': 'previews' }, 'live previews');
  const modeHint = h('div', { class: 'hint', 'data-test': 'mode' });
  // Run
  const generate = h('sp-button', { variant: 'cta', 'data-test': 'generate' }, 'Generate');
  const cancel = h('sp-button', { variant: 'secondary', 'data-test': 'cancel', disabled: true }, 'Cancel');
  const bar = h('sp-progressbar', { max: 100, value: 0, class: 'grow' });
  const runStatus = h('div', { class: 'message', 'data-test': 'run-status' });
  const preview = h('img', { class: 'preview', 'data-test': 'preview', alt: '' });
  // History
  const search = h('sp-textfield', { class: 'grow', type: 'search', 'data-test': 'history-search', placeholder: 'search the history' });
  const history = h('div', { class: 'history', 'data-test': 'history' });

  setValue(url, settings.url);
  setValue(token, settings.token);
  setValue(prompt, settings.prompt);
  setValue(negative, settings.negativePrompt);
  setValue(steps, settings.steps);
  setValue(cfg, settings.guidanceScale);
  setValue(seed, settings.seed);
  setValue(batch, settings.numImages);
  setValue(strength, Math.round(settings.strength * 100));
  (previews as HTMLInputElement).checked = settings.previews;
  pick(seedMode, settings.seedMode);
  pick(selectionMode, settings.selectionMode);
  // UXP cannot read a password field's value on macOS (a documented bug): it is a text field while focused.
  token.addEventListener('focus', () => token.setAttribute('type', 'text'));
  token.addEventListener('blur', () => token.setAttribute('type', 'password'));

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
    settings.modelId = picked(model) || settings.modelId;
    settings.prompt = valueOf(prompt);
    settings.negativePrompt = valueOf(negative);
    settings.steps = Number(valueOf(steps)) || 25;
    settings.guidanceScale = Number(valueOf(cfg)) || 7.5;
    settings.scheduler = picked(scheduler) || settings.scheduler;
    settings.seedMode = (picked(seedMode) || settings.seedMode) as Settings['seedMode'];
    settings.seed = Math.max(0, Math.floor(Number(valueOf(seed)) || 0));
    settings.numImages = Math.max(1, Math.floor(Number(valueOf(batch)) || 1));
    settings.strength = Number(valueOf(strength)) / 100 || 0.75;
    settings.selectionMode = (picked(selectionMode) || settings.selectionMode) as Settings['selectionMode'];
    settings.previews = (previews as HTMLInputElement).checked;
    save();
  };

  const selectedModel = (): ModelInfo | null => server?.models.find((m) => m.id === picked(model) && m.supported) ?? null;

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
      const fields = new Set(capabilities.generateInput?.inputFields?.map((f) => f.name));
      // A server that does not state its limits gets the ones sdql had before it did.
      const stated = capabilities.system?.fields?.some((f) => f.name === 'limits') ? (await current.request(PanelLimitsDocument, {})).system.limits : null;
      // A server without Model.maxPixels has one limit for every model: `limits.maxPixels`.
      const modelPixels = capabilities.model?.fields?.some((f) => f.name === 'maxPixels') ? new Map((await current.request(PanelModelLimitsDocument, {})).models.map((m) => [m.id, m.maxPixels])) : undefined;
      if (api !== current) return;
      server = {
        models: info.models.map((m) => ({ ...m, maxPixels: modelPixels?.get(m.id) })),
        loras: info.loras,
        embeddings: info.embeddings,
        schedulers: capabilities.schedulers?.enumValues?.map((v) => v.name) ?? [],
        editing: { onlyMasked: ['mask', 'inpaintArea', 'onlyMaskedPadding'].every((f) => fields.has(f)), outpaint: fields.has('outpaint') },
        limits: stated ? { ...FALLBACK_LIMITS, ...stated } : FALLBACK_LIMITS,
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
      if (!(error instanceof ApiError && error.kind === 'unauthorized')) schedule();
    }
  }

  function renderServer() {
    if (!server) return;
    const supported = server.models.filter((m) => m.supported);
    setItems(model, server.models.map((m) => ({ value: m.id, disabled: !m.supported, title: m.error ?? '', label: m.supported ? m.name : `${m.name} — ${m.error ?? 'unsupported'}` })));
    pick(model, supported.some((m) => m.id === settings.modelId) ? settings.modelId : (supported[0]?.id ?? ''));
    modelError.textContent = supported.length ? '' : `no usable model on the server: put one in its models folder (${server.models.length} found, none supported)`;
    setItems(lora, server.loras.map((l) => ({ value: l.tagName, disabled: !!l.error, title: l.error ?? l.triggerWords.join(', '), label: l.name })));
    setItems(embedding, server.embeddings.map((e) => ({ value: e.name, disabled: !!e.error, title: e.error ?? '', label: e.name })));
    setItems(scheduler, server.schedulers.map((s) => ({ value: s, label: s })));
    pick(scheduler, server.schedulers.includes(settings.scheduler) ? settings.scheduler : (server.schedulers[0] ?? ''));
    steps.setAttribute('max', String(server.limits.maxSteps));
    batch.setAttribute('max', String(server.limits.maxImages));
    setValue(steps, Math.min(settings.steps, server.limits.maxSteps));
    setValue(batch, Math.min(settings.numImages, server.limits.maxImages));
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
          : `${picked(selectionMode)}: the selection (${b.width}×${b.height} px at ${b.left}, ${b.top})`;
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
        { api, host, settings, model: m, editing: server.editing, limits: server.limits, lastSeed },
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
    if (g.strength !== null) setValue(strength, Math.round(g.strength * 100));
    pick(seedMode, 'fixed');
    if (server?.models.some((m) => m.id === g.modelId)) pick(model, g.modelId);
    pick(scheduler, g.scheduler);
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
  for (const field of [negative, steps, cfg, seed, batch, strength, previews, scheduler, seedMode]) field.addEventListener('change', readFields);
  model.addEventListener('change', () => {
    readFields();
    void countTokens();
  });
  selectionMode.addEventListener('change', () => {
    readFields();
    void updateMode();
  });
  const addLora = () => {
    const chosen = server?.loras.find((l) => l.tagName === picked(lora));
    if (chosen) insert([`<lora:${chosen.tagName}:${Number(valueOf(loraWeight)) / 100}>`, ...chosen.triggerWords.slice(0, 3)].join(', '));
  };
  const addEmbedding = () => {
    if (picked(embedding)) insert(picked(embedding));
  };
  search.addEventListener('change', () => void refreshHistory());
  // The document, its selection and the mode change outside the panel: look again when the pointer comes back.
  root.addEventListener('mouseenter', () => void updateMode());

  const row = (...children: (Node | string)[]) => h('div', { class: 'row' }, ...children);
  fill(
    root,
    h('div', { class: 'section' }, row(url, h('sp-button', { variant: 'secondary', 'data-test': 'connect', on: { click: () => void connect() } }, 'Connect')), row(token), status),
    h('div', { class: 'section' }, row(h('span', {}, 'Model'), model), modelError, row(lora, loraWeight, h('sp-button', { variant: 'secondary', 'data-test': 'add-lora', on: { click: addLora } }, 'Add')), row(embedding, h('sp-button', { variant: 'secondary', on: { click: addEmbedding } }, 'Add'))),
    h('div', { class: 'section' }, prompt, tokens, negative),
    h('div', { class: 'section' }, row(steps, batch), row(scheduler, h('span', {}, 'CFG'), cfg), row(seedMode, seed), row(strength), row(selectionMode), row(previews), modeHint),
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
