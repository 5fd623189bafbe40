// The app shell's service worker: the page, its script, its wasm and its styles are cached
// when the worker installs, so the page loads with no network. Nothing else is handled here:
// API requests go to the network untouched (offline they fail, and the app answers from
// IndexedDB instead), so a cached answer can never pass for the server's.
const VERSION = "__BUILD__"; // build.sh stamps a hash of the files, so a new build re-caches
const CACHE = `todos-shell-${VERSION}`;
const SHELL = ["./", "./index.html", "./app.css", "./pkg/leptos_todo.js", "./pkg/leptos_todo_bg.wasm"];
const SHELL_PATHS = new Set(SHELL.map((path) => new URL(path, self.registration.scope).pathname));

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  // Drop older builds' shells and take over open pages at once, so the first visit is
  // already reloadable offline.
  const old = (key) => key.startsWith("todos-shell-") && key !== CACHE;
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter(old).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL_PATHS.has(url.pathname)) {
    return;
  }
  event.respondWith(
    caches.open(CACHE)
      .then((cache) => cache.match(event.request, { ignoreSearch: true }))
      .then((hit) => hit || fetch(event.request)),
  );
});
