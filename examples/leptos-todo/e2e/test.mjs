// Drives the Leptos todo example in headless Chromium, as a user would: add a todo online;
// toggle it while its response is lost on the way back; go offline, add two, toggle one,
// delete one; reload the page with no network; come back online; and check that the server
// applied every action exactly once and the page says everything is synced.
//
// Run by examples/leptos-todo/test.sh (which builds what it needs), or by hand:
//   node test.mjs    with LEPTOS_TODO_SERVER (the `leptos-todo-server` binary),
//                    LEPTOS_TODO_DIST (build.sh's output) and LEPTOS_TODO_SCREENSHOTS
//                    (where offline.png and synced.png go) set, or their defaults in
//                    $CARGO_TARGET_DIR or target/.
import { chromium } from "playwright-core";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { eventually, log, runTests } from "../../e2e-harness.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const target = resolve(root, process.env.CARGO_TARGET_DIR ?? "target");
const SERVER = process.env.LEPTOS_TODO_SERVER ?? join(target, "debug/leptos-todo-server");
const DIST = process.env.LEPTOS_TODO_DIST ?? join(target, "leptos-todo");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOTS = process.env.LEPTOS_TODO_SCREENSHOTS ?? join(target, "leptos-todo-e2e");

/** What the page shows: the indicator, the pending count, and the list. */
function readPage(page) {
  return page.evaluate(() => {
    const text = (selector) => document.querySelector(selector)?.textContent ?? null;
    return {
      controlled: navigator.serviceWorker.controller !== null,
      connection: text("#connection"),
      pending: document.querySelector("#pending")?.dataset.count ?? null,
      pendingText: text("#pending"),
      items: [...document.querySelectorAll("#todos li[data-id]")].map((li) => ({
        id: li.dataset.id,
        title: li.querySelector(".title").textContent,
        done: li.dataset.done === "true",
      })),
    };
  });
}

/** The server's todos and how many actions it applied (the applied-actions records). */
async function serverState(url) {
  const response = await fetch(`${url}/test/state`);
  assert.equal(response.status, 200, "GET /test/state");
  return response.json();
}

const titles = (todos) => todos.map((t) => [t.title, t.done]);

async function item(page, title) {
  return eventually(`"${title}" in the list`, async () =>
    (await readPage(page)).items.find((i) => i.title === title),
  );
}

async function addTodo(page, title) {
  await page.fill("#title", title);
  await page.click("#add-form button[type=submit]");
  return item(page, title);
}

async function toggle(page, title, done) {
  await page.click(`#todos li:has(.title:text-is("${title}")) .toggle`);
  await eventually(`"${title}" shown ${done ? "done" : "not done"}`, async () =>
    (await readPage(page)).items.find((i) => i.title === title)?.done === done,
  );
}

async function offlineChangesSyncOnceAfterAReload({ context, page, url }) {
  await page.goto(url);
  await eventually("the app to start under its service worker", async () => {
    const shown = await readPage(page);
    return shown.controlled && shown.connection === "Online" && shown;
  });
  log("page loaded, service worker in control, online");

  await addTodo(page, "Buy milk");
  let server = await serverState(url);
  assert.deepEqual(titles(server.todos), [["Buy milk", false]], "the online add reached the server");
  assert.equal(server.applied, 1);
  log("online: Buy milk added, on the server");

  // A toggle whose response is lost: the server applies it, the page never hears back. The
  // page queues it and replays it with the same action id; the server must not flip twice.
  let lost = 0;
  await page.route("**/api/toggle_todo*", async (route) => {
    if (lost > 0) return route.continue();
    lost += 1;
    await route.fetch(); // reaches the server, which applies the toggle
    await route.abort("connectionreset");
  });
  await toggle(page, "Buy milk", true);
  server = await eventually("the lost toggle to be replayed", async () => {
    const now = await serverState(url);
    const shown = await readPage(page);
    return now.applied === 2 && shown.pending === "0" && now;
  });
  assert.equal(lost, 1, "the first toggle's response was dropped");
  assert.deepEqual(titles(server.todos), [["Buy milk", true]], "the toggle was applied once, not twice");
  await page.unroute("**/api/toggle_todo*");
  log("a toggle whose response was lost: replayed, applied once");

  await context.setOffline(true);
  await eventually("the offline indicator", async () => (await readPage(page)).connection === "Offline");
  await addTodo(page, "Walk the dog");
  await addTodo(page, "Write the report");
  await toggle(page, "Walk the dog", true);
  await page.click('#todos li:has(.title:text-is("Buy milk")) .delete');
  // Waiting: the 4 changes, and one refresh of the list (a query answered locally offline
  // queues one refresh; the status counts it too).
  let shown = await eventually("Buy milk gone and 5 calls waiting", async () => {
    const now = await readPage(page);
    return !now.items.some((i) => i.title === "Buy milk") && now.pending === "5" && now;
  });
  assert.equal(shown.pendingText, "5 changes waiting");
  assert.deepEqual(titles(shown.items), [["Walk the dog", true], ["Write the report", false]]);
  server = await serverState(url);
  assert.deepEqual(titles(server.todos), [["Buy milk", true]], "offline changes reached the server");
  await page.screenshot({ path: join(SCREENSHOTS, "offline.png"), fullPage: true });
  log("offline: added 2, toggled 1, deleted 1; 5 calls waiting; the server unchanged");

  const reload = await page.reload();
  assert.ok(reload?.fromServiceWorker(), "the offline reload was answered by the service worker");
  shown = await eventually("the app to start again offline with its list", async () => {
    const now = await readPage(page);
    return now.connection === "Offline" && now.items.length === 2 && now;
  });
  assert.equal(shown.pending, "5", "the queue survived the reload");
  assert.deepEqual(titles(shown.items), [["Walk the dog", true], ["Write the report", false]]);
  log("reloaded offline (from the service worker): the list and the queue are still there");

  await context.setOffline(false);
  shown = await eventually("the queue to drain", async () => {
    const now = await readPage(page);
    return now.connection === "Online" && now.pending === "0" && now;
  });
  server = await serverState(url);
  assert.deepEqual(
    titles(server.todos),
    [["Walk the dog", true], ["Write the report", false]],
    "the server holds exactly the expected todos",
  );
  assert.equal(server.applied, 6, "each of the 6 actions applied once");
  shown = await eventually("the page to list what the server has", async () => {
    const now = await readPage(page);
    return JSON.stringify(titles(now.items)) === JSON.stringify(titles(server.todos)) && now;
  });
  assert.deepEqual(shown.items.map((i) => i.id), server.todos.map((t) => t.id), "the same ids");
  assert.equal(shown.pendingText, "All changes synced");
  await page.screenshot({ path: join(SCREENSHOTS, "synced.png"), fullPage: true });
  log("online again: synced; the server applied each action once");
}


const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function closingThePageMidReplayLosesNothing({ context, page, url }) {
  await page.goto(url);
  await eventually("the app to start under its service worker", async () => {
    const shown = await readPage(page);
    return shown.controlled && shown.connection === "Online" && shown;
  });
  const before = await serverState(url);
  await context.setOffline(true);
  await eventually("the offline indicator", async () => (await readPage(page)).connection === "Offline");
  const titlesAdded = ["Pack", "Label", "Ship", "Invoice"];
  for (const title of titlesAdded) await addTodo(page, title);
  await eventually("the calls to wait", async () => Number((await readPage(page)).pending) >= 4);

  // Slow answers: the server applies each call at once, the page hears back 400 ms later.
  // Closing the page in between loses the answers of calls the server already applied.
  await context.route("**/api/add_todo*", async (route) => {
    const response = await route.fetch();
    await sleep(400);
    await route.fulfill({ response }).catch(() => {}); // the page may be gone by now
  });
  await context.setOffline(false);
  await eventually("the replay to be under way", async () => (await serverState(url)).applied > before.applied);
  await page.close();
  const appliedAtClose = (await serverState(url)).applied - before.applied;
  assert.ok(appliedAtClose < titlesAdded.length, `closed mid-replay (${appliedAtClose} applied)`);
  log(`closed the page mid-replay, with ${appliedAtClose} of ${titlesAdded.length} calls applied`);
  await context.unroute("**/api/add_todo*");

  const reopened = await context.newPage();
  await reopened.goto(url);
  const shown = await eventually("the reopened page to finish the replay", async () => {
    const now = await readPage(reopened);
    const server = await serverState(url);
    return now.connection === "Online" && now.pending === "0" && server.applied === before.applied + titlesAdded.length && now;
  });
  const server = await serverState(url);
  const added = server.todos.filter((t) => titlesAdded.includes(t.title)).map((t) => t.title);
  assert.deepEqual(added, titlesAdded, "each call applied once, in the order it was made");
  await eventually("the reopened page to list what the server has", async () => {
    const now = await readPage(reopened);
    return JSON.stringify(titles(now.items)) === JSON.stringify(titles(server.todos));
  });
  assert.equal(shown.pendingText, "All changes synced");
  log("reopened: the replay finished; nothing lost, nothing applied twice");
}

const tests = [
  ["offline changes survive a reload and sync once, a lost response included", offlineChangesSyncOnceAfterAReload],
  ["closing the page mid-replay loses nothing and applies nothing twice", closingThePageMidReplayLosesNothing],
];

runTests({
  name: "leptos e2e",
  chromium,
  executablePath: CHROMIUM,
  server: { binary: SERVER, args: (db) => ["--addr", "127.0.0.1:0", "--dist", DIST, "--db", db] },
  screenshots: SCREENSHOTS,
  tests,
});
