// The daily backup (shared/cron.py → shared/backups.py → shared/backends/r2.py) inside Pyodide under Node, over
// Miniflare's real R2 bucket and KV namespaces: the Worker's cron entry backs up every tenant of `KV` into `BACKUPS`,
// then each backup is restored into the empty `RESTORED` namespace. The bucket is handed over behind a thin
// recorder of the calls that write (puts, multipart parts and their sizes). Runs tests/cloudflare/backup_inside.py.
//
// Usage: node tests/cloudflare/backup_harness.mjs   (prints one JSON object on stdout)

import fs from "node:fs";
import path from "node:path";
import util from "node:util";
import { fileURLToPath } from "node:url";

import { Log, LogLevel, Miniflare } from "miniflare";
import { loadPyodide } from "pyodide";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PY_ROOT = "/home/pyodide/scrapeq";
// All of shared/ (what imports pydantic is simply never imported here), and the scenario.
const TEST_FILES = ["tests/__init__.py", "tests/cloudflare/__init__.py", "tests/cloudflare/backup_inside.py"];

const out = process.stdout.write.bind(process.stdout);
for (const name of ["log", "info", "debug", "warn"]) {
  console[name] = (...args) => process.stderr.write(util.format(...args) + "\n");
}

function pythonFiles(dir) {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "__pycache__" ? [] : pythonFiles(relative);
    return entry.name.endsWith(".py") ? [relative] : [];
  });
}

function recorded(bucket, calls) {
  return {
    head: (key) => bucket.head(key),
    get: (key, options) => bucket.get(key, options),
    list: (options) => bucket.list(options),
    delete: (key) => bucket.delete(key),
    put(key, value, options) {
      calls.push(["put", key, value.byteLength]);
      return bucket.put(key, value, options);
    },
    async createMultipartUpload(key, options) {
      const upload = await bucket.createMultipartUpload(key, options);
      calls.push(["multipart", key]);
      return {
        uploadPart(number, value) {
          calls.push(["part", key, number, value.byteLength]);
          return upload.uploadPart(number, value);
        },
        complete(parts) {
          calls.push(["complete", key, parts.length]);
          return upload.complete(parts);
        },
        abort: () => upload.abort(),
      };
    },
  };
}

async function main() {
  const mf = new Miniflare({
    log: new Log(LogLevel.WARN),
    cf: false,
    modules: true,
    script: "export default { fetch() { return new Response('ok'); } };",
    compatibilityDate: "2026-04-26",
    kvNamespaces: ["KV", "RESTORED"],
    r2Buckets: ["BACKUPS"],
  });
  await mf.ready;
  const bucket = await mf.getR2Bucket("BACKUPS");
  const calls = [];
  const env = {
    KV: await mf.getKVNamespace("KV"),
    RESTORED: await mf.getKVNamespace("RESTORED"),
    BACKUPS: recorded(bucket, calls),
  };
  // A backup from long ago (the sweep deletes it) and one within the retention (kept).
  await bucket.put("backups/2026-10-01/tn_old.jsonl.gz", "old");
  await bucket.put("backups/2026-11-20/tn_old.jsonl.gz", "recent");
  const controller = { cron: "17 3 * * *", scheduledTime: Date.UTC(2026, 11, 1, 3, 17), noRetry() {} };
  const unknown = { cron: "0 0 * * *", scheduledTime: Date.UTC(2026, 11, 1), noRetry() {} };

  const stderrLine = (text) => process.stderr.write(text + "\n");
  const py = await loadPyodide({ stdout: stderrLine, stderr: stderrLine });
  for (const file of [...pythonFiles("shared"), ...TEST_FILES]) {
    py.FS.mkdirTree(path.posix.dirname(`${PY_ROOT}/${file}`));
    py.FS.writeFile(`${PY_ROOT}/${file}`, fs.readFileSync(path.join(ROOT, file)));
  }
  py.registerJsModule("scrapeq_backup", { env, controller, unknown });
  py.runPython(`import sys; sys.path[:0] = ["${PY_ROOT}"]`);
  const inside = JSON.parse(await py.runPythonAsync("from tests.cloudflare.backup_inside import run; await run()"));
  const listed = (await bucket.list({ prefix: "backups/" })).objects.map((o) => [o.key, o.size]);
  await mf.dispose();
  const python = py.runPython("import sys; sys.version");
  out(JSON.stringify({ python, platform: py.runPython("import sys; sys.platform"), inside, calls, listed }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`backup harness failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
