#!/usr/bin/env bash
# test-deps.sh — make sure the programs the test suite runs are installed, so that `make test`
# works on a fresh Debian/Ubuntu machine with only Go. Run by `make test` (target test-deps)
# and by .ci/run; safe to run again (it does nothing when everything is there).
#
#   required  redis-server   the integration tests start their own on a loopback port
#                            (not needed when REDIS_URL names a throwaway server)
#   optional  redis-sentinel the Sentinel tests; they skip, saying so, without it
#   optional  chromium       the dashboard's browser test; it skips, saying so, without it
#   extra     any program named on the command line is required too (.ci/run adds make)
#
# When something is missing and apt-get exists: as root it runs apt-get, with password-less
# sudo it runs sudo apt-get; otherwise it stops at once (exit 1) with the one command to run.
# Missing optional programs never fail the run: their install is tried once, then noted.
# Without apt-get a missing required program is an error naming it.
#
# Environment: DRY_RUN=1 prints the commands instead of running them; TEST_DEPS_OPTIONAL=0
# leaves the optional programs alone. Besides shell built-ins the script runs only id, sudo
# (then env) and apt-get, so its tests can fake them on PATH.
set -euo pipefail

log() { echo "test-deps: $*" >&2; }

# package_of PROGRAM: the Debian package that installs it.
package_of() {
  case "$1" in
    chromium) echo chromium ;;
    *) echo "$1" ;;
  esac
}

# have PROGRAM: is it on PATH (chromium: any of the names the browser test tries)?
have() {
  case "$1" in
    chromium)
      [ -n "${PROXYQ_CHROMIUM:-}" ] && return 0
      local n
      for n in chromium chromium-browser google-chrome-stable google-chrome chrome; do
        command -v "$n" >/dev/null 2>&1 && return 0
      done
      return 1
      ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

required=()
if [ -z "${REDIS_URL:-}" ]; then
  required+=(redis-server)
fi
required+=("$@")
optional=()
if [ "${TEST_DEPS_OPTIONAL:-1}" != 0 ]; then
  optional=(redis-sentinel chromium)
fi

missing_req=()
for p in ${required[@]+"${required[@]}"}; do
  have "$p" || missing_req+=("$(package_of "$p")")
done
missing_opt=()
for p in ${optional[@]+"${optional[@]}"}; do
  have "$p" || missing_opt+=("$(package_of "$p")")
done
if [ ${#missing_req[@]} -eq 0 ] && [ ${#missing_opt[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  if [ ${#missing_req[@]} -gt 0 ]; then
    log "missing: ${missing_req[*]} (no apt-get here: install it with your package manager," \
      "or set REDIS_URL to a throwaway Redis — the tests flush its databases)"
    exit 1
  fi
  log "note: ${missing_opt[*]} not installed; the tests that need them will skip"
  exit 0
fi

# How to run apt-get: directly as root, through password-less sudo, or not at all.
export DEBIAN_FRONTEND=noninteractive
as_root=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive) # sudo resets the environment
  else
    pkgs=(${missing_req[@]+"${missing_req[@]}"} ${missing_opt[@]+"${missing_opt[@]}"})
    cmd="apt-get install -y ${pkgs[*]}"
    if command -v sudo >/dev/null 2>&1; then
      cmd="sudo $cmd"
    else
      cmd="(as root) $cmd"
    fi
    if [ ${#missing_req[@]} -gt 0 ]; then
      log "missing: ${missing_req[*]}; not root and no password-less sudo, so run:"
      echo "    $cmd" >&2
      exit 1
    fi
    log "note: ${missing_opt[*]} not installed (the tests that need them will skip); to install: $cmd"
    exit 0
  fi
fi

run() {
  if [ "${DRY_RUN:-0}" != 0 ]; then
    echo "+ $*"
    return 0
  fi
  "$@"
}

apt_get() {
  run ${as_root[@]+"${as_root[@]}"} apt-get "$@"
}

pkgs=(${missing_req[@]+"${missing_req[@]}"} ${missing_opt[@]+"${missing_opt[@]}"})
log "installing ${pkgs[*]}"
if ! apt_get update -qq; then
  log "apt-get update failed; trying the install with the package lists there are"
fi
if [ ${#missing_req[@]} -gt 0 ]; then
  if ! apt_get install -y -qq --no-install-recommends "${missing_req[@]}"; then
    log "could not install ${missing_req[*]} (see apt-get's message above)"
    exit 1
  fi
fi
if [ ${#missing_opt[@]} -gt 0 ]; then
  if ! apt_get install -y -qq --no-install-recommends "${missing_opt[@]}"; then
    log "note: could not install ${missing_opt[*]}; the tests that need them will skip"
  fi
fi
if [ "${DRY_RUN:-0}" != 0 ]; then
  exit 0
fi
for p in ${required[@]+"${required[@]}"}; do
  if ! have "$p"; then
    log "$p is still not on PATH after installing $(package_of "$p")"
    exit 1
  fi
done
