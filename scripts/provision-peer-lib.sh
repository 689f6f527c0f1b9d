# Shared by scripts/provision-pfl.sh and scripts/provision-flower.sh (sourced,
# not run): a Python 3.11 venv with torch 2.13.0 first, then a peer framework
# and blazefl (editable, runtime dependencies), under a stamp so that a rerun
# with nothing changed only runs the final import check.
#
# The caller sets, before sourcing:
#   name        the script's name in messages (provision-pfl, ...)
#   python      the interpreter for the venv
#   venv        the venv's folder
#   peer_spec   the pip spec of the peer framework
#   torch_spec  the pip spec of torch
#   repo        the repository root (the current folder)
# and then calls `provision_peer STAMP_TAG`, then its own import check.

say() { echo "$name: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# pip in the venv. This machine's pip config lists file:// indexes that lack
# most projects; pip warns once per project about each. Drop only those lines.
# With pipefail the pipeline's status is pip's.
pip() {
  "$venv/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 |
    { grep -v "^WARNING: Location 'file://.*' is ignored" || true; } >&2
}

# provision_peer TAG: create or update $venv; TAG names its stamp and
# constraints files (.blazefl-TAG-installed, TAG-constraints.txt).
provision_peer() {
  local tag=$1
  command -v "$python" >/dev/null || die "$python not found (set PYTHON to a Python 3.11)"
  "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    say "warning: $python is not 3.11; torch $torch_spec may download a CUDA build (GBs)"

  local stamp=$venv/.blazefl-$tag-installed want
  want=$(
    {
      "$python" -VV
      echo "$python $peer_spec $torch_spec $repo"
      cat pyproject.toml "$repo/scripts/$name.sh" "$repo/scripts/provision-peer-lib.sh"
    } | sha256sum | cut -d' ' -f1
  )
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    say "$venv is up to date"
    return
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
  fi
  rm -f "$stamp"
  # torch first, exactly as scripts/bootstrap.sh does: under 3.11 this pin
  # resolves to the CPU build on this project's machines, and installing it
  # before the peer keeps pip from picking another torch.
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    say "installing $torch_spec"
    pip install "$torch_spec" || die "could not install $torch_spec"
  fi
  local constraints=$venv/$tag-constraints.txt
  echo "$torch_spec" >"$constraints"
  say "installing $peer_spec"
  pip install -c "$constraints" "$peer_spec" || die "could not install $peer_spec"
  say "installing blazefl (editable, runtime dependencies)"
  pip install -c "$constraints" -e . || die "could not install blazefl into $venv"
  echo "$want" >"$stamp"
}
