// The harness both browser end-to-end tests share (examples/browser/e2e and
// examples/leptos-todo/e2e): start the example's server, wait for conditions, and run test
// cases in headless Chromium, each in a fresh browser context, printing one closing line
// "e2e: N passed, N failed". It imports nothing outside Node's own modules: each test passes in
// the `chromium` of its own playwright-core.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const STEP_TIMEOUT = 20_000;
const started = Date.now();

/** Prints a line with the time since the run started. */
export const log = (line) => console.log(`  [${((Date.now() - started) / 1000).toFixed(1)}s] ${line}`);

const describe = (value) => (value instanceof Error ? value.message : JSON.stringify(value));

/** Waits until `check` returns a truthy value; fails with `what` and the last value seen. */
export async function eventually(what, check, timeout = STEP_TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what} (last seen: ${describe(last)})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts `binary` with `args`; resolves with the child and the address it prints. */
function startServer(binary, args) {
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolvePromise, reject) => {
    let output = "";
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`the server exited (${code}) before listening`)));
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      output += chunk;
      const found = output.match(/listening on (http:\/\/\S+)/);
      if (found) resolvePromise({ child, url: found[1] });
    });
  });
}

/**
 * Runs `tests` ([name, async ({ context, page, url }) => ...] pairs) against a server started
 * from `server` ({ binary, args: (databasePath) => [...] }) on a throwaway database, in
 * headless Chromium (`executablePath`), and sets the process's exit code. Gives up after
 * `timeout` ms.
 */
export function runTests({ name, chromium, executablePath, server, screenshots, tests, timeout = 120_000 }) {
  let serverChild; // killed on every way out, the give-up timer's included
  async function main() {
    mkdirSync(screenshots, { recursive: true });
    const scratch = mkdtempSync(join(tmpdir(), `${name}-`));
    const running = await startServer(server.binary, server.args(join(scratch, "server.sqlite3")));
    serverChild = running.child;
    const browser = await chromium.launch({
      executablePath,
      headless: true,
      // Without the background-networking flags, Chromium keeps trying to reach Google's
      // services, which this machine refuses; everything the test needs is on 127.0.0.1.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    let passed = 0;
    let failed = 0;
    try {
      for (const [title, run] of tests) {
        const context = await browser.newContext();
        const page = await context.newPage();
        const problems = [];
        page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
        page.on("console", (message) => {
          if (message.type() === "error") problems.push(`console: ${message.text()}`);
        });
        console.log(`test: ${title}`);
        try {
          await run({ context, page, url: running.url });
          passed += 1;
          console.log(`ok: ${title}`);
        } catch (error) {
          failed += 1;
          console.log(`FAILED: ${title}\n  ${error.stack ?? error}`);
          for (const problem of problems) console.log(`  ${problem}`);
          await page.screenshot({ path: join(screenshots, "failure.png"), fullPage: true }).catch(() => {});
        }
        await context.close();
      }
    } finally {
      await browser.close();
      running.child.kill("SIGTERM");
      rmSync(scratch, { recursive: true, force: true });
    }
    console.log(`${name} took ${((Date.now() - started) / 1000).toFixed(1)}s`);
    console.log(`e2e: ${passed} passed, ${failed} failed`);
    return failed === 0;
  }

  const timer = setTimeout(() => {
    console.log(`${name}: gave up after ${timeout / 1000}s`);
    serverChild?.kill("SIGTERM");
    process.exit(1);
  }, timeout);
  main().then(
    (ok) => {
      clearTimeout(timer);
      process.exitCode = ok ? 0 : 1;
    },
    (error) => {
      clearTimeout(timer);
      console.log(`${name}: could not run: ${error.stack ?? error}`);
      process.exitCode = 1;
    },
  );
}
