# Shared by the scripts in this directory (sourced, not run): system
# packages, how RocksDB is built, and where cargo puts build output.

ekv_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ekv_log() { printf '==> %s\n' "$*" >&2; }

ekv_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs whichever of the given Debian/Ubuntu packages are missing.
ekv_need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "elastickv needs these packages, and apt-get is not available: ${missing[*]}" >&2
    return 1
  fi
  ekv_log "installing system packages: ${missing[*]}"
  ekv_sudo apt-get update -qq
  ekv_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# RocksDB: link the distribution's librocksdb when it is the 7.x series
# whose C API the pinned rocksdb crate (0.20, RocksDB 7.9) was written for
# (Debian bookworm ships 7.8.3): a 13 s build. Otherwise build the RocksDB
# sources bundled with the crate: 10-20 minutes once, then cached in the
# target directory. README.md, "Building", explains the choice.
ekv_prepare_rocksdb() {
  local candidate
  candidate=$(apt-cache policy librocksdb-dev 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -f /usr/include/rocksdb/version.h ] || [[ "$candidate" == 7.* ]]; then
    ekv_need_packages librocksdb-dev
  fi
  local major="" minor="" lib=""
  if [ -f /usr/include/rocksdb/version.h ]; then
    major=$(awk '/#define ROCKSDB_MAJOR/ {print $3}' /usr/include/rocksdb/version.h)
    minor=$(awk '/#define ROCKSDB_MINOR/ {print $3}' /usr/include/rocksdb/version.h)
    lib=$(ls /usr/lib/*/librocksdb.so /usr/lib/librocksdb.so 2>/dev/null | head -n 1 || true)
  fi
  if [ "$major" = 7 ] && [ -n "$lib" ]; then
    export ROCKSDB_LIB_DIR
    ROCKSDB_LIB_DIR=$(dirname "$lib")
    export ROCKSDB_INCLUDE_DIR=/usr/include
    ekv_log "RocksDB: linking the system library $major.$minor ($lib)"
  else
    unset ROCKSDB_LIB_DIR ROCKSDB_INCLUDE_DIR
    ekv_log "RocksDB: no system RocksDB 7.x; building the bundled sources (10-20 minutes the first time)"
  fi
}

# Everything a build needs: a C/C++ toolchain, libclang for bindgen,
# RocksDB; and a target directory outside the source tree, so a fresh clone
# (as in CI) reuses earlier build output instead of starting cold.
ekv_prepare_build() {
  ekv_need_packages build-essential clang libclang-dev
  ekv_prepare_rocksdb
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/elastickv/target}"
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not on PATH; install Rust (https://rustup.rs) first" >&2
    return 1
  fi
  cd "$ekv_root" || return 1
}
