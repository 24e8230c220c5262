// Runs an ONNX model with ONNX Runtime (the npm package onnxruntime-node, CPU) for tests/test_onnx_export.cpp.
//   node onnx_runtime_run.js NODE_MODULES MODEL.onnx INPUT.f32 N C H W OUTPUT.f32
// INPUT.f32 holds N*C*H*W little-endian float32 values for the input "image"; OUTPUT.f32 receives the model's
// one output as float32. Prints one JSON line: the output's name and dims. Any error exits 1 with the reason.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [modules, model, input, n, c, h, w, output] = process.argv.slice(2);
  if (!output) throw new Error('usage: node onnx_runtime_run.js NODE_MODULES MODEL INPUT N C H W OUTPUT');
  const ort = require(path.join(modules, 'onnxruntime-node'));
  // One thread and no graph rewrites beyond the basic ones: the numbers are the operators' own.
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'basic',
  });
  const dims = [n, c, h, w].map(Number);
  const bytes = fs.readFileSync(input);
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== 4 * count) throw new Error(`${input}: ${bytes.length} bytes, expected ${4 * count}`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; ++i) data[i] = bytes.readFloatLE(4 * i);
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', data, dims);
  const results = await session.run(feeds);
  const name = session.outputNames[0];
  const out = results[name];
  const buffer = Buffer.alloc(4 * out.data.length);
  out.data.forEach((v, i) => buffer.writeFloatLE(v, 4 * i));
  fs.writeFileSync(output, buffer);
  console.log(JSON.stringify({ input: session.inputNames, output: name, dims: out.dims, version: ort.env.versions }));
}

main().catch((e) => {
  console.error(`onnx_runtime_run.js: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
