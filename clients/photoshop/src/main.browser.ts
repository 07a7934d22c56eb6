// The browser entrypoint (end-to-end tests): the same panel over host/browser.ts, a canvas beside it
// as the document (?width=&height= set its size), and the sp-* widgets as stand-ins.
import { BrowserHost } from './host/browser.ts';
import { defineStandIns } from './ui/standins.ts';
import { startPanel } from './ui/panel.ts';

defineStandIns();
const params = new URLSearchParams(location.search);
const canvas = document.createElement('canvas');
canvas.id = 'document';
canvas.width = Number(params.get('width') ?? 320);
canvas.height = Number(params.get('height') ?? 240);
canvas.style.cssText = 'border:1px solid #888;margin:8px;align-self:flex-start';
const context = canvas.getContext('2d')!;
// A picture to start from: a sky gradient over a field.
const sky = context.createLinearGradient(0, 0, 0, canvas.height);
sky.addColorStop(0, '#4a7bd0');
sky.addColorStop(0.6, '#cfe3ff');
sky.addColorStop(0.6, '#5c8a3a');
sky.addColorStop(1, '#2f4f1f');
context.fillStyle = sky;
context.fillRect(0, 0, canvas.width, canvas.height);
document.body.style.display = 'flex';
document.body.prepend(canvas);

const host = new BrowserHost(canvas, 'test document');
(window as unknown as { sdql: unknown }).sdql = { host, stop: startPanel(document.getElementById('app')!, host) };
