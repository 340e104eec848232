// The Cloudflare adapters in the runtime they ship to: Pyodide (Python 3.14, as Workers run at our compatibility
// date) over Miniflare's real KV namespace and queue producer. Started once per test session by
// tests/cloudflare/client.py, which speaks a line-based JSON-RPC with it over stdin/stdout:
//   request  {"id": 1, "op": "kv.put", "args": {...}}
//   reply    {"id": 1, "ok": true, "result": ...}  or  {"id": 1, "ok": false, "error": {"type", "message"}}
// The ops and scenarios are Python (tests/cloudflare/inside.py); this file only wires the runtimes together
// and forwards each line unparsed. The first line written is {"ready": true, ...}; stdout carries nothing else.
//
// Usage: node tests/cloudflare/harness.mjs <site-packages of the project's venv>

import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import util from "node:util";

import { Log, LogLevel, Miniflare } from "miniflare";
import { loadPyodide } from "pyodide";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const SITE_PACKAGES = process.argv[2];
const QUEUE = "scrapeq-jobs";
// A fresh KV namespace per test (Miniflare's outlive it, and emptying one of 2500 keys takes seconds); once all
// are used, the next one is emptied first.
const KV_NAMESPACES = Array.from({ length: 100 }, (_, index) => `KV${index}`);

// The project's stdlib-only modules, exactly as listed: anything else they import fails loudly in Pyodide.
const PROJECT_FILES = [
  "shared/__init__.py",
  "shared/ports.py",
  "shared/errors.py",
  "shared/guard.py",
  "shared/urls.py",
  "shared/retry.py",
  "shared/keys.py",
  "shared/telemetry.py",
  "shared/stores/__init__.py",
  "shared/stores/quotas.py",
  "shared/stores/reservations.py",
  "shared/stores/usage.py",
  "shared/stores/usage_shards.py",
  "shared/ratelimit.py",
  "shared/backends/__init__.py",
  "shared/backends/base.py",
  "shared/backends/kvlimits.py",
  "shared/backends/jsvalues.py",
  "shared/backends/cloudflare.py",
  "shared/backends/durable.py",
  "shared/coordination.py",
  "shared/stores/coordinated.py",
  "consumer/__init__.py",
  "consumer/fetch/__init__.py",
  "consumer/fetch/js_transport.py",
  "consumer/fetch/fetcher.py",
  "consumer/fetch/addresses.py",
  "consumer/fetch/body.py",
  "tests/__init__.py",
  "tests/cloudflare/__init__.py",
  "tests/cloudflare/wire.py",
  "tests/cloudflare/inside.py",
];
// Pure-Python dependencies of the fetch path, copied from the venv (the npm Pyodide ships no wheels).
const SITE_PACKAGES_ENTRIES = ["httpx", "httpcore", "h11", "anyio", "idna", "sniffio", "certifi", "typing_extensions.py"];
const PY_ROOT = "/home/pyodide/scrapeq";

// stdout is the RPC channel: everything else that would print goes to stderr.
const reply = process.stdout.write.bind(process.stdout);
for (const name of ["log", "info", "debug", "warn"]) {
  console[name] = (...args) => process.stderr.write(util.format(...args) + "\n");
}

// A queue consumer inside Miniflare that records what it receives, read back over `dispatchFetch`.
const CONSUMER = `
let received = [];
export default {
  async queue(batch) {
    const receivedAtMs = Date.now();
    for (const message of batch.messages) {
      received.push({ queue: batch.queue, id: message.id, body: message.body, attempts: message.attempts,
                      received_at_ms: receivedAtMs });
      message.ack();
    }
  },
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/received") return Response.json(received);
    if (url.pathname === "/reset") received = [];
    if (url.pathname === "/clear") {
      const kv = env[url.searchParams.get("binding")];
      let cursor;
      do {
        const page = await kv.list({ cursor });
        await Promise.all(page.keys.map((key) => kv.delete(key.name)));
        cursor = page.list_complete ? undefined : page.cursor;
      } while (cursor);
    }
    return new Response("done");
  },
};
`;

// A Durable Object namespace as the runtime hands one to a Worker: `idFromName`, `get(id)` → a stub whose RPC
// method `call(op, payload)` reaches the object of that name, made on first use: the Python `CoordinationObject`
// (shared/backends/durable.py) over a stand-in of a SQLite-backed object's synchronous `ctx.storage.kv` (a Map:
// get, put, delete, list({prefix}) in key order). Calls to one object run one at a time, in arrival order, as the
// runtime's input gate delivers them; calls to different objects run concurrently.
function makeNamespace(newObject) {
  const objects = new Map();
  const storageOf = () => {
    const map = new Map();
    const kv = {
      get: (key) => map.get(key),
      put: (key, value) => void map.set(key, value),
      delete: (key) => map.delete(key),
      list: (options) =>
        [...map.entries()]
          .filter(([key]) => !options?.prefix || key.startsWith(options.prefix))
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    };
    return { kv };
  };
  return {
    idFromName: (name) => ({ name: String(name), toString: () => String(name) }),
    get(id) {
      return {
        call(op, payload) {
          let entry = objects.get(id.name);
          if (entry === undefined) {
            entry = { object: newObject(storageOf()), queue: Promise.resolve() };
            objects.set(id.name, entry);
          }
          const answer = entry.queue.then(() => entry.object.call(String(op), String(payload)));
          entry.queue = answer.catch(() => undefined);
          return answer;
        },
      };
    },
    objectCount: () => objects.size,
  };
}

function copyTree(py, source, target) {
  const stat = fs.statSync(source);
  if (stat.isFile()) {
    py.FS.writeFile(target, fs.readFileSync(source));
    return;
  }
  py.FS.mkdirTree(target);
  for (const entry of fs.readdirSync(source)) {
    if (entry === "__pycache__") continue;
    copyTree(py, path.join(source, entry), `${target}/${entry}`);
  }
}

// A queue batch shaped as the runtime hands it to a raw (unwrapped) handler; its messages record their calls.
function makeBatch(queue, specsJson) {
  const calls = [];
  const messages = JSON.parse(specsJson).map((spec) => ({
    id: spec.id,
    body: spec.body,
    attempts: spec.attempts,
    timestamp: new Date(),
    ack(...args) {
      calls.push({ id: spec.id, method: "ack", args: args.length });
    },
    retry(...args) {
      const options = args[0];
      calls.push({
        id: spec.id,
        method: "retry",
        args: args.length,
        // A Map (what Pyodide 0.28's to_js makes of a dict by default) would read as no options: record what JS sees.
        kind: Object.prototype.toString.call(options),
        options: options === undefined ? null : { delaySeconds: options.delaySeconds },
      });
    },
  }));
  return {
    queue,
    messages,
    ackAll: () => calls.push({ method: "ackAll" }),
    retryAll: () => calls.push({ method: "retryAll" }),
    callsJson: () => JSON.stringify(calls),
  };
}

async function main() {
  const started = Date.now();
  const persistDir = fs.existsSync("/dev/shm") ? fs.mkdtempSync("/dev/shm/scrapeq-miniflare-") : undefined;
  if (persistDir) {
    process.on("exit", () => fs.rmSync(persistDir, { recursive: true, force: true }));
    for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(1));
  }
  const mf = new Miniflare({
    log: new Log(LogLevel.WARN),
    cf: false, // a placeholder `request.cf`; by default Miniflare downloads one from the internet
    modules: true,
    script: CONSUMER,
    compatibilityDate: "2026-04-26",
    kvNamespaces: KV_NAMESPACES,
    // Miniflare's unpersisted KV storage is still file-backed (a temp dir); on tmpfs a put takes a third of the time.
    ...(persistDir ? { kvPersist: persistDir } : {}),
    queueProducers: { JOBS: QUEUE },
    queueConsumers: { [QUEUE]: { maxBatchSize: 100, maxBatchTimeout: 0, maxRetries: 0 } },
    // A Rate Limiting binding: 3 per fixed minute per key (tests use fresh keys, as its counts outlive a test).
    ratelimits: { RATE_LIMIT: { simple: { limit: 3, period: 60 } } },
  });
  await mf.ready;
  const jobs = await mf.getQueueProducer("JOBS");
  const { RATE_LIMIT: rateLimit } = await mf.getBindings();
  let resets = 0;
  let newCoordinationObject; // the Python class, once Pyodide has loaded the project

  // A Worker `env` for the next test: an empty KV namespace as `KV`, the queue producer as `JOBS`, the rate limiter.
  async function freshEnv() {
    const binding = KV_NAMESPACES[resets++ % KV_NAMESPACES.length];
    await (await mf.dispatchFetch("http://consumer/reset")).text();
    if (resets > KV_NAMESPACES.length) {
      await (await mf.dispatchFetch(`http://consumer/clear?binding=${binding}`)).text();
    }
    return {
      KV: await mf.getKVNamespace(binding),
      JOBS: jobs,
      RATE_LIMIT: rateLimit,
      COORDINATION: makeNamespace((storage) => newCoordinationObject(storage)),
    };
  }

  async function received() {
    return await (await mf.dispatchFetch("http://consumer/received")).text();
  }

  const stderrLine = (text) => process.stderr.write(text + "\n");
  const py = await loadPyodide({ stdout: stderrLine, stderr: stderrLine });
  for (const file of PROJECT_FILES) {
    py.FS.mkdirTree(path.posix.dirname(`${PY_ROOT}/${file}`));
    py.FS.writeFile(`${PY_ROOT}/${file}`, fs.readFileSync(path.join(ROOT, file)));
  }
  for (const entry of SITE_PACKAGES_ENTRIES) {
    copyTree(py, path.join(SITE_PACKAGES, entry), `${PY_ROOT}/site-packages/${entry}`);
  }
  py.registerJsModule("scrapeq_harness", { freshEnv, makeBatch, received, fetch: globalThis.fetch });
  py.runPython(`import sys; sys.path[:0] = ["${PY_ROOT}", "${PY_ROOT}/site-packages"]`);
  const dispatch = py.pyimport("tests.cloudflare.inside").dispatch;
  newCoordinationObject = py.pyimport("shared.backends.durable").CoordinationObject;

  const pending = new Set();
  const answer = async (line) => {
    try {
      return await dispatch(line);
    } catch (error) {
      const id = Number(/"id":(\d+)/.exec(line)?.[1] ?? -1); // the line may hold NaN, which JSON.parse refuses
      return JSON.stringify({ id, ok: false, error: { type: "HarnessError", message: String(error) } });
    }
  };
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    // Requests run concurrently (a test may pipeline puts); each reply carries its request's id.
    const done = answer(line).then((text) => reply(text + "\n"));
    pending.add(done);
    done.finally(() => pending.delete(done));
  });
  lines.on("close", async () => {
    await Promise.allSettled([...pending]);
    await mf.dispose();
    process.exit(0);
  });
  reply(JSON.stringify({ ready: true, startup_ms: Date.now() - started, python: py.runPython("import sys; sys.version") }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`harness failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
