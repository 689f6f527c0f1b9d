#!/usr/bin/env bash
# Provision CPython 3.14 (GIL build) and a venv holding upstream BlazeFL 3.0.0,
# for benchmarks/blazefl_differential.py, which runs the same FedAvg through
# BlazeFL 3.0 itself and through this project's BlazeFL classes. BlazeFL 3.0.0
# requires Python >= 3.14; this project runs on 3.11, so the two never share an
# interpreter. Not part of the default test suite. Idempotent: finished steps
# are skipped, so a second run takes seconds.
#
#   scripts/provision-blazefl3.sh        # prints the venv's python at the end
#
# 1. Interpreter: unpacked, not built. Debian's source archive has no 3.14
#    sources, but sid's binary .debs download. A private APT configuration
#    (its own sources list with sid only, its own state and cache folders; the
#    system's apt state is never touched and nothing from sid is installed
#    into the system) downloads python3.14, libpython3.14-minimal/stdlib,
#    libc6 and their library dependencies; `dpkg -x` unpacks them into one
#    folder. sid's binaries need a newer glibc than bookworm's, so patchelf
#    points the interpreter at that folder's loader and gives it an rpath into
#    its libraries (no LD_LIBRARY_PATH: child processes stay clean).
#    Acquire::Check-Valid-Until=false because sid's Release file reads as
#    expired against this machine's clock.
# 2. pip by hand: Debian's python3.14 has no ensurepip. The pip wheel from the
#    registry, run as `python pip.whl/pip install pip`.
# 3. venv with torch (for 3.14 the registry's CUDA build: ~4.7 GB) and
#    blazefl[contrib,reproducibility]==3.0.0, kept apart from this project's .venv.
#
# Environment (optional):
#   BLAZEFL3_CACHE  where everything goes. Default ~/.cache/blazefl3.
#   BLAZEFL3_TORCH  torch pip spec. Default torch==2.13.0.
set -euo pipefail

cache=${BLAZEFL3_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/blazefl3}
torch_spec=${BLAZEFL3_TORCH:-torch==2.13.0}
aptx=$cache/apt          # private apt state, lists, archives
debs=$cache/debs         # downloaded .debs
root=$cache/root         # dpkg -x target: the unpacked interpreter and its libs
venv=$cache/venv         # python 3.14 venv with blazefl 3.0.0
tools=$cache/tools       # patchelf, unpacked from bookworm's .deb
py=$root/usr/bin/python3.14

die() {
  echo "provision-blazefl3: error: $*" >&2
  exit 1
}
say() { echo "provision-blazefl3: $*" >&2; }

mkdir -p "$aptx/lists/partial" "$aptx/cache/archives/partial" "$debs" "$root" "$tools"

# The system's own Debian mirror, as configured in its apt sources.
mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(grep -m1 -oE 'https?://[^ ]+/debian' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"

apt_opts=(
  -o "Dir::Etc::SourceList=$aptx/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$aptx/lists" -o "Dir::State::status=$aptx/status"
  -o "Dir::Cache=$aptx/cache" -o Acquire::Check-Valid-Until=false
  -o Debug::NoLocking=1
)

# ------------------------------------------------ 1. the unpacked interpreter
if [ ! -f "$root/.complete" ]; then
  say "--> downloading sid's python3.14 .debs through a private apt config (mirror $mirror)"
  printf 'deb %s sid main\n' "$mirror" >"$aptx/sources.list"
  : >"$aptx/status" # an empty dpkg status: apt resolves every dependency from scratch
  apt-get "${apt_opts[@]}" update -qq || die "apt-get update of sid (private config) failed"
  # The full dependency closure of the interpreter, libraries only.
  want=(python3.14 python3.14-minimal libpython3.14-minimal libpython3.14-stdlib libc6)
  mapfile -t pkgs < <(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances "${want[@]}" |
    grep -E '^[a-z0-9]' | sort -u |
    grep -vE '^(debconf|perl-base|dpkg|tar|coreutils|bash|base-files|mime-support|media-types|tzdata|netbase|readline-common|install-info|python3\.14-doc|python3-.*)$' || true)
  [ "${#pkgs[@]}" -gt 0 ] || die "apt-cache depends listed nothing for ${want[*]} in sid"
  say "    ${#pkgs[@]} packages: ${pkgs[*]}"
  (cd "$debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}") ||
    die "apt-get download from sid failed (packages: ${pkgs[*]})"
  say "--> unpacking $(ls "$debs"/*.deb | wc -l) .debs into $root"
  for d in "$debs"/*.deb; do dpkg -x "$d" "$root"; done
  [ -x "$py" ] || die "no $py after unpacking: python3.14 missing from the downloads"
  touch "$root/.complete"
fi

# patchelf, from bookworm (the system's own suite), unpacked, not installed.
patchelf=$(command -v patchelf || true)
if [ -z "$patchelf" ]; then
  patchelf=$tools/usr/bin/patchelf
  if [ ! -x "$patchelf" ]; then
    say "--> fetching bookworm's patchelf .deb (unpacked into $tools, not installed)"
    (cd "$tools" && apt-get download patchelf) || die "apt-get download patchelf (bookworm) failed"
    dpkg -x "$tools"/patchelf_*.deb "$tools"
  fi
fi

loader=$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
[ -e "$loader" ] || loader=$root/lib64/ld-linux-x86-64.so.2
[ -e "$loader" ] || die "no ld-linux-x86-64.so.2 in $root (libc6 not unpacked?)"
rpath=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu
if [ "$("$patchelf" --print-interpreter "$py")" != "$loader" ]; then
  say "--> patchelf: interpreter $loader, rpath $rpath"
  "$patchelf" --set-interpreter "$loader" --set-rpath "$rpath" "$py"
fi
# Shared extension modules load through the interpreter's loader but find their
# libraries via the rpath of the object that needs them; the stdlib's
# lib-dynload extensions and libpython get the same rpath.
for so in "$root"/usr/lib/python3.14/lib-dynload/*.so "$root"/usr/lib/x86_64-linux-gnu/libpython3.14*.so*; do
  [ -f "$so" ] && [ ! -L "$so" ] || continue
  [ "$("$patchelf" --print-rpath "$so" 2>/dev/null)" = "$rpath" ] || "$patchelf" --set-rpath "$rpath" "$so"
done
"$py" -c 'import sys, ssl, ctypes, zlib, sqlite3, lzma, bz2; print("provision-blazefl3: interpreter ok:", sys.version)' ||
  die "the unpacked $py does not start or lacks a stdlib module"

# ------------------------------------------------------------- 2-3. the venv
if [ ! -x "$venv/bin/pip" ]; then
  say "--> venv at $venv (without pip: Debian's 3.14 has no ensurepip)"
  rm -rf "$venv"
  "$py" -m venv --without-pip "$venv" || die "python3.14 -m venv failed"
  # The interpreter in the venv is a symlink to the patched binary, so it keeps
  # the loader and rpath.
  wheel=$cache/pipwheel
  rm -rf "$wheel" && mkdir -p "$wheel"
  # Fetch the pip wheel with this project's pip (any pip can download one).
  pip_dl=$(command -v pip3 || command -v pip || true)
  [ -n "$pip_dl" ] || die "no pip on PATH to download the pip wheel with"
  "$pip_dl" download -q --no-deps --only-binary=:all: -d "$wheel" pip || die "pip download pip failed"
  whl=$(ls "$wheel"/pip-*.whl | head -1)
  "$venv/bin/python" "$whl/pip" install -q "$whl" || die "bootstrapping pip from $whl failed"
fi
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  say "--> pip install $torch_spec (the CUDA build for 3.14: ~4.7 GB; needs the registry)"
  "$venv/bin/pip" install -q --only-binary=:all: "$torch_spec" numpy || die "pip install $torch_spec numpy failed"
fi
# The contrib extra brings tqdm (blazefl.contrib imports it), reproducibility numpy.
blazefl_spec='blazefl[contrib,reproducibility]==3.0.0'
if ! "$venv/bin/python" -c 'import importlib.metadata as m, blazefl.contrib
assert m.version("blazefl") == "3.0.0"' 2>/dev/null; then
  say "--> pip install $blazefl_spec"
  "$venv/bin/pip" install -q "$blazefl_spec" || die "pip install $blazefl_spec failed"
fi
"$venv/bin/python" -c 'import sys, torch, blazefl.contrib.fedavg, importlib.metadata as m
print("provision-blazefl3: ok: python", sys.version.split()[0], "torch", torch.__version__, "blazefl", m.version("blazefl"))' ||
  die "torch or blazefl does not import in $venv"
echo "$venv/bin/python"
