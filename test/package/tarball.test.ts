// The npm package as a user gets it: `npm pack`, then `npm install --offline <tarball>` into an
// empty project whose PATH holds only node, npm, npx and sh (no python, make or compiler, so a
// source build would fail the install), then the README's first command, require and import.
// Needs the prebuild for this platform (`npm run prebuild`) and the full npm metadata of the runtime
// dependencies in the npm cache (.ci/run: `npm cache add`, as `npm ci` caches only abbreviated
// metadata, which `npm install <tarball>` does not accept offline). Without them it skips, saying
// why; LOWBIT_REQUIRE_PACKAGE=1 (CI) turns the skip into a failure. Skipped under LOWBIT_NO_SPAWN.
import { strict as assert } from 'node:assert';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { canSpawnNode } from '../helpers/env';
import { makeTempDir, modelPath, removeDir } from '../helpers/models';

const ROOT = path.resolve(__dirname, '../..');

/** An executable on the current PATH, resolved through links (npm is a link to its JS entry). */
function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.realpathSync(file);
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

/** Newest modification time under a folder. */
function newest(dir: string): number {
  return Math.max(...fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile()).map((e) => fs.statSync(path.join(e.parentPath, e.name)).mtimeMs));
}

function output(r: SpawnSyncReturns<string>): string {
  return `exit ${r.status}${r.error ? ` (${r.error.message})` : ''}\n${r.stdout}\n${r.stderr}`;
}

describe('npm package (tarball)', function () {
  this.timeout(300_000);
  let tmp: string | undefined;
  let project: string;
  let env: NodeJS.ProcessEnv;

  /** Skips, or fails where CI requires the package test to run. */
  function unable(ctx: Mocha.Context, why: string): never {
    if (process.env.LOWBIT_REQUIRE_PACKAGE) throw new Error(`package test cannot run: ${why}`);
    console.log(`      (skipped: ${why})`);
    ctx.skip();
  }

  const inProject = (cmd: string, args: string[]) =>
    spawnSync(cmd, args, { cwd: project, env, encoding: 'utf8', timeout: 120_000 });

  before(function () {
    if (!canSpawnNode()) this.skip();
    const npm = which('npm'), npx = which('npx'), sh = which('sh');
    if (!npm || !npx || !sh) unable(this, 'npm, npx or sh not found on PATH');
    const prebuilds = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
    if (!fs.existsSync(prebuilds) || !fs.readdirSync(prebuilds).some((f) => f.endsWith('.node'))) {
      unable(this, `no ${path.relative(ROOT, prebuilds)} (run npm run prebuild)`);
    }
    if (newest(prebuilds) < newest(path.join(ROOT, 'native'))) {
      unable(this, `${path.relative(ROOT, prebuilds)} is older than native/ (run npm run prebuild)`);
    }

    tmp = makeTempDir('package');
    const packStarted = Date.now();
    // A nested npm reads its settings from ~/.npmrc, not from the npm_* variables of `npm test`.
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
    const packed = spawnSync(npm!, ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT, env: clean, encoding: 'utf8' });
    assert.equal(packed.status, 0, `npm pack failed: ${output(packed)}`);
    const tarball = path.join(tmp, JSON.parse(packed.stdout)[0].filename);

    // PATH with node, npm, npx and sh only: no python3, make, cc or c++, so no source build.
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    for (const [name, target] of [['node', process.execPath], ['npm', npm!], ['npx', npx!], ['sh', sh!]]) {
      fs.symlinkSync(target, path.join(bin, name));
    }
    env = { ...clean, PATH: bin };
    project = path.join(tmp, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'lowbit-user', version: '1.0.0', private: true }));

    const installStarted = Date.now();
    const installed = inProject('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball]);
    if (installed.status !== 0 && /ENOTCACHED/.test(installed.stderr)) {
      unable(this, 'the npm cache lacks the full metadata of node-addon-api or node-gyp-build ' +
        '(npm cache add node-addon-api@8 node-gyp-build@4)');
    }
    assert.equal(installed.status, 0, `offline install failed: ${output(installed)}`);
    const seconds = (since: number) => ((Date.now() - since) / 1000).toFixed(1);
    console.log(`      (npm pack and install ${seconds(packStarted)} s, of which offline install ${seconds(installStarted)} s; ` +
      `tarball ${(fs.statSync(tarball).size / 2 ** 20).toFixed(2)} MiB)`);
  });

  after(() => {
    if (tmp) removeDir(tmp);
  });

  it('installed the prebuilt addon and built nothing', () => {
    const pkg = path.join(project, 'node_modules', 'lowbit');
    assert.ok(!fs.existsSync(path.join(pkg, 'build')), 'a source build ran (node_modules/lowbit/build exists)');
    for (const f of ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/index.d.mts', 'dist/cli.js', 'binding.gyp',
      'native/sources.json', 'scripts/gyp-sources.js', 'models/stories260K/stories260K.bin', 'models/stories260K/tok512.bin']) {
      assert.ok(fs.existsSync(path.join(pkg, f)), `the package lacks ${f}`);
    }
    const r = inProject('node', ['-p', "require('node-gyp-build').path(require('path').dirname(require.resolve('lowbit/package.json')))"]);
    assert.equal(r.status, 0, output(r));
    assert.match(r.stdout.trim(), new RegExp(`prebuilds/${process.platform}-${process.arch}/lowbit\\.glibc\\.node$`));
  });

  it("runs the README's first command with the bundled demo model", () => {
    const ref = JSON.parse(fs.readFileSync(modelPath('references.json'), 'utf8'))[0];
    const r = inProject('npx', ['lowbit', 'run', '--prompt', ref.prompt, '--max-tokens', '20', '--temperature', '0']);
    assert.equal(r.status, 0, output(r));
    assert.ok(r.stdout.length > 20, output(r));
    assert.ok(ref.continuation.startsWith(r.stdout), `stdout ${JSON.stringify(r.stdout)} does not start the reference continuation`);
    assert.match(r.stderr, /\[lowbit\] stories260K\.bin: 5 prompt tokens .* 20 generated .*finished: length/);
  });

  it('loads with require and with import, as one module instance', () => {
    fs.writeFileSync(path.join(project, 'use.cjs'), `
      const lowbit = require('lowbit');
      const { loadModel } = lowbit;
      if (typeof loadModel !== 'function' || !(new lowbit.LowbitError('x', 'LOWBIT_BAD_FILE') instanceof Error)) throw new Error('bad exports');
      console.log('cjs', lowbit.cpuInfo().isa);
    `);
    fs.writeFileSync(path.join(project, 'use.mjs'), `
      import { createRequire } from 'node:module';
      import { loadModel, cpuInfo, LowbitError } from 'lowbit';
      const required = createRequire(import.meta.url)('lowbit');
      if (required.loadModel !== loadModel || required.LowbitError !== LowbitError) throw new Error('two module instances');
      const dynamic = await import('lowbit');
      if (dynamic.loadModel !== loadModel) throw new Error('import() differs');
      const model = await loadModel(new URL('./node_modules/lowbit/models/stories260K/stories260K.bin', import.meta.url).pathname);
      const text = await model.complete('Once upon a time', { maxTokens: 8, temperature: 0 });
      model.dispose();
      console.log('esm', cpuInfo().isa, JSON.stringify(text));
    `);
    const cjs = inProject('node', ['use.cjs']);
    assert.equal(cjs.status, 0, output(cjs));
    assert.match(cjs.stdout, /^cjs \w/);
    const esm = inProject('node', ['use.mjs']);
    assert.equal(esm.status, 0, output(esm));
    assert.match(esm.stdout, /^esm \S+ ", there was a little/);
  });

  it('has type declarations for import and for require', () => {
    fs.writeFileSync(path.join(project, 'types.mts'), `
      import { loadModel, type LowbitModel, type GenerateOptions } from 'lowbit';
      const options: GenerateOptions = { maxTokens: 4 };
      export const load: (file: string) => Promise<LowbitModel> = (file) => loadModel(file);
      export { options };
    `);
    fs.writeFileSync(path.join(project, 'types.cts'), `
      import lowbit = require('lowbit');
      export const load: typeof lowbit.loadModel = lowbit.loadModel;
      // @ts-expect-error: not an export
      lowbit.notAnExport;
    `);
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = inProject('node', [tsc, '--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16',
      '--target', 'es2022', '--lib', 'es2022,esnext.disposable', '--typeRoots', path.join(ROOT, 'node_modules', '@types'),
      '--types', 'node', 'types.mts', 'types.cts']);
    assert.equal(r.status, 0, output(r));
  });
});
