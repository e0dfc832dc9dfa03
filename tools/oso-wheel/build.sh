#!/usr/bin/env bash
# Builds oso 0.27.3's Python wheel from its sources for another CPython (3.13 by default), with no access to
# crates.io: the Rust crates come from Debian's packages (librust-*-dev, in /usr/share/cargo/registry).
# docs/oso-runway.md explains each step. Usage, as root on Debian 12 (bookworm):
#   tools/oso-wheel/build.sh [PYTHON]    # e.g. /root/.pyenv/versions/3.13.0/bin/python3.13; wheel in dist/oso/
# OSO_SRC: a checkout of https://github.com/osohq/oso at v0.27.3 (cloned when unset).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${1:-python3.13}"
out="$root/dist/oso"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1. Toolchain and crates: Debian's. lalrpop and strum_macros are older there (0.19.8 and 0.19.2 where oso asks
#    for ^0.19.9 and ^0.24): polar-core builds with both, and the conformance suite decides whether it works.
crates=(librust-lalrpop-dev librust-lalrpop-util-dev librust-serde-dev librust-serde-derive-dev
        librust-serde-json-dev librust-indoc-dev librust-strum-macros-dev librust-cbindgen-dev)
missing=()
for package in cargo "${crates[@]}"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The sources of the release, only the crates the C API needs (the workspace's others need more crates).
if [ -z "${OSO_SRC:-}" ]; then
  git clone --quiet --depth 1 --branch v0.27.3 https://github.com/osohq/oso "$work/checkout"
  OSO_SRC="$work/checkout"
fi
mkdir -p "$work/src"
(cd "$OSO_SRC" && tar -c polar-core polar-c-api languages/python/oso README.md) | tar -x -C "$work/src"
cd "$work/src"
rm polar-core/README.md && cp README.md polar-core/README.md  # a symbolic link to ../README.md in the repository
cat > Cargo.toml <<'TOML'
[workspace]
members = ["polar-core", "polar-c-api"]
resolver = "1"
TOML
mkdir -p .cargo
cat > .cargo/config.toml <<'TOML'
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "/usr/share/cargo/registry"
[net]
offline = true
TOML
# oso asks for cffi~=1.15 (below 2.0): cffi 1.17 has no wheel for CPython 3.14, cffi 2 has.
sed -i "s/^cffi~=1.15$/cffi>=1.15,<3/" languages/python/oso/requirements.txt
"$python" - polar-core/Cargo.toml <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = text.replace('version = "0.19.9"', 'version = "0.19.8"').replace('strum_macros = "0.24.0"', 'strum_macros = "0.19"')
# Tests, benchmarks and the wasm target need crates Debian does not have; the library does not.
for table in (r"\[dev-dependencies\]", r"\[\[bench\]\]", r"\[target\.'cfg\(target_arch = \"wasm32\"\)'\.dependencies\]"):
    text = re.sub(table + r".*?(?=\n\[)", "", text, flags=re.S)
open(path, "w").write(text)
PY

# 3. The static library and its header (cbindgen, in polar-c-api's build script).
cargo build --release --offline --quiet -p polar-c-api

# 4. The CFFI module against it, then the wheel, for the chosen Python.
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "cffi>=1.17" setuptools wheel
mkdir -p "$out"
(cd languages/python/oso && OSO_ENV=RELEASE "$work/venv/bin/pip" wheel --quiet --no-build-isolation --no-deps -w "$out" .)
ls "$out"/oso-0.27.3-*.whl
