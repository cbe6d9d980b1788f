#!/usr/bin/env node
// Builds the C++ test binary with CMake and runs it. Where the aarch64 cross compiler and qemu
// are installed (.ci/run installs them), also cross-builds it and runs it under qemu twice: on
// qemu's default CPU (NEON with dot product) and as a Cortex-A53 (NEON without), so both ARM
// kernel sets are proven. LOWBIT_REQUIRE_ARM64=1 turns a missing toolchain into a failure.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const jobs = String(Math.max(1, Math.min(4, (await import('node:os')).availableParallelism())));

function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    console.error(`${cmd} failed (${r.error ? r.error.message : `exit ${r.status}`})`);
    process.exit(1);
  }
}

function build(dir, extra = []) {
  run('cmake', ['-S', '.', '-B', dir, '-DCMAKE_BUILD_TYPE=Release', ...extra]);
  run('cmake', ['--build', dir, '-j', jobs]);
  return path.join(dir, 'lowbit_tests');
}

function has(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

run(build('build-tests'), []);

if (has('aarch64-linux-gnu-g++') && has('qemu-aarch64')) {
  const armTests = build('build-tests-arm64', ['-DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake']);
  for (const cpu of ['max', 'cortex-a53']) {
    run('qemu-aarch64', ['-cpu', cpu, '-L', '/usr/aarch64-linux-gnu', armTests]);
  }
} else if (process.env.LOWBIT_REQUIRE_ARM64) {
  console.error('aarch64-linux-gnu-g++ and qemu-aarch64 are required (apt-get install g++-aarch64-linux-gnu qemu-user)');
  process.exit(1);
} else {
  console.log('note: aarch64 cross compiler or qemu-aarch64 not found; ARM kernels not tested here');
}
if (!existsSync(path.join(root, 'build-tests/lowbit_tests'))) process.exit(1);
