// shared/backends/analytics.py inside Pyodide under Node, writing to two `METRICS` bindings at once: a stand-in
// that checks each data point as the Workers runtime would (a plain Object, at most 20 string blobs, 20 number
// doubles and one index of at most 96 bytes) and records it, and Miniflare's own Analytics Engine binding (which
// discards what it gets but must accept it across its proxy). Runs tests/cloudflare/analytics_inside.py.
//
// Usage: node tests/cloudflare/analytics_harness.mjs   (prints one JSON object on stdout)

import fs from "node:fs";
import path from "node:path";
import util from "node:util";
import { fileURLToPath } from "node:url";

import { Log, LogLevel, Miniflare } from "miniflare";
import { loadPyodide } from "pyodide";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PY_ROOT = "/home/pyodide/scrapeq";
// Exactly the modules the recorder needs: anything else it imports fails loudly.
const PROJECT_FILES = [
  "shared/__init__.py",
  "shared/ports.py",
  "shared/telemetry.py",
  "shared/backends/__init__.py",
  "shared/backends/jsvalues.py",
  "shared/backends/analytics.py",
  "tests/__init__.py",
  "tests/cloudflare/__init__.py",
  "tests/cloudflare/analytics_inside.py",
];

const out = process.stdout.write.bind(process.stdout);
for (const name of ["log", "info", "debug", "warn"]) {
  console[name] = (...args) => process.stderr.write(util.format(...args) + "\n");
}

function checked(point) {
  const kind = Object.prototype.toString.call(point);
  if (kind !== "[object Object]") throw new TypeError(`writeDataPoint takes an Object, got ${kind}`);
  const { blobs, doubles, indexes } = point; // every point we write carries all three
  if (!Array.isArray(blobs) || blobs.length > 20 || !blobs.every((b) => typeof b === "string" || b === null)) {
    throw new TypeError(`bad blobs: ${util.inspect(blobs)}`);
  }
  if (!Array.isArray(doubles) || doubles.length > 20 || !doubles.every((d) => typeof d === "number")) {
    throw new TypeError(`bad doubles: ${util.inspect(doubles)}`);
  }
  if (!Array.isArray(indexes) || indexes.length > 1 || !indexes.every((i) => typeof i === "string")) {
    throw new TypeError(`bad indexes: ${util.inspect(indexes)}`);
  }
  if (indexes.some((i) => Buffer.byteLength(i) > 96)) throw new TypeError("an index over 96 bytes");
  return { blobs, doubles, indexes };
}

async function main() {
  const mf = new Miniflare({
    log: new Log(LogLevel.WARN),
    cf: false,
    modules: true,
    script: "export default { fetch() { return new Response('ok'); } };",
    compatibilityDate: "2026-04-26",
    analyticsEngineDatasets: { METRICS: { dataset: "scrapeq_metrics" } },
  });
  await mf.ready;
  const { METRICS: miniflareDataset } = await mf.getBindings();
  const points = [];
  let miniflareWrites = 0;
  const env = {
    METRICS: {
      writeDataPoint(point) {
        points.push(checked(point));
        miniflareDataset.writeDataPoint(point);
        miniflareWrites += 1;
      },
    },
  };
  const broken = {
    METRICS: {
      writeDataPoint() {
        throw new Error("dataset unavailable");
      },
    },
  };
  const stderrLine = (text) => process.stderr.write(text + "\n");
  const py = await loadPyodide({ stdout: stderrLine, stderr: stderrLine });
  for (const file of PROJECT_FILES) {
    py.FS.mkdirTree(path.posix.dirname(`${PY_ROOT}/${file}`));
    py.FS.writeFile(`${PY_ROOT}/${file}`, fs.readFileSync(path.join(ROOT, file)));
  }
  py.registerJsModule("scrapeq_analytics", { env, broken, empty: {} });
  py.runPython(`import sys; sys.path[:0] = ["${PY_ROOT}"]`);
  const inside = JSON.parse(py.runPython("from tests.cloudflare.analytics_inside import run; run()"));
  await mf.dispose();
  const python = py.runPython("import sys; sys.version");
  out(JSON.stringify({ python, platform: py.runPython("import sys; sys.platform"), inside, points, miniflareWrites }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`analytics harness failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
