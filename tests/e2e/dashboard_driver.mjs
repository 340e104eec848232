// Drives the dashboard in headless Chromium (playwright-core, the system's Chromium) as a person would, and
// prints what it saw as one JSON object on its last line; tests/e2e/test_dashboard.py starts it and asserts.
// Configuration comes as JSON in the DASHBOARD_DRIVER environment variable:
// {base, key, wrong_key, kb, url, limit, hostile_title, chromium, profile, shots}.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.env.DASHBOARD_DRIVER);
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const seen = { requests: [], console: [], dialogs: [], page_errors: [], steps: {}, percents: [] };
mkdirSync(config.shots, { recursive: true });

const context = await chromium.launchPersistentContext(config.profile, {
  executablePath: config.chromium,
  headless: true,
  args: FLAGS,
  viewport: { width: 1280, height: 900 },
});
context.setDefaultTimeout(20000);
context.on("request", (request) => seen.requests.push(request.url()));
// Runs before the page's own scripts, through the browser (not a page script, so the CSP does not apply to it).
await context.addInitScript(() => {
  window.__violations = [];
  document.addEventListener("securitypolicyviolation", (event) => {
    window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
  });
});
const page = context.pages()[0] || (await context.newPage());
page.on("console", (message) => seen.console.push({ type: message.type(), text: message.text() }));
page.on("pageerror", (error) => seen.page_errors.push(String(error)));
page.on("dialog", async (dialog) => {
  seen.dialogs.push(dialog.message());
  await dialog.dismiss();
});

let shot = 0;
async function screenshot(name) {
  shot += 1;
  const path = join(config.shots, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
}

const storage = () =>
  page.evaluate(() => ({
    session: sessionStorage.getItem("scrapeq.apiKey"),
    session_length: sessionStorage.length,
    local_length: localStorage.length,
    href: location.href,
  }));

async function run() {
  const response = await page.goto(`${config.base}/dashboard`);
  seen.steps.headers = response.headers();
  await page.locator("#api-key").waitFor();
  await screenshot("sign-in");

  // A wrong key: an error, and still signed out.
  await page.fill("#api-key", config.wrong_key);
  await page.click("#sign-in-form button[type=submit]");
  await page.locator("#sign-in-error").waitFor({ state: "visible" });
  seen.steps.wrong_key = {
    error: await page.textContent("#sign-in-error"),
    app_hidden: await page.locator("#app-view").isHidden(),
    storage: await storage(),
  };
  await screenshot("wrong-key");

  // The right key.
  await page.fill("#api-key", config.key);
  await page.click("#sign-in-form button[type=submit]");
  await page.locator("#app-view").waitFor({ state: "visible" });
  await page.locator(`#crawl-kb option[value="${config.kb}"]`).waitFor({ state: "attached" });
  seen.steps.signed_in = { storage: await storage(), key_field: await page.inputValue("#api-key") };
  await screenshot("signed-in");

  // A crawl from the form, followed until its bar is full.
  await page.fill("#crawl-url", config.url);
  await page.selectOption("#crawl-kb", config.kb);
  await page.fill("#crawl-limit", String(config.limit));
  await page.click("#crawl-form button[type=submit]");
  await page.waitForFunction(() => /^Task [0-9a-f]{32} /.test(document.getElementById("crawl-message").textContent));
  const message = await page.textContent("#crawl-message");
  const taskId = message.split(" ")[1];
  seen.steps.task_id = taskId;
  const row = page.locator(`#task-rows tr[data-task-id="${taskId}"]`);
  await row.waitFor();
  const deadline = Date.now() + 30000;
  let midShot = false;
  for (;;) {
    const now = await row.evaluate((tr) => ({
      status: tr.dataset.status,
      percent: Number(tr.dataset.percent),
      bar: tr.querySelector("progress").value,
    }));
    if (seen.percents.at(-1) !== now.percent) seen.percents.push(now.percent);
    if (!midShot && now.percent > 0 && now.percent < 100) {
      midShot = true;
      await screenshot("progress");
    }
    if (now.status === "completed") {
      seen.steps.completed = { ...now, text: await row.locator(".percent").textContent() };
      break;
    }
    if (Date.now() > deadline) throw new Error(`the task did not complete: ${JSON.stringify(now)}`);
    await page.waitForTimeout(100);
  }
  await screenshot("completed");

  // The usage chart shows today's pages.
  await page.waitForFunction(
    () => [...document.querySelectorAll("#usage-chart rect.bar")].some((bar) => Number(bar.dataset.value) > 0),
    null,
    { timeout: 20000 },
  );
  seen.steps.usage = await page.evaluate(() => ({
    bars: [...document.querySelectorAll("#usage-chart rect.bar")].map((bar) => Number(bar.dataset.value)),
    heights: [...document.querySelectorAll("#usage-chart rect.bar")].map((bar) => Number(bar.getAttribute("height"))),
    error_chart: document.getElementById("errors-chart").textContent,
    note: document.getElementById("usage-note").textContent,
  }));
  await page.locator("#usage").screenshot({ path: join(config.shots, "usage-chart.png") });

  // The task's pages: a rendered one, then the one with the hostile title.
  await row.locator("button.open-pages").click();
  await page.locator("#page-list li").first().waitFor();
  seen.steps.page_titles = await page.$$eval("#page-list button.page-link", (buttons) => buttons.map((b) => b.textContent));
  await page.locator("#page-list button.page-link", { hasText: "Guide" }).click();
  await page.locator("#page-view .markdown h1").waitFor();
  seen.steps.rendered = await page.evaluate(() => {
    const view = document.querySelector("#page-view .markdown");
    return {
      tags: [...new Set([...view.querySelectorAll("*")].map((node) => node.tagName.toLowerCase()))].sort(),
      h1: view.querySelector("h1").textContent,
      links: [...view.querySelectorAll("a")].map((a) => ({ href: a.getAttribute("href"), rel: a.rel, text: a.textContent })),
      text: view.textContent,
      items: view.querySelectorAll("li").length,
    };
  });
  await screenshot("page");
  await page.locator("#page-list button.page-link", { hasText: config.hostile_title }).click();
  await page.waitForFunction(
    (title) => document.querySelector("#page-view .page-title")?.textContent === title,
    config.hostile_title,
  );
  seen.steps.hostile = await page.evaluate(() => ({
    title: document.querySelector("#page-view .page-title").textContent,
    scripts: [...document.querySelectorAll("script")].map((s) => s.getAttribute("src")),
    body_text: document.querySelector("#page-view .markdown").textContent,
  }));
  await screenshot("hostile-title");

  // Signing out forgets the key and the tenant's data.
  await page.click("#sign-out");
  await page.locator("#sign-in-view").waitFor({ state: "visible" });
  seen.steps.signed_out = { storage: await storage(), rows: await page.locator("#task-rows tr").count() };
  await screenshot("signed-out");
}

try {
  await run();
} catch (error) {
  seen.failure = String(error && error.stack ? error.stack : error);
  await screenshot("failure").catch(() => {});
} finally {
  seen.violations = await page.evaluate(() => window.__violations).catch(() => ["(page gone)"]);
  await context.close();
}
console.log(JSON.stringify(seen));
