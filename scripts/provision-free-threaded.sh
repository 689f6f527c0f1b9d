#!/usr/bin/env bash
# Provision a free-threaded CPython (PEP 703, GIL off) and a virtual
# environment with blazefl[dev] installed in it, for running the suite with
# ThreadExecutor workers truly in parallel. Idempotent: every step that has
# already been done is skipped, so a second run takes seconds.
#
#   scripts/provision-free-threaded.sh       # then: .venv-ft/bin/python -m pytest
#
# 1. Interpreter. The first free-threaded one of: $BLAZEFL_FT_PYTHON,
#    python3.14t / python3.13t on PATH, `uv python find 3.14t`, an earlier
#    build in the cache. Failing those, CPython 3.13 is built with
#    --disable-gil from Debian's source archive (python.org is not reachable
#    on this project's machines; Debian serves 3.13 sources but not 3.14's).
# 2. Venv with torch (the PyPI CUDA build: about 4 GB), numpy, then
#    `pip install -e .[dev]`.
# 3. triton is uninstalled: torch.optim imports torch._dynamo, which imports
#    triton, whose extension is not marked free-threading-safe, and CPython
#    then turns the GIL back on for the whole process.
# 4. Check that the GIL is still off after importing torch and stepping an
#    optimizer, without PYTHON_GIL=0.
#
# Environment (all optional):
#   BLAZEFL_FT_PYTHON  free-threaded interpreter to use; it must be one.
#   BLAZEFL_FT_CACHE   cache outside the repo, kept between CI runs on one
#                      machine: the built interpreter (~430 MB), the source
#                      tarball, a wheelhouse of torch and its nvidia-* wheels
#                      (~2.8 GB). Default ~/.cache/blazefl-ft.
#   BLAZEFL_FT_VENV    the venv. Default .venv-ft in the repo (git-ignored).
#   BLAZEFL_FT_TORCH, BLAZEFL_FT_NUMPY
#                      pip specs. Defaults for 3.13t: torch==2.12.0 (the
#                      newest with cp313t wheels), numpy<2.5 (2.5 has none).
#
# Building needs root (or passwordless sudo) only to apt-get install the
# missing bookworm -dev packages; nothing from sid or trixie is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

cache=${BLAZEFL_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/blazefl-ft}
venv=${BLAZEFL_FT_VENV:-$repo/.venv-ft}
prefix=$cache/python3.13t # where the fallback build goes
built_python=$prefix/bin/python3.13t
build_stamp=$prefix/.blazefl-build-complete

# ---------------------------------------------------------------- helpers

die() {
  echo "provision-free-threaded: error: $*" >&2
  exit 1
}
say() { echo "provision-free-threaded: $*" >&2; }

# Wall time of each step, printed as a table on exit (also on failure).
timings=()
step_start=0
step_name=""
begin() {
  step_name=$1
  step_start=$(date +%s.%N)
  say "--> $step_name"
}
end() {
  local took
  took=$(awk -v a="$step_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  timings+=("$(printf '%7ss  %s' "$took" "$step_name")")
  say "<-- $step_name (${took}s)"
  step_name=""
}
report() {
  local rc=$?
  if [ -n "$step_name" ]; then end; fi
  if [ ${#timings[@]} -gt 0 ]; then
    say "step timings:"
    printf '  %s\n' "${timings[@]}" >&2
  fi
  if [ "$rc" -ne 0 ]; then
    say "FAILED (exit $rc); see the messages above"
  fi
}
trap report EXIT

# True when $1 is a free-threaded CPython build (GIL may still be on).
is_free_threaded() {
  [ -n "$1" ] && [ -x "$1" ] &&
    "$1" -c 'import sys, sysconfig; sys.exit(sysconfig.get_config_var("Py_GIL_DISABLED") != 1)' \
      2>/dev/null
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    die "need root to run: $* (run this script as root, or install those packages first)"
  fi
}

# ---------------------------------------------------------------- interpreter

find_interpreter() {
  local candidate
  if [ -n "${BLAZEFL_FT_PYTHON:-}" ]; then
    is_free_threaded "$BLAZEFL_FT_PYTHON" ||
      die "BLAZEFL_FT_PYTHON=$BLAZEFL_FT_PYTHON is not a free-threaded CPython (Py_GIL_DISABLED != 1)"
    echo "$BLAZEFL_FT_PYTHON"
    return
  fi
  for candidate in python3.14t python3.13t; do
    candidate=$(command -v "$candidate" || true)
    if is_free_threaded "$candidate"; then
      echo "$candidate"
      return
    fi
  done
  if command -v uv >/dev/null; then
    candidate=$(uv python find 3.14t 2>/dev/null || true)
    if is_free_threaded "$candidate"; then
      echo "$candidate"
      return
    fi
  fi
  if [ -f "$build_stamp" ] && is_free_threaded "$built_python"; then
    echo "$built_python"
  fi
}

build_deps=(build-essential pkg-config libssl-dev libffi-dev zlib1g-dev libbz2-dev
  liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev libgdbm-dev uuid-dev
  libzstd-dev libexpat1-dev)

install_build_deps() {
  local missing=() pkg
  for pkg in "${build_deps[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "build dependencies already installed"
    return
  fi
  say "installing from the system's own (bookworm) sources: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Download python3.13's upstream tarball from Debian's source archive into
# $cache/src and print its path. A private apt configuration (its own sources
# list, state and cache under $cache/apt) holds only deb-src lines for
# sid/trixie, so the system's apt never sees those suites.
fetch_source() {
  local aptx=$cache/apt src=$cache/src mirror tarball v got=""
  tarball=$(find "$src" -maxdepth 1 -name 'python3.13_*.orig.tar.xz' 2>/dev/null | sort -V | tail -n1)
  if [ -n "$tarball" ]; then
    say "reusing source tarball $tarball"
    echo "$tarball"
    return
  fi
  mkdir -p "$aptx/lists/partial" "$aptx/cache/archives/partial" "$src"
  # The Debian mirror the system already uses.
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(grep -hs -m1 -oE 'https?://[^ ]+/debian' /etc/apt/sources.list || true)
  fi
  [ -n "$mirror" ] || die "cannot find the Debian mirror in /etc/apt/sources.list{,.d/debian.sources}"
  printf 'deb-src %s sid main\ndeb-src %s trixie main\n' "$mirror" "$mirror" >"$aptx/sources.list"
  local apt_opts=(
    -o "Dir::Etc::SourceList=$aptx/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$aptx/lists"
    -o "Dir::Cache=$aptx/cache"
  )
  # The _apt user cannot write under root's home; download as root instead.
  if [ "$(id -u)" -eq 0 ]; then apt_opts+=(-o "APT::Sandbox::User=root"); fi
  apt-get "${apt_opts[@]}" update -qq >&2 ||
    die "apt-get update on the private deb-src list ($aptx/sources.list) failed"
  # Newest first; sid sometimes lists a version whose files are not there yet.
  for v in $(apt-cache "${apt_opts[@]}" showsrc python3.13 | awk '/^Version:/ { print $2 }' | sort -Vr -u); do
    if (cd "$src" && apt-get "${apt_opts[@]}" source --download-only "python3.13=$v" >/dev/null 2>&1); then
      got=$v
      break
    fi
    say "python3.13=$v sources not downloadable, trying the next version"
  done
  [ -n "$got" ] || die "no python3.13 source package could be downloaded from $mirror"
  v=${got%-*}
  v=${v#*:}
  say "downloaded python3.13 $got (upstream $v)"
  # Keep only the upstream tarball; Debian's patches and .dsc are not used.
  find "$src" -maxdepth 1 -type f ! -name "python3.13_$v.orig.tar.xz" -delete
  echo "$src/python3.13_$v.orig.tar.xz"
}

build_python() {
  local tarball=$1 build=$cache/build
  # The prefix is compiled into the interpreter, so build in place and mark
  # completion with a stamp; a half-finished prefix is wiped and redone.
  rm -rf "$build" "$prefix"
  mkdir -p "$build"
  tar -xf "$tarball" -C "$build" --strip-components=1
  say "building into $prefix (logs: $build/{configure,make,install}.log)"
  (
    cd "$build"
    ./configure --disable-gil --prefix="$prefix" --with-ensurepip=install >configure.log 2>&1 ||
      die "configure failed: tail $build/configure.log"
    make -j"$(nproc)" >make.log 2>&1 || die "make failed: tail $build/make.log"
    make install >install.log 2>&1 || die "make install failed: tail $build/install.log"
  )
  "$built_python" -c '
import sys, ssl, ctypes, sqlite3, lzma, bz2, zlib, readline, decimal, uuid
assert not sys._is_gil_enabled(), "GIL is on"
' || die "the build at $prefix lacks a module or has the GIL on (see $build/make.log)"
  touch "$build_stamp"
  rm -rf "$build"
}

# ---------------------------------------------------------------- main

mkdir -p "$cache"
# One provisioning at a time per cache (CI jobs on one machine share it).
exec 9>"$cache/.lock"
flock 9

begin "find a free-threaded interpreter"
python=$(find_interpreter)
end

if [ -z "$python" ]; then
  say "no free-threaded interpreter found; building CPython 3.13t into $prefix"
  begin "install build dependencies"
  install_build_deps
  end
  begin "download python3.13 sources from Debian"
  tarball=$(fetch_source)
  end
  begin "build CPython 3.13t (--disable-gil)"
  build_python "$tarball"
  end
  python=$built_python
fi
py_version=$("$python" -c 'import sys; print(".".join(map(str, sys.version_info[:2])))')
say "interpreter: $python ($("$python" -VV | tr -d '\n'))"

case $py_version in
  3.13) torch_spec=${BLAZEFL_FT_TORCH:-torch==2.12.0} numpy_spec=${BLAZEFL_FT_NUMPY:-numpy<2.5} ;;
  # PyPI has cp314t wheels for torch 2.9-2.15 and numpy 2.5; untested here.
  *) torch_spec=${BLAZEFL_FT_TORCH:-torch>=2.9,<2.15} numpy_spec=${BLAZEFL_FT_NUMPY:-numpy} ;;
esac

# torch and its nvidia-* wheels (about 2.8 GB) are kept in a wheelhouse in the
# cache: the registry here answers with headers that keep pip's own HTTP cache
# from storing them, so without this every new venv downloads them again.
wheels=$cache/wheels
pip_cmd=("$venv/bin/python" -m pip --disable-pip-version-check -q)
pip() {
  # This machine's pip config lists file:// indexes that lack most projects,
  # and pip warns once per project about each; drop only those lines.
  "${pip_cmd[@]}" "$@" 2>&1 | { grep -v "^WARNING: Location 'file://.*' is ignored" || true; } >&2
}

# The stamp says which interpreter, specs, pyproject, script and checkout (the
# editable install points at it) the venv was made from; when they all match,
# the install steps are skipped.
stamp=$venv/.blazefl-ft-installed
want=$(
  {
    "$python" -VV
    echo "$python $torch_spec $numpy_spec $repo"
    cat pyproject.toml "$repo/scripts/provision-free-threaded.sh"
  } | sha256sum | cut -d' ' -f1
)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && is_free_threaded "$venv/bin/python"; then
  say "$venv is up to date"
else
  begin "create venv $venv"
  # --clear: a venv left from another interpreter or a failed run starts over.
  rm -f "$stamp"
  "$python" -m venv --clear "$venv"
  pip install --upgrade pip
  end

  # The PyPI torch is the CUDA build; it does not import without the
  # nvidia-* wheels it pulls in, so those stay. pip download skips the files
  # already in the wheelhouse; the install then reads only the wheelhouse.
  begin "download $torch_spec, $numpy_spec wheels (skips cached files)"
  mkdir -p "$wheels"
  pip download --only-binary=:all: -d "$wheels" "$torch_spec" "$numpy_spec" ||
    die "could not download $torch_spec $numpy_spec for $py_version free-threaded (cp${py_version/./}t wheels needed)"
  end
  begin "install $torch_spec, $numpy_spec"
  pip install --no-index --find-links "$wheels" "$torch_spec" "$numpy_spec" ||
    die "could not install $torch_spec $numpy_spec from $wheels"
  end

  begin "install blazefl[dev] (editable)"
  # Pinned for the blazefl install too, so its looser ranges change nothing.
  constraints=$venv/ft-constraints.txt
  printf '%s\n' "$torch_spec" "$numpy_spec" >"$constraints"
  # Wheels only: a dependency without a free-threaded wheel makes pip fall
  # back to an older release that has one (mypy 1.19+ needs ast-serialize,
  # a Rust sdist that cannot build without crates.io) instead of failing.
  install=(install --only-binary=:all: -c "$constraints")
  skipped=()
  if ! pip "${install[@]}" -e ".[dev]"; then
    # Some dev dependency has no usable wheel at all: install the runtime
    # dependencies, then each dev one on its own, and report the failures.
    say "pip install -e .[dev] failed; installing the dev dependencies one by one"
    pip "${install[@]}" -e . ||
      die "blazefl's runtime dependencies do not install on $py_version free-threaded"
    mapfile -t dev_deps < <(
      "$venv/bin/python" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["dev"]))'
    )
    for dep in "${dev_deps[@]}"; do
      pip "${install[@]}" "$dep" || skipped+=("$dep")
    done
  fi
  end

  begin "uninstall triton"
  if "$venv/bin/python" -m pip show -q triton >/dev/null 2>&1; then
    pip uninstall -y triton
  else
    say "triton not installed"
  fi
  end

  if [ ${#skipped[@]} -gt 0 ]; then
    # Recorded in the venv so later runs (which skip installing) still say it.
    printf '%s\n' "${skipped[@]}" >"$venv/.blazefl-ft-skipped"
  else
    rm -f "$venv/.blazefl-ft-skipped"
  fi
  echo "$want" >"$stamp"
fi

if [ -s "$venv/.blazefl-ft-skipped" ]; then
  say "WARNING: these dev dependencies did not install (tests needing them skip or fail):"
  sed 's/^/    /' "$venv/.blazefl-ft-skipped" >&2
fi

# The GIL must be off after torch, torch.optim and an optimizer step (the step
# is what imports torch._dynamo and, with it, triton), without PYTHON_GIL=0.
begin "verify: GIL off after importing torch and blazefl"
env -u PYTHON_GIL "$venv/bin/python" -c '
import sys, torch, torch.optim, numpy, blazefl, blazefl.sim
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model(torch.ones(1, 2)).sum().backward()
opt.step()
assert not sys._is_gil_enabled(), "GIL re-enabled"
assert not blazefl.sim.gil_enabled()
print(f"python {sys.version.split()[0]} free-threaded, GIL off; torch {torch.__version__}, numpy {numpy.__version__}")
' || die "the GIL is on in $venv after importing torch (is triton installed? pip uninstall triton)"
end

say "disk: $(du -sh "$venv" | cut -f1) venv ($venv), $(du -sh "$cache" | cut -f1) cache ($cache)"
say "ready: $venv/bin/python -m pytest"
