#!/usr/bin/env node
// npm pack / publish: copies the demo model into the package (models/ is git-ignored, never
// committed) and removes dist/ so that the `prepare` script, which npm runs right after prepack,
// rebuilds it from lib/ with no stale files. Prebuilds come from `npm run prebuild` beforehand.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const from = path.resolve(root, '..', 'shared', 'models', 'stories260K');
const to = path.join(root, 'models', 'stories260K');
const files = ['stories260K.bin', 'tok512.bin'];

const missing = files.filter((f) => !fs.existsSync(path.join(from, f)));
if (missing.length) {
  console.error(`prepack: the demo model is missing: ${missing.map((f) => path.join(from, f)).join(', ')}\n` +
    '  The package carries stories260K from ../shared/models/stories260K (beside this repository).');
  process.exit(1);
}
fs.mkdirSync(to, { recursive: true });
for (const f of files) fs.copyFileSync(path.join(from, f), path.join(to, f));

fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });

for (const arch of ['x64', 'arm64']) {
  const dir = path.join(root, 'prebuilds', `linux-${arch}`);
  if (!fs.existsSync(dir) || !fs.readdirSync(dir).some((f) => f.endsWith('.node'))) {
    console.warn(`prepack: warning: no prebuilds/linux-${arch} (run npm run prebuild); installs there will build from source`);
  }
}
