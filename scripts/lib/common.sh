# shellcheck shell=bash
# Shared helpers for scripts/test (sourced, not executed).

if [[ -t 2 ]]; then
  _C_BOLD=$'\e[1m'; _C_RED=$'\e[31m'; _C_GREEN=$'\e[32m'; _C_YELLOW=$'\e[33m'; _C_OFF=$'\e[0m'
else
  _C_BOLD=; _C_RED=; _C_GREEN=; _C_YELLOW=; _C_OFF=
fi

log()  { printf '%s==> %s%s\n' "$_C_BOLD" "$*" "$_C_OFF" >&2; }
info() { printf '    %s\n' "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$_C_YELLOW" "$_C_OFF" "$*" >&2; }
die()  { printf '%serror:%s %s\n' "$_C_RED" "$_C_OFF" "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# Portable sha256 of one or more files (first field only).
file_hash() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

fmt_duration() {
  local s=$1
  if (( s >= 60 )); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}
