#!/usr/bin/env node
// Builds the addons the npm package ships: prebuilds/linux-x64 natively and prebuilds/linux-arm64
// cross-compiled with aarch64-linux-gnu-g++, through prebuildify (N-API, stripped, glibc-tagged so
// node-gyp-build on musl falls back to a source build instead of loading a glibc binary).
// Usage: node scripts/prebuild.mjs [x64] [arm64]   (default: both; arm64 is skipped with a note
// when the cross compiler is missing, unless LOWBIT_REQUIRE_ARM64=1).
//
// prebuildify runs `node-gyp rebuild`, which deletes ./build first: each arch builds in its own
// staging folder (build-prebuild-<arch>, git-ignored) so the developers' build/ stays untouched.
// Flags come from binding.gyp and native/sources.json only: no -march=native, the kernels for each
// ISA are compiled with their own flags and picked at run time.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const requested = process.argv.slice(2);
const arches = requested.length ? requested : ['x64', 'arm64'];

// ELF e_machine values, to prove each binary is for the arch its folder names.
const ELF_MACHINE = { x64: 0x3e, arm64: 0xb7 };
// Cross tools for arm64 (Debian's g++-aarch64-linux-gnu); ar and strip must be the target's too.
const CROSS = {
  CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', LINK: 'aarch64-linux-gnu-g++',
  AR: 'aarch64-linux-gnu-ar', PREBUILD_STRIP_BIN: 'aarch64-linux-gnu-strip',
};

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function stage(arch) {
  const dir = path.join(root, `build-prebuild-${arch}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir);
  // binding.gyp's paths are relative to itself; links keep the staging folder a view of the tree.
  for (const f of ['binding.gyp', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f));
  for (const d of ['native', 'scripts', 'node_modules']) fs.symlinkSync(path.join(root, d), path.join(dir, d));
  return dir;
}

function prebuild(arch) {
  const cross = arch !== process.arch;
  if (cross && arch === 'arm64' && !has(CROSS.CXX)) {
    const msg = `${CROSS.CXX} not found (apt-get install g++-aarch64-linux-gnu): no linux-arm64 prebuild`;
    if (process.env.LOWBIT_REQUIRE_ARM64) throw new Error(msg);
    console.log(`note: ${msg}`);
    return;
  }
  if (cross && arch !== 'arm64') throw new Error(`cannot cross-build for ${arch} from ${process.arch}`);
  const out = path.join(root, 'prebuilds', `linux-${arch}`);
  fs.rmSync(out, { recursive: true, force: true });  // no stale file may outrank the new one
  const started = Date.now();
  const args = [
    path.join(root, 'node_modules/prebuildify/bin.js'),
    '--napi', '--strip', '--tag-libc', '--arch', arch,
    // Node 20's headers (engines >=20); NAPI_VERSION=8 makes the binary load on every later Node.
    '--target', `node@${process.versions.node}`,
    '--cwd', stage(arch), '--out', root,
  ];
  // JOBS: node-gyp's make parallelism (2 cores here). nodedir: the running Node's own headers
  // (they sit beside it, as in /usr/include/node), so node-gyp downloads nothing, also when this
  // script runs outside npm (npm passes ~/.npmrc's nodedir as npm_config_nodedir).
  const prefix = path.dirname(path.dirname(process.execPath));
  const nodedir = process.env.npm_config_nodedir ??
    (fs.existsSync(path.join(prefix, 'include/node/node_api.h')) ? prefix : undefined);
  const env = { ...process.env, JOBS: process.env.JOBS ?? '2', ...(nodedir && { npm_config_nodedir: nodedir }), ...(cross ? CROSS : {}) };
  console.log(`$ ${cross ? Object.entries(CROSS).map(([k, v]) => `${k}=${v} `).join('') : ''}node ${args.join(' ')}`);
  const r = spawnSync(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`prebuildify for ${arch} failed (${r.error?.message ?? `exit ${r.status}`})`);

  const files = fs.readdirSync(out).filter((f) => f.endsWith('.node'));
  if (files.length !== 1) throw new Error(`expected one .node in ${out}, found ${files.join(', ') || 'none'}`);
  const file = path.join(out, files[0]);
  const header = fs.readFileSync(file).subarray(0, 20);
  const machine = header.readUInt16LE(18);
  if (header.readUInt32BE(0) !== 0x7f454c46 || machine !== ELF_MACHINE[arch]) {
    throw new Error(`${file} is not an ELF binary for ${arch} (e_machine 0x${machine.toString(16)})`);
  }
  const described = has('file') ? execFileSync('file', ['-b', file], { encoding: 'utf8' }).trim() : 'ELF header checked';
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  console.log(`prebuilds/linux-${arch}/${files[0]}: ${(fs.statSync(file).size / 1024).toFixed(0)} KiB, ${seconds} s; ${described}`);
}

try {
  for (const arch of arches) prebuild(arch);
} catch (err) {
  console.error(`prebuild: ${err.message}`);
  process.exit(1);
}
