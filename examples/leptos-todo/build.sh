#!/usr/bin/env bash
# Builds the todo app's page into a directory its server serves: index.html, app.css, sw.js
# (stamped with a hash of the build) and pkg/ (the wasm app and its JavaScript glue, from
# wasm-bindgen).
#
#   examples/leptos-todo/build.sh [--release] [--out DIR]
#
# DIR defaults to leptos-todo in the target directory ($CARGO_TARGET_DIR or target/).
# Installs the wasm toolchain when it is missing (scripts/wasm-toolchain.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
# Relative target directories are taken from the repository root, as scripts/test.sh runs.
target="$(cd "$root" && mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"
profile=dev
out="$target/leptos-todo"
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    --out) out="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# shellcheck source=scripts/wasm-toolchain.sh
source "$root/scripts/wasm-toolchain.sh"
target_dir="$target/wasm"
(cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo +debweb build -p leptos-todo --lib \
  --profile "$profile" --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort)
[ "$profile" = dev ] && dir=debug || dir="$profile"

rm -rf "$out.tmp"
mkdir -p "$out.tmp/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$out.tmp/pkg" \
  "$target_dir/wasm32-unknown-unknown/$dir/leptos_todo.wasm"
static="$root/examples/leptos-todo/static"
cp "$static/index.html" "$static/app.css" "$out.tmp/"
# A new build must reach browsers that cached the last one: the service worker's cache name
# carries a hash of everything it caches, so a changed file installs a new worker.
build="$(cat "$out.tmp/index.html" "$out.tmp/app.css" "$out.tmp"/pkg/* | sha256sum | cut -c1-16)"
sed "s/__BUILD__/$build/" "$static/sw.js" >"$out.tmp/sw.js"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "built $out ($profile, $(du -h "$out/pkg/leptos_todo_bg.wasm" | cut -f1) of wasm)"
