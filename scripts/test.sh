#!/usr/bin/env bash
# Runs every test: native (unit, integration, trybuild UI, end-to-end; the server half's
# PostgreSQL tests against a throwaway cluster that scripts/postgres.sh starts), then the runtime's
# browser tests in headless Chromium, then the end-to-end tests of the browser example and
# of the Leptos todo example (offline, reload, sync) in headless Chromium. Installs what it
# needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== native tests (with a throwaway PostgreSQL cluster)"
# postgres.sh sets SYNC_TEST_POSTGRES_URL; with CI set, a PostgreSQL test that finds no
# SYNC_TEST_POSTGRES_URL fails instead of skipping.
bash scripts/postgres.sh bash -c '
  set -euo pipefail
  cargo test --workspace --all-targets
  cargo test --workspace --doc
'

echo "== browser tests (headless Chromium)"
# shellcheck source=scripts/wasm-toolchain.sh
source scripts/wasm-toolchain.sh
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/wasm" \
  cargo +debweb test -p sync-runtime --lib --tests --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort

echo "== browser example end-to-end (headless Chromium)"
bash examples/browser/test.sh

echo "== Leptos todo example end-to-end (headless Chromium)"
bash examples/leptos-todo/test.sh
