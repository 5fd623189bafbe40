#!/usr/bin/env bash
# The Leptos todo example's end-to-end test: builds the page (build.sh) and the server,
# installs the test's one npm package (playwright-core, which drives the system's Chromium;
# it downloads no browser), and runs e2e/test.mjs in headless Chromium.
#
#   examples/leptos-todo/test.sh
#
# Installs what is missing on Debian: the wasm toolchain and Chromium (through build.sh), and
# Node.js with npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/examples/leptos-todo"
# Relative target directories are taken from the repository root, as scripts/test.sh runs.
target="$(cd "$root" && mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"

bash "$here/build.sh" --out "$target/leptos-todo"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build -p leptos-todo --bin leptos-todo-server)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; }
fi
(cd "$here/e2e" && npm ci --no-audit --no-fund --loglevel=error)

LEPTOS_TODO_SERVER="$target/debug/leptos-todo-server" \
  LEPTOS_TODO_DIST="$target/leptos-todo" \
  LEPTOS_TODO_SCREENSHOTS="$target/leptos-todo-e2e" \
  node "$here/e2e/test.mjs"
