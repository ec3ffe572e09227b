#!/usr/bin/env bash
# Builds the viewer that `hudd report` embeds: viewer/dist/hudd_viewer.js (wasm-bindgen's
# no-modules glue) and viewer/dist/hudd_viewer_bg.wasm. The `hudd` binary includes these committed
# files at compile time, so building hudd needs only the Rust toolchain; rerun this script (and
# commit viewer/dist/) after changing viewer/ or core/report/. CI rebuilds and checks that the
# committed files are current.
#
# Needs: rustup target add wasm32-unknown-unknown; cargo install wasm-bindgen-cli --version 0.2.130
# (the version must equal the wasm-bindgen crate's, pinned in Cargo.toml). No wasm-opt: Debian's
# breaks Leptos apps, and gzip in the bundle already shrinks the module 3-4×.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(grep -E '^wasm-bindgen = "=' Cargo.toml | sed -E 's/.*"=([0-9.]+)".*/\1/')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "viewer/build.sh: wasm-bindgen CLI $want is needed (found: ${have:-none});" >&2
  echo "  install it with: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
# The module must not depend on where the checkout or the cargo home is, so that every machine
# builds the same bytes: paths (panic locations) are remapped, and the cargo home is reached
# through one fixed path because a Leptos dependency (wasm_split_macros) hashes its absolute
# manifest path into a symbol name.
real_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd)
fixed_home=/tmp/hudd-viewer-cargo-home
if [ -e "$fixed_home" ] && [ ! -L "$fixed_home" ]; then
  echo "viewer/build.sh: $fixed_home exists and is not a symbolic link; remove it" >&2
  exit 1
fi
ln -sfn "$real_home" "$fixed_home"
export CARGO_HOME=$fixed_home
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="--remap-path-prefix=$fixed_home=/cargo --remap-path-prefix=$PWD=/hudd"
cargo build -p hudd-viewer --target wasm32-unknown-unknown --profile viewer --locked
wasm-bindgen --target no-modules --no-typescript --remove-name-section --remove-producers-section \
  --out-dir viewer/dist \
  target/wasm32-unknown-unknown/viewer/hudd_viewer.wasm
ls -l viewer/dist
