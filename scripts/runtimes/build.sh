#!/usr/bin/env bash
# Build one real Stable Diffusion runtime into a cached, CPU-only virtual environment.
#
#   scripts/runtimes/build.sh comfyui|sdwebui|invokeai
#
# The cache lives outside the checkout ($SDQ_RUNTIME_CACHE, default ~/.cache/sdq/runtimes) and is
# keyed by the runtime's pinned version, so every clone on a machine reuses one build; a missing or
# half-built entry is rebuilt from scratch. Sources come from $SDQ_RUNTIME_SOURCES (a directory of
# the pinned archives, e.g. ../shared/runtimes) or, when that is unset, from `git clone` of the
# pinned commit. Prints the entry's directory on its last line.
set -euo pipefail

runtime=${1:?usage: build.sh comfyui|sdwebui|invokeai}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${SDQ_RUNTIME_CACHE:-$HOME/.cache/sdq/runtimes}
python=${SDQ_RUNTIME_PYTHON:-python3.11}

case "$runtime" in
  comfyui)  key="comfyui-$COMFYUI_VERSION-$COMFYUI_COMMIT";  archive="comfyui-$COMFYUI_VERSION-$COMFYUI_COMMIT.tar.gz";  tree=ComfyUI ;;
  sdwebui)  key="sdwebui-$SDWEBUI_VERSION-$SDWEBUI_COMMIT";  archive="sd-webui-$SDWEBUI_VERSION-$SDWEBUI_COMMIT.tar.gz"; tree=sdwebui ;;
  invokeai) key="invokeai-$INVOKEAI_VERSION"; archive=""; tree="" ;;
  *) echo "build.sh: unknown runtime '$runtime' (comfyui, sdwebui, invokeai)" >&2; exit 2 ;;
esac
key="$key-torch$TORCH_VERSION-$($python -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
dest="$cache/$key"
if [[ -f "$dest/.ready" ]]; then echo "$dest"; exit 0; fi

log() { printf '[build %s] %s\n' "$runtime" "$*" >&2; }
log "building $dest from scratch (several minutes)"
rm -rf "$dest" && mkdir -p "$dest/src"
start=$(date +%s)

fetch_source() {
  if [[ -n "${SDQ_RUNTIME_SOURCES:-}" ]]; then
    local path="$SDQ_RUNTIME_SOURCES/$archive"
    [[ -f "$path" ]] || { echo "build.sh: $path not found (SDQ_RUNTIME_SOURCES)" >&2; exit 1; }
    log "unpacking $path"
    tar -xzf "$path" -C "$dest/src"
  else
    log "cloning $1 at $2"
    git clone --quiet "$1" "$dest/src/$tree"
    git -C "$dest/src/$tree" checkout --quiet "$2"
    if [[ "$runtime" == sdwebui ]]; then
      # SD WebUI clones its own dependencies at start-up unless they are already present.
      local repos="$dest/src/$tree/repositories"; mkdir -p "$repos"
      while read -r name url commit; do
        git clone --quiet "$url" "$repos/$name" && git -C "$repos/$name" checkout --quiet "$commit"
      done < "$here/sdwebui-repositories.txt"
    fi
  fi
}

"$python" -m venv "$dest/venv"
pip=("$dest/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: an unpinned resolve pulls the CUDA build (gigabytes of nvidia wheels).
echo "torch==$TORCH_VERSION" > "$dest/constraints.txt"
"${pip[@]}" "torch==$TORCH_VERSION"

case "$runtime" in
  comfyui)
    fetch_source "$COMFYUI_REPO" "$COMFYUI_COMMIT"
    "${pip[@]}" -c "$dest/constraints.txt" -r "$dest/src/ComfyUI/requirements.txt" requests
    ;;
  sdwebui)
    fetch_source "$SDWEBUI_REPO" "$SDWEBUI_COMMIT"
    "${pip[@]}" -c "$dest/constraints.txt" -r "$here/sdwebui-requirements.txt" torchvision
    "${pip[@]}" -c "$dest/constraints.txt" clip-anytorch "setuptools>=77.0.3,<81"
    ;;
  invokeai)
    "${pip[@]}" -c "$dest/constraints.txt" "invokeai==$INVOKEAI_VERSION"
    ;;
esac
touch "$dest/.ready"
log "done in $(( $(date +%s) - start )) s"
echo "$dest"
