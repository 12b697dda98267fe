#!/usr/bin/env bash
# sdq-model-sync.sh: mirror the sdq model bucket (s3://BUCKET[/PREFIX]) into a GPU node's
# instance-store model cache.
#
# This is the ONE node sync script. The EC2NodeClass boot user data installs this exact file as
# /opt/sdq/sdq-model-sync.sh and runs it once the instance store is mounted; the model_sync
# Lambda runs the same path through SSM (AWS-RunShellScript) whenever the bucket changes.
#
# Needs only what an EKS-optimised AL2023 (NVIDIA) node has: bash, coreutils, findutils,
# util-linux (flock, mountpoint) and the AWS CLI (v2 on the AMI; v1 behaves the same for the two
# calls used here). AWS_ENDPOINT_URL is honoured by the CLI, which is how tests aim it at moto.
#
# What it does, under an exclusive lock:
#   - lists the bucket (aws s3api list-objects-v2: key, ETag, size);
#   - downloads objects that are new or whose ETag/size differ from the manifest of the last
#     sync (or whose local size is wrong), each to a temp file inside the cache's filesystem,
#     checks the size, then renames it into place atomically: a runtime never sees a partial file;
#   - removes local files whose object is gone (the cache is a mirror: only this script writes it);
#   - rewrites the manifest (<dest>/.sdq-sync/manifest.tsv) only when something changed, so its
#     mtime is a change signal for the runtime side (the queue agent refreshes SD WebUI on it);
#   - prints one summary line on stdout:
#       sdq-model-sync: added=N updated=N removed=N bytes=N seconds=N failed=N
#
# Exit status:
#   0   the cache mirrors the bucket
#   1   listing or at least one download/removal failed (what succeeded is kept; rerun to retry)
#   64  usage error
#   69  the AWS CLI is missing, or --require-mount DIR is not a mount point
#   75  another sync held the lock for longer than --lock-timeout seconds (nothing was changed)
set -Eeuo pipefail

readonly EXIT_FAILED=1 EXIT_USAGE=64 EXIT_UNAVAILABLE=69 EXIT_LOCKED=75
readonly DEFAULT_DEST=/mnt/k8s-disks/0/sdq-models

usage() {
  cat <<'USAGE'
usage: sdq-model-sync.sh --bucket BUCKET [--prefix PREFIX] [--dest DIR] [--region REGION]
                         [--lock-timeout SECONDS] [--require-mount DIR]
Environment fallbacks: SDQ_MODEL_BUCKET, SDQ_MODEL_PREFIX, SDQ_MODEL_CACHE_DIR,
SDQ_MODEL_BUCKET_REGION (else AWS_REGION), SDQ_SYNC_LOCK_TIMEOUT (default 1800).
USAGE
}

log() { printf 'sdq-model-sync: %s\n' "$*" >&2; }
die() {
  local code=$1
  shift
  log "$*"
  exit "$code"
}

bucket=${SDQ_MODEL_BUCKET:-}
prefix=${SDQ_MODEL_PREFIX:-}
dest=${SDQ_MODEL_CACHE_DIR:-$DEFAULT_DEST}
region=${SDQ_MODEL_BUCKET_REGION:-${AWS_REGION:-}}
lock_timeout=${SDQ_SYNC_LOCK_TIMEOUT:-1800}
require_mount=""

while (($# > 0)); do
  case $1 in
    --bucket | --prefix | --dest | --region | --lock-timeout | --require-mount)
      (($# >= 2)) || die "$EXIT_USAGE" "$1 needs a value"
      case $1 in
        --bucket) bucket=$2 ;;
        --prefix) prefix=$2 ;;
        --dest) dest=$2 ;;
        --region) region=$2 ;;
        --lock-timeout) lock_timeout=$2 ;;
        --require-mount) require_mount=$2 ;;
      esac
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "$EXIT_USAGE" "unknown argument: $1"
      ;;
  esac
done

[[ -n $bucket ]] || die "$EXIT_USAGE" "no bucket: pass --bucket or set SDQ_MODEL_BUCKET"
[[ $dest == /* ]] || die "$EXIT_USAGE" "--dest must be an absolute path, got '$dest'"
[[ $lock_timeout =~ ^[0-9]+$ ]] || die "$EXIT_USAGE" "--lock-timeout must be whole seconds"
dest=${dest%/}
prefix=${prefix#/}
if [[ -n $prefix && $prefix != */ ]]; then
  prefix+=/
fi
command -v aws >/dev/null 2>&1 || die "$EXIT_UNAVAILABLE" "the aws CLI is not on PATH"
if [[ -n $require_mount ]] && ! mountpoint -q "$require_mount"; then
  die "$EXIT_UNAVAILABLE" "$require_mount is not a mount point (instance store not ready?)"
fi

state=$dest/.sdq-sync
tmpdir=$state/tmp
manifest=$state/manifest.tsv
mkdir -p "$tmpdir"

# One sync at a time per cache: a second run (boot sync vs SSM, or two SSM commands) waits for
# the first, bounded, so it still sees changes made after the first one listed the bucket.
exec {lock_fd}>"$state/lock"
if ! flock -n "$lock_fd"; then
  log "waiting up to ${lock_timeout}s for the sync already running on $dest"
  flock -w "$lock_timeout" "$lock_fd" || die "$EXIT_LOCKED" "lock still held after ${lock_timeout}s"
fi

# Leftovers of an interrupted run: safe to drop, we hold the lock.
find "$tmpdir" -mindepth 1 -delete
current_tmp=""
trap 'if [[ -n $current_tmp ]]; then rm -f -- "$current_tmp"; fi' EXIT

aws_opts=()
if [[ -n $region ]]; then
  aws_opts+=(--region "$region")
fi

added=0 updated=0 removed=0 bytes=0 failed=0
summary() {
  printf 'sdq-model-sync: added=%d updated=%d removed=%d bytes=%d seconds=%d failed=%d\n' \
    "$added" "$updated" "$removed" "$bytes" "$SECONDS" "$failed"
}

listing=$tmpdir/listing
list_args=(s3api list-objects-v2 --bucket "$bucket" --output text
  --query 'Contents[].[Key,ETag,Size]')
if [[ -n $prefix ]]; then
  list_args+=(--prefix "$prefix")
fi
if ! aws "${aws_opts[@]}" "${list_args[@]}" >"$listing"; then
  rm -f -- "$listing"
  failed=1
  summary
  die "$EXIT_FAILED" "could not list s3://$bucket/$prefix: nothing changed"
fi

declare -A old_etag=() old_size=() remote=()
if [[ -f $manifest ]]; then
  while IFS=$'\t' read -r etag size rel; do
    old_etag[$rel]=$etag
    old_size[$rel]=$size
  done <"$manifest"
fi

# A key maps to <dest>/<key without prefix>; anything that could escape the cache, collide
# with the sync state or be misparsed is skipped (and counted as failed so it gets noticed).
safe_relative() {
  local rel=$1
  [[ -n $rel && $rel != /* ]] || return 1
  case "/$rel/" in
    */../* | */./* | *//*) return 1 ;;
  esac
  [[ $rel != .sdq-sync && $rel != .sdq-sync/* ]]
}

new_manifest=$tmpdir/manifest.new
: >"$new_manifest"

while IFS=$'\t' read -r key etag size extra; do
  [[ $key == None && -z $etag ]] && continue # text output of an empty listing
  if [[ -n $extra || ! $size =~ ^[0-9]+$ ]]; then
    log "skipping an unparseable listing line (a key with a tab or newline?): $key"
    failed=$((failed + 1))
    continue
  fi
  [[ $key == */ ]] && continue # folder marker
  rel=${key#"$prefix"}
  if ! safe_relative "$rel"; then
    log "skipping unsafe key: $key"
    failed=$((failed + 1))
    continue
  fi
  remote[$rel]=1
  target=$dest/$rel
  if [[ -f $target && ${old_etag[$rel]-} == "$etag" && ${old_size[$rel]-} == "$size" ]] &&
    [[ $(stat -c %s -- "$target") == "$size" ]]; then
    printf '%s\t%s\t%s\n' "$etag" "$size" "$rel" >>"$new_manifest"
    continue
  fi
  existed=0
  [[ -e $target ]] && existed=1
  current_tmp=$(mktemp "$tmpdir/download.XXXXXXXX")
  if mkdir -p -- "$(dirname -- "$target")" &&
    aws "${aws_opts[@]}" s3 cp --only-show-errors -- "s3://$bucket/$key" "$current_tmp" &&
    [[ $(stat -c %s -- "$current_tmp") == "$size" ]] &&
    mv -f -T -- "$current_tmp" "$target"; then
    current_tmp=""
    printf '%s\t%s\t%s\n' "$etag" "$size" "$rel" >>"$new_manifest"
    bytes=$((bytes + size))
    if ((existed)); then
      updated=$((updated + 1))
    else
      added=$((added + 1))
    fi
  else
    log "download failed: s3://$bucket/$key (the previous copy, if any, is kept)"
    rm -f -- "$current_tmp"
    current_tmp=""
    failed=$((failed + 1))
    if [[ -n ${old_etag[$rel]-} && -f $target ]]; then
      printf '%s\t%s\t%s\n' "${old_etag[$rel]}" "${old_size[$rel]}" "$rel" >>"$new_manifest"
    fi
  fi
done <"$listing"

# Remove what the bucket no longer has, then the directories that emptied.
while IFS= read -r -d '' path; do
  rel=${path#"$dest"/}
  [[ -n ${remote[$rel]-} ]] && continue
  if rm -f -- "$path"; then
    removed=$((removed + 1))
    dir=$(dirname -- "$path")
    while [[ $dir != "$dest" ]] && rmdir -- "$dir" 2>/dev/null; do
      dir=$(dirname -- "$dir")
    done
  else
    log "could not remove $path"
    failed=$((failed + 1))
  fi
done < <(find "$dest" -path "$state" -prune -o \( -type f -o -type l \) -print0)

if ! cmp -s "$new_manifest" "$manifest" 2>/dev/null; then
  mv -f -T -- "$new_manifest" "$manifest"
fi
rm -f -- "$listing" "$new_manifest"

summary
if ((failed > 0)); then
  exit "$EXIT_FAILED"
fi
