// The manifest against UXP's documented manifest v5 (developer.adobe.com/photoshop/uxp, "UXP Manifest v5"):
// required keys, the host, panel entrypoints with their icons, and network permissions with schemes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { unzipSync } from 'fflate';

const root = fileURLToPath(new URL('..', import.meta.url));
const THEMES = ['all', 'lightest', 'light', 'medium', 'dark', 'darkest'];
const TOP_LEVEL = ['manifestVersion', 'id', 'name', 'version', 'main', 'host', 'entrypoints', 'icons', 'requiredPermissions'];

interface Icon {
  width: number;
  height: number;
  path: string;
  scale: number[];
  theme: string[];
  species?: string[];
}

test('npm run build writes dist/ and a .ccx whose manifest follows manifest v5', () => {
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts'], { cwd: root, stdio: 'pipe' });
  const dist = join(root, 'dist');
  const manifest = JSON.parse(readFileSync(join(dist, 'manifest.json'), 'utf8'));

  for (const key of Object.keys(manifest)) assert.ok(TOP_LEVEL.includes(key), `unknown manifest key ${key}`);
  assert.equal(manifest.manifestVersion, 5);
  assert.match(manifest.id, /^[\w.-]+$/);
  assert.equal(typeof manifest.name, 'string');
  assert.match(manifest.version, /^\d+\.\d+\.\d+$/, 'version is x.y.z');
  assert.equal(manifest.version, JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version);
  // imaging is complete from 24.4 and the Selection DOM arrives in 25.0.
  assert.deepEqual(manifest.host, { app: 'PS', minVersion: '25.0.0' });
  assert.ok(existsSync(join(dist, manifest.main)), 'main is in dist');

  const html = readFileSync(join(dist, manifest.main), 'utf8');
  for (const [, src] of html.matchAll(/(?:src|href)="([^"]+)"/g)) assert.ok(existsSync(join(dist, src)), `${manifest.main} loads ${src}, which dist has`);
  // One bundle, an IIFE, that loads photoshop and uxp from the host rather than bundling them.
  const bundle = readFileSync(join(dist, 'panel.js'), 'utf8');
  assert.match(bundle, /require\("photoshop"\)/);
  assert.doesNotMatch(bundle, /^\s*(import|export)\s/m);

  const icons: Icon[] = [...manifest.icons, ...manifest.entrypoints.flatMap((e: { icons?: Icon[] }) => e.icons ?? [])];
  for (const icon of icons) {
    assert.ok(icon.width > 0 && icon.height > 0);
    for (const theme of icon.theme) assert.ok(THEMES.includes(theme), `icon theme ${theme}`);
    for (const scale of icon.scale) {
      // UXP finds the @2x file beside the 1x one.
      const path = scale === 1 ? icon.path : icon.path.replace(/\.png$/, `@${scale}x.png`);
      assert.ok(existsSync(join(dist, path)), `icon ${path}`);
    }
  }
  assert.ok(manifest.entrypoints.length > 0);
  for (const entry of manifest.entrypoints) {
    assert.ok(['panel', 'command'].includes(entry.type));
    assert.equal(typeof entry.id, 'string');
    assert.equal(typeof entry.label.default, 'string');
    if (entry.type === 'panel') assert.ok(entry.minimumSize.width <= entry.preferredDockedSize.width);
  }

  // Each origin with its scheme and port, http:// and ws:// separately (the default server).
  const domains: string[] = manifest.requiredPermissions.network.domains;
  assert.ok(Array.isArray(domains));
  for (const domain of domains) assert.match(domain, /^(https?|wss?):\/\/[^/]+$/, `network domain ${domain}`);
  assert.ok(domains.includes('http://127.0.0.1:4000') && domains.includes('ws://127.0.0.1:4000'));

  // The .ccx is dist zipped, manifest at its root.
  const ccx = unzipSync(readFileSync(join(root, 'sdql-photoshop.ccx')));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(ccx['manifest.json'])), manifest);
  assert.ok(ccx['panel.js'] && ccx['index.html'] && ccx['icons/dark@2x.png']);
});
