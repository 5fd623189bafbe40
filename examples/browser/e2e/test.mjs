// Drives the browser example in headless Chromium, as a user would: add a product online, go
// offline, add two more, reload the page with no network, come back online, and check that
// the server got all three exactly once and the page lists them as synced.
//
// Run by examples/browser/test.sh (which builds what it needs), or by hand:
//   node test.mjs    with BROWSER_EXAMPLE_SERVER (the `browser` example binary),
//                    BROWSER_EXAMPLE_DIST (build.sh's output) and BROWSER_EXAMPLE_SCREENSHOTS
//                    (where offline.png and synced.png go) set, or their defaults in
//                    $CARGO_TARGET_DIR or target/.
import { chromium } from "playwright-core";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { eventually, log, runTests } from "../../e2e-harness.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const target = resolve(root, process.env.CARGO_TARGET_DIR ?? "target");
const SERVER = process.env.BROWSER_EXAMPLE_SERVER ?? join(target, "debug/examples/browser");
const DIST = process.env.BROWSER_EXAMPLE_DIST ?? join(target, "browser-example");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOTS = process.env.BROWSER_EXAMPLE_SCREENSHOTS ?? join(target, "browser-e2e");
const TENANT = "demo-shop"; // the one tenant the page shows (app/src/ui.rs)

/** What the page shows: the indicator, the pending count, and the list. */
function readPage(page) {
  return page.evaluate(() => ({
    ready: document.body.dataset.ready === "true",
    controlled: navigator.serviceWorker.controller !== null,
    connection: document.querySelector("#connection").textContent,
    pending: document.querySelector("#pending").dataset.count,
    pendingText: document.querySelector("#pending").textContent,
    items: [...document.querySelectorAll("#products li[data-id]")].map((li) => ({
      id: li.dataset.id,
      name: li.querySelector(".name").textContent,
      price: li.querySelector(".price").textContent,
      waiting: li.classList.contains("waiting"),
    })),
  }));
}

async function serverProducts(url) {
  const response = await fetch(`${url}/products?tenant=${TENANT}`);
  assert.equal(response.status, 200, "GET /products");
  return response.json();
}

async function addProduct(page, name, price) {
  await page.fill("#name", name);
  await page.fill("#price", price);
  await page.click("#add-form button[type=submit]");
  await eventually(`"${name}" in the list`, async () =>
    (await readPage(page)).items.some((item) => item.name === name),
  );
}

const names = (products) => products.map((p) => p.name).sort();

async function offlineAddsSurviveAReloadAndSyncOnceOnline({ context, page, url }) {
  await page.goto(url);
  await eventually("the app to start under its service worker", async () => {
    const shown = await readPage(page);
    return shown.ready && shown.controlled && shown;
  });
  assert.equal((await readPage(page)).connection, "Online");
  log("page loaded, service worker in control, online");

  await addProduct(page, "Espresso", "2.50");
  assert.deepEqual(names(await serverProducts(url)), ["Espresso"], "the online add reached the server");
  assert.equal((await readPage(page)).pending, "0");
  log("online: Espresso added and on the server");

  await context.setOffline(true);
  await eventually("the offline indicator", async () => (await readPage(page)).connection === "Offline");
  // The network really is gone for the page, so what follows is not answered by the server.
  const probe = await page.evaluate(() =>
    fetch("/products?tenant=probe", { cache: "no-store" }).then(() => "reached the server", () => "failed"),
  );
  assert.equal(probe, "failed", "a request from the offline page");
  await addProduct(page, "Croissant", "2.10");
  await addProduct(page, "Latte", "3.20");
  let shown = await eventually("2 changes waiting", async () => {
    const now = await readPage(page);
    return now.pending === "2" && now;
  });
  assert.equal(shown.pendingText, "2 changes waiting");
  assert.deepEqual(
    shown.items.map((item) => [item.name, item.waiting]),
    [["Croissant", true], ["Espresso", false], ["Latte", true]],
  );
  assert.deepEqual(names(await serverProducts(url)), ["Espresso"], "offline adds reached the server");
  await page.screenshot({ path: join(SCREENSHOTS, "offline.png"), fullPage: true });
  log("offline: Croissant and Latte listed, 2 changes waiting, the server still has 1");

  const reload = await page.reload();
  assert.ok(reload?.fromServiceWorker(), "the offline reload was answered by the service worker");
  shown = await eventually("the app to start again offline", async () => {
    const now = await readPage(page);
    return now.ready && now;
  });
  assert.equal(shown.connection, "Offline");
  assert.equal(shown.pending, "2", "the queue survived the reload");
  assert.deepEqual(
    shown.items.map((item) => [item.name, item.price, item.waiting]),
    [["Croissant", "2.10", true], ["Espresso", "2.50", false], ["Latte", "3.20", true]],
  );
  log("reloaded offline (from the service worker): the 2 changes still wait");

  // Record whether "Syncing…" shows while the queue replays: the replay is quick, so watch
  // the attribute's changes rather than sample it.
  await page.evaluate(() => {
    const syncing = document.querySelector("#syncing");
    window.sawSyncing = false;
    new MutationObserver((changes) => {
      // A change whose old value is not null removed `hidden`: the badge was shown.
      if (changes.some((change) => change.oldValue !== null)) window.sawSyncing = true;
    }).observe(syncing, { attributeFilter: ["hidden"], attributeOldValue: true });
  });
  await context.setOffline(false);
  shown = await eventually("the queue to drain", async () => {
    const now = await readPage(page);
    return now.connection === "Online" && now.pending === "0" && now.items.every((i) => !i.waiting) && now;
  });
  const onServer = await serverProducts(url);
  assert.deepEqual(names(onServer), ["Croissant", "Espresso", "Latte"], "each product is on the server once");
  assert.deepEqual(
    shown.items.map((item) => item.id).sort(),
    onServer.map((p) => p.id).sort(),
    "the page and the server list the same products",
  );
  assert.equal(shown.pendingText, "All changes synced");
  assert.equal(await page.evaluate(() => window.sawSyncing), true, "the page showed Syncing…");
  await page.screenshot({ path: join(SCREENSHOTS, "synced.png"), fullPage: true });
  log("online again: synced; the server has all 3, once each");
}

const tests = [
  ["offline adds survive a reload and sync once back online", offlineAddsSurviveAReloadAndSyncOnceOnline],
];

runTests({
  name: "browser e2e",
  chromium,
  executablePath: CHROMIUM,
  server: { binary: SERVER, args: (db) => ["--addr", "127.0.0.1:0", "--dist", DIST, "--db", db] },
  screenshots: SCREENSHOTS,
  tests,
});
