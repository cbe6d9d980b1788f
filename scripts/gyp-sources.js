// Prints native/sources.json entries for binding.gyp's command expansion, so gyp and CMake read
// one list. Usage: gyp-sources.js core napi | gyp-sources.js --isa x64 avx2 | --flags x64 avx2
'use strict';
const list = require('../native/sources.json');
const args = process.argv.slice(2);
const isaEntry = (arch, name) => {
  const e = (list.isa[arch] || []).find((x) => x.name === name);
  if (!e) throw new Error(`no ISA ${arch}/${name} in native/sources.json`);
  return e;
};
let out;
if (args[0] === '--isa') out = isaEntry(args[1], args[2]).sources;
else if (args[0] === '--flags') out = isaEntry(args[1], args[2]).flags;
else out = args.flatMap((key) => list[key]);
process.stdout.write(out.join(' '));
