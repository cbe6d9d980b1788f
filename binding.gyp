# node-gyp build of the addon. Sources and per-ISA flags come from native/sources.json (shared
# with CMakeLists.txt). Each ISA's kernels are a static library with its own flags, so one binary
# carries AVX2 and AVX-512 (or NEON and NEON-dotprod) and picks at run time.
{
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags_cc": ["-std=gnu++17", "-O3", "-fPIC"],
    "cflags": ["-fPIC"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED",
                "NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"]
  },
  "targets": [
    {
      "target_name": "lowbit",
      "sources": ["<!@(node scripts/gyp-sources.js core napi)"],
      "conditions": [
        ["target_arch=='x64'", {"dependencies": ["lowbit_avx2", "lowbit_avx512"]}],
        ["target_arch=='arm64'", {"dependencies": ["lowbit_neon", "lowbit_neon_dotprod"]}]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "lowbit_avx2",
          "type": "static_library",
          "sources": ["<!@(node scripts/gyp-sources.js --isa x64 avx2)"],
          "cflags_cc": ["<!@(node scripts/gyp-sources.js --flags x64 avx2)"]
        },
        {
          "target_name": "lowbit_avx512",
          "type": "static_library",
          "sources": ["<!@(node scripts/gyp-sources.js --isa x64 avx512)"],
          "cflags_cc": ["<!@(node scripts/gyp-sources.js --flags x64 avx512)"]
        }
      ]
    }],
    ["target_arch=='arm64'", {
      "targets": [
        {
          "target_name": "lowbit_neon",
          "type": "static_library",
          "sources": ["<!@(node scripts/gyp-sources.js --isa arm64 neon)"],
          "cflags_cc": ["<!@(node scripts/gyp-sources.js --flags arm64 neon)"]
        },
        {
          "target_name": "lowbit_neon_dotprod",
          "type": "static_library",
          "sources": ["<!@(node scripts/gyp-sources.js --isa arm64 neon_dotprod)"],
          "cflags_cc": ["<!@(node scripts/gyp-sources.js --flags arm64 neon_dotprod)"]
        }
      ]
    }]
  ]
}
