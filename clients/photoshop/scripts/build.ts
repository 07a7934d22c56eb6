// `npm run build`: bundles the panel into dist/ (manifest.json, index.html, panel.js, panel.css,
// icons/) and zips dist/ into sdql-photoshop.ccx, which Photoshop's Creative Cloud installer takes.
// `--browser` bundles the same UI over host/browser.ts into dist-browser/ for the end-to-end tests.
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { zipSync } from 'fflate';
import { encodePng } from '../src/image/png.ts';
import { validateOperations } from './operations.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const browser = process.argv.includes('--browser');
const out = join(root, browser ? 'dist-browser' : 'dist');

// A document that no longer validates against the server's schema fails the build.
validateOperations();

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'icons'), { recursive: true });
await build({
  entryPoints: [join(root, 'src', browser ? 'main.browser.ts' : 'main.ts')],
  outfile: join(out, 'panel.js'),
  bundle: true,
  format: 'iife',
  // UXP's JavaScript engine is V8 of Photoshop 25's UXP 7.
  target: 'es2020',
  // Provided by UXP at runtime, through its global require.
  external: ['photoshop', 'uxp'],
  logLevel: 'warning',
});
copyFileSync(join(root, 'static', 'index.html'), join(out, 'index.html'));
copyFileSync(join(root, 'static', 'panel.css'), join(out, 'panel.css'));
const manifest = JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')) as { version: string };
manifest.version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
for (const [name, size, light] of [
  ['dark', 23, true],
  ['light', 23, false],
  ['plugin', 48, true],
] as const) {
  writeFileSync(join(out, 'icons', `${name}.png`), icon(size, light));
  writeFileSync(join(out, 'icons', `${name}@2x.png`), icon(size * 2, light));
}

if (!browser) {
  // A .ccx is a zip of the plugin folder, manifest.json at its root.
  const files: Record<string, Uint8Array> = {};
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else files[relative(out, path).split('\\').join('/')] = readFileSync(path);
    }
  };
  walk(out);
  writeFileSync(join(root, 'sdql-photoshop.ccx'), zipSync(files, { level: 9 }));
}
console.log(`built ${relative(process.cwd(), out) || '.'}${browser ? '' : ' and sdql-photoshop.ccx'}`);

/** The panel's icon: a rounded square with a diagonal stroke, drawn here so that no binary is committed. */
function icon(size: number, light: boolean): Uint8Array {
  const data = new Uint8Array(size * size * 4);
  const tone = light ? 230 : 40;
  const r = size / 5;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = Math.max(r - x, x - (size - 1 - r), 0);
      const dy = Math.max(r - y, y - (size - 1 - r), 0);
      const inside = dx * dx + dy * dy <= r * r;
      const stroke = Math.abs(x - (size - 1 - y)) <= size / 10;
      const i = (y * size + x) * 4;
      data.set(stroke ? [tone, tone, tone, inside ? 255 : 0] : [tone, tone, tone, inside ? 96 : 0], i);
    }
  }
  return encodePng({ width: size, height: size, data, channels: 4 });
}
