#!/usr/bin/env bash
# Row 5 of BENCHMARKS.md: what #[offline_action] costs at compile time.
#
# Generates three library crates in a temporary directory, each with N functions of the same
# shape (three arguments, a struct result, the same body):
#   offline_actions  N `#[offline_action]` fns (sync-runtime from this repository)
#   plain_fns        N plain `async fn`s, each with a serde-derived params struct
#   server_fns       N `#[server]` fns of the `server_fn` crate (crates.io; server side, `ssr`)
# Builds each one's dependencies once (its own target directory), then, in interleaved runs:
#   clean        `cargo clean -p <crate>` then `cargo build` (dev profile): the crate alone
#   incremental  edit a string in one function's body, then `cargo build`
# and prints the median of each with ratios.
#
# Run: bash benches/compile_time.sh            (N=200 RUNS=3 by default)
#      N=50 RUNS=1 bash benches/compile_time.sh (quicker)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
N="${N:-200}"
RUNS="${RUNS:-3}"
SERVER_FN_VERSION="${SERVER_FN_VERSION:-0.8}" # a version requirement; the build prints what it got
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/compile-time.XXXXXX")}"
CRATES=(offline_actions plain_fns server_fns)
EDITED=$(((N + 1) / 2)) # the function whose body the incremental build edits
export CARGO_TERM_COLOR=never
unset CARGO_TARGET_DIR RUSTFLAGS
echo "work directory: $WORK (N=$N, RUNS=$RUNS)"

common_items() {
  cat <<'EOF'
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: u32,
    pub name: String,
}
EOF
}

generate_offline_actions() {
  local dir="$WORK/offline_actions"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "offline_actions"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
sync-runtime = { path = "$ROOT/sync-runtime" }
serde = { version = "1", features = ["derive"] }
thiserror = "2"

[workspace]
EOF
  # The repository's lock file, so the runtime's dependencies are the versions it is tested with.
  cp "$ROOT/Cargo.lock" "$dir/Cargo.lock"
  {
    common_items
    cat <<'EOF'
use sync_runtime::{offline_action, ClassifyError, SyncError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("network: {0}")]
    Network(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl ClassifyError for AppError {
    fn is_transient(&self) -> bool {
        matches!(self, AppError::Network(_))
    }
}
EOF
    for i in $(seq 1 "$N"); do
      cat <<EOF

/// Action $i.
#[offline_action]
pub async fn action_$i(tenant_id: String, name: String, count: u32) -> Result<Item, AppError> {
    Ok(Item { id: $i, name: format!("{tenant_id}/{name}/{count}/f$i-v0") })
}
EOF
    done
  } >"$dir/src/lib.rs"
}

generate_plain_fns() {
  local dir="$WORK/plain_fns"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "plain_fns"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
thiserror = "2"

[workspace]
EOF
  cp "$ROOT/Cargo.lock" "$dir/Cargo.lock"
  {
    common_items
    cat <<'EOF'

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("network: {0}")]
    Network(String),
}
EOF
    for i in $(seq 1 "$N"); do
      cat <<EOF

/// The arguments of [\`action_$i\`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Action${i}Params {
    pub tenant_id: String,
    pub name: String,
    pub count: u32,
}

/// Action $i.
pub async fn action_$i(tenant_id: String, name: String, count: u32) -> Result<Item, AppError> {
    Ok(Item { id: $i, name: format!("{tenant_id}/{name}/{count}/f$i-v0") })
}
EOF
    done
  } >"$dir/src/lib.rs"
}

generate_server_fns() {
  local dir="$WORK/server_fns"
  mkdir -p "$dir/src"
  # Server functions as an axum app's server build compiles them (`ssr`): the body, the
  # argument struct, the codec impls, the inventory registration, and the client stub (the
  # macro always emits one; `browser` provides its default client type).
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "server_fns"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
server_fn = { version = "$SERVER_FN_VERSION", features = ["axum-no-default", "browser"] }
server_fn_macro_default = { version = "$SERVER_FN_VERSION", features = ["ssr", "axum"] }
serde = { version = "1", features = ["derive"] }

[workspace]
EOF
  {
    common_items
    cat <<'EOF'
use server_fn::ServerFnError;
use server_fn_macro_default::server;
EOF
    for i in $(seq 1 "$N"); do
      cat <<EOF

/// Action $i.
#[server]
pub async fn action_$i(tenant_id: String, name: String, count: u32) -> Result<Item, ServerFnError> {
    Ok(Item { id: $i, name: format!("{tenant_id}/{name}/{count}/f$i-v0") })
}
EOF
    done
  } >"$dir/src/lib.rs"
}

build() { # crate -> seconds
  local crate="$1" start end
  start=$(date +%s%N)
  (cd "$WORK/$crate" && CARGO_TARGET_DIR="$WORK/target-$crate" cargo build --quiet 2>"$WORK/$crate.log") || {
    cat "$WORK/$crate.log" >&2
    return 1
  }
  end=$(date +%s%N)
  echo "scale=3; ($end - $start) / 1000000000" | bc
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

generate_offline_actions
generate_plain_fns
generate_server_fns

for crate in "${CRATES[@]}"; do
  echo "building $crate and its dependencies once..."
  build "$crate" >/dev/null
done

echo "server_fns uses: $(grep -A1 -E '^name = "server_fn(_macro_default)?"$' "$WORK/server_fns/Cargo.lock" | grep -o '"[0-9.]*"' | tr -d '"' | paste -sd' ' | sed 's/^/server_fn /; s/ / + server_fn_macro_default /2')"
echo "rustc: $(rustc --version)"

declare -A CLEAN INCR
for run in $(seq 1 "$RUNS"); do
  for crate in "${CRATES[@]}"; do
    (cd "$WORK/$crate" && CARGO_TARGET_DIR="$WORK/target-$crate" cargo clean --quiet -p "$crate")
    clean=$(build "$crate")
    # One function's body changes, as when editing it.
    sed -i "s|/f$EDITED-v[0-9]*\")|/f$EDITED-v$run\")|" "$WORK/$crate/src/lib.rs"
    incr=$(build "$crate")
    CLEAN[$crate]+="$clean "
    INCR[$crate]+="$incr "
    echo "run $run: $crate clean ${clean}s, incremental ${incr}s"
  done
done

printf '\n## compile time, %s functions (dev profile, medians of %s runs)\n' "$N" "$RUNS"
printf '  %-18s %10s %14s %16s %20s\n' crate "clean s" "incremental s" "clean vs plain" "clean vs server_fn"
declare -A MC MI
for crate in "${CRATES[@]}"; do
  MC[$crate]=$(tr ' ' '\n' <<<"${CLEAN[$crate]}" | grep . | median)
  MI[$crate]=$(tr ' ' '\n' <<<"${INCR[$crate]}" | grep . | median)
done
for crate in "${CRATES[@]}"; do
  printf '  %-18s %10.2f %14.2f %15.2fx %19.2fx\n' "$crate" "${MC[$crate]}" "${MI[$crate]}" \
    "$(echo "${MC[$crate]} / ${MC[plain_fns]}" | bc -l)" \
    "$(echo "${MC[$crate]} / ${MC[server_fns]}" | bc -l)"
done
# Each run times the three crates back to back, so the ratio within a run cancels most of
# the load other work puts on the machine; report the median of those per-run ratios.
ratios() { # "a b c" "x y z" -> median of a/x, b/y, c/z
  paste <(tr ' ' '\n' <<<"$1" | grep .) <(tr ' ' '\n' <<<"$2" | grep .) |
    awk '{ printf "%.4f\n", $1 / $2 }' | median
}
printf '  => offline_actions vs server_fns (median of per-run ratios): clean %.2fx, incremental %.2fx (target <= 1.00x)\n' \
  "$(ratios "${CLEAN[offline_actions]}" "${CLEAN[server_fns]}")" \
  "$(ratios "${INCR[offline_actions]}" "${INCR[server_fns]}")"
printf '  => offline_actions vs plain_fns (median of per-run ratios): clean %.2fx, incremental %.2fx\n' \
  "$(ratios "${CLEAN[offline_actions]}" "${CLEAN[plain_fns]}")" \
  "$(ratios "${INCR[offline_actions]}" "${INCR[plain_fns]}")"
