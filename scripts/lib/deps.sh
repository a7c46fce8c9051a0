# shellcheck shell=bash
# Idempotent installation of the test dependencies (sourced by scripts/test).
# Every function is fast when the dependency is already present.

_APT_UPDATED=0

# apt_install PKG... : install Debian packages (root only); runs `apt-get update`
# only when a first install attempt fails (e.g. empty package lists).
apt_install() {
  if ! have apt-get; then
    warn "apt-get not available; cannot install: $*"
    return 1
  fi
  local sudo=()
  if ! is_root; then
    if have sudo && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      warn "not root and no passwordless sudo; cannot install: $*"
      return 1
    fi
  fi
  log "apt-get install $*"
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" \
        >/tmp/fjord-apt.log 2>&1; then
    if (( _APT_UPDATED == 0 )); then
      info "install failed; running apt-get update first"
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q >>/tmp/fjord-apt.log 2>&1 || true
      _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@" \
      >>/tmp/fjord-apt.log 2>&1 || { tail -20 /tmp/fjord-apt.log >&2; return 1; }
  fi
}

ensure_system_tools() {
  local missing=()
  have python3 || missing+=(python3)
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
  fi
  have node || missing+=(nodejs)
  have npm || missing+=(npm)
  have kcat || have kafkacat || missing+=(kcat)
  # cmake builds the librdkafka bundled by the rdkafka crate (crates/bench, fjord-bench)
  have cmake || missing+=(cmake)
  # librdkafka's CMake build enables libcurl when it finds the library, so it needs the headers
  [[ -e /usr/include/x86_64-linux-gnu/curl/curl.h || -e /usr/include/curl/curl.h ]] || missing+=(libcurl4-openssl-dev)
  # fjord-bench's librdkafka is built with SSL (TLS and SCRAM presets) on the system OpenSSL,
  # which the openssl-sys crate finds with pkg-config
  [[ -e /usr/include/openssl/ssl.h ]] || missing+=(libssl-dev)
  have pkg-config || missing+=(pkg-config)
  # pip may have to build nothing (all wheels), but ca-certificates is needed for HTTPS
  [[ -e /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  if (( ${#missing[@]} )); then
    apt_install "${missing[@]}" || warn "could not install ${missing[*]}; dependent tests will fail or skip"
  fi
  have python3 || die "python3 is required"
  have node || warn "node missing: the kafkajs step will fail"
  have kcat || have kafkacat || warn "kcat missing: kcat tests will be skipped"
}

ensure_rust_components() {
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    if have rustup; then
      log "rustup component add rustfmt clippy"
      rustup component add rustfmt clippy >&2 || warn "could not add rustfmt/clippy"
    fi
  fi
}

# ensure_venv DIR REQUIREMENTS : create the venv and install the pinned requirements,
# skipping pip entirely when the requirements file has not changed since the last install.
ensure_venv() {
  local venv=$1 req=$2
  local stamp="$venv/.fjord-requirements.sha256"
  local want
  want="$(file_hash "$req")"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "creating Python venv at $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv)"
  fi
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  log "pip install -r $req"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2 \
    || die "pip install failed"
  echo "$want" > "$stamp"
}

# ensure_node_modules DIR : npm ci (or npm install without a lockfile), skipped when
# package.json + package-lock.json are unchanged since the last install.
ensure_node_modules() {
  local dir=$1
  have npm || { warn "npm missing; skipping npm install"; return 0; }
  local stamp="$dir/node_modules/.fjord-lock.sha256"
  local want
  want="$(file_hash "$dir/package.json" "$dir/package-lock.json")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  log "npm install in $dir"
  if [[ -f "$dir/package-lock.json" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed"
  else
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2) || die "npm install failed"
  fi
  echo "$want" > "$stamp"
}

# cargo_target_dir : the workspace target directory (honours CARGO_TARGET_DIR and .cargo/config).
cargo_target_dir() {
  local dir=""
  if dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
             | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null)" \
     && [[ -n "$dir" ]]; then
    printf '%s\n' "$dir"
  else
    printf '%s\n' "${CARGO_TARGET_DIR:-$PWD/target}"
  fi
}
