#!/usr/bin/env bash
# The browser example's end-to-end test: builds the page (build.sh) and its server (the
# `browser` example), installs the test's one npm package (playwright-core, which drives the
# system's Chromium; it downloads no browser), and runs e2e/test.mjs in headless Chromium.
#
#   examples/browser/test.sh
#
# Installs what is missing on Debian: the wasm toolchain and Chromium (through build.sh), and
# Node.js with npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/examples/browser"
# Relative target directories are taken from the repository root, as scripts/test.sh runs.
target="$(cd "$root" && mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"

bash "$here/build.sh" --out "$target/browser-example"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build --example browser)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm; }
fi
(cd "$here/e2e" && npm ci --no-audit --no-fund --loglevel=error)

BROWSER_EXAMPLE_SERVER="$target/debug/examples/browser" \
  BROWSER_EXAMPLE_DIST="$target/browser-example" \
  BROWSER_EXAMPLE_SCREENSHOTS="$target/browser-e2e" \
  node "$here/e2e/test.mjs"
