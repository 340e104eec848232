// Worker-path extraction inside Pyodide under Node: the same pages and the same timing code as
// extract_cpython.py (benchmarks/extract_timing.py), with time.perf_counter_ns as the clock. Pyodide runs Python
// on one thread, so its wall time is the interpreter's CPU time (the JS engine's GC and compiler threads aside).
// Pyodide is the npm package the Cloudflare tests use (pyodide@314.0.7 from package.json, in node_modules/),
// loaded as tests/cloudflare/harness.mjs loads it; only the stdlib-only modules extraction needs are copied in.
//
// Usage: node benchmarks/extract_pyodide.mjs --site DIR --base-url http://127.0.0.1:PORT [--step 10]
// Prints one JSON object on stdout; Python's own output goes to stderr.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { loadPyodide } from "pyodide";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PY_ROOT = "/home/pyodide/bench";
const SITE = "/home/pyodide/site";

const { values: args } = parseArgs({
  options: { site: { type: "string" }, "base-url": { type: "string" }, step: { type: "string", default: "10" } },
});

// consumer/extract/ and the top of shared/ (not its subpackages): extraction imports consumer.extract and a few
// shared modules (shared.urls and what it uses); the rest are copied but never imported. Anything else extraction
// needs from outside the standard library fails the import loudly.
function projectFiles() {
  const python = (dir) =>
    fs
      .readdirSync(path.join(ROOT, dir))
      .filter((name) => name.endsWith(".py"))
      .map((name) => `${dir}/${name}`);
  return ["consumer/__init__.py", ...python("consumer/extract"), ...python("shared")];
}

function copyTree(py, source, target) {
  py.FS.mkdirTree(target);
  for (const entry of fs.readdirSync(source, { withFileTypes: true })) {
    const from = path.join(source, entry.name);
    if (entry.isDirectory()) copyTree(py, from, `${target}/${entry.name}`);
    else py.FS.writeFile(`${target}/${entry.name}`, fs.readFileSync(from));
  }
}

async function main() {
  const started = performance.now();
  const toStderr = (text) => process.stderr.write(text + "\n");
  const py = await loadPyodide({ stdout: toStderr, stderr: toStderr });
  const loadMs = performance.now() - started;
  for (const file of projectFiles()) {
    py.FS.mkdirTree(path.posix.dirname(`${PY_ROOT}/${file}`));
    py.FS.writeFile(`${PY_ROOT}/${file}`, fs.readFileSync(path.join(ROOT, file)));
  }
  for (const file of ["extract_timing.py"]) {
    py.FS.writeFile(`${PY_ROOT}/${file}`, fs.readFileSync(path.join(ROOT, "benchmarks", file)));
  }
  copyTree(py, args.site, SITE);
  py.globals.set("SITE", SITE);
  py.globals.set("BASE_URL", args["base-url"]);
  py.globals.set("STEP", Number(args.step));
  const result = py.runPython(`
import json, platform, sys, time
sys.path.insert(0, "${PY_ROOT}")
from extract_timing import run
result = run(SITE, step=STEP, base_url=BASE_URL, clock=time.perf_counter_ns)
result.update(runtime="pyodide", python=platform.python_version(), clock="perf_counter_ns")
json.dumps(result)
`);
  const out = JSON.parse(result);
  out.pyodide = py.version;
  out.node = process.version;
  out.pyodide_load_ms = loadMs;
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((error) => {
  process.stderr.write(`extract_pyodide failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
