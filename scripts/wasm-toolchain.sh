#!/usr/bin/env bash
# Installs what the browser tests need on a Debian bookworm machine, then exports the
# environment for building to wasm32 and running tests in headless Chromium.
#
# Source it:  source scripts/wasm-toolchain.sh
#
# - The wasm32 target comes from Debian's rustc-web (with its std source, rust-web-src) and is
#   built with -Zbuild-std, so rustup needs no download. RUSTC_BOOTSTRAP=1 allows -Z flags.
# - Debian's rustc has no rust-lld, so the linker is wasm-ld-22 (package lld-22).
# - wasm-bindgen-cli must match the `wasm-bindgen` version pinned in sync-runtime/Cargo.toml.
# - Chromium and ChromeDriver come from Debian.
set -euo pipefail

WASM_BINDGEN_VERSION="0.2.130"
export DEBIAN_FRONTEND=noninteractive

need_apt=0
command -v wasm-ld-22 >/dev/null || need_apt=1
command -v chromedriver >/dev/null || need_apt=1
[ -d /usr/lib/rustlib/src/rust/library ] || need_apt=1
if [ "$need_apt" = 1 ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends \
    rustc-web cargo-web rust-web-src lld-22 chromium chromium-driver
fi

rustup toolchain list | grep -q '^debweb' || rustup toolchain link debweb /usr

if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION"; then
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=/usr/bin/chromedriver
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"
