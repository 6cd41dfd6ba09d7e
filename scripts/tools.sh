# Sourced by scripts/test.sh and bench/run: `ensure_tools CMD...` installs each missing
# command from the Debian package of the same name (zstd, openssl, cmake, make, nasm).
need() { command -v "$1" >/dev/null 2>&1; }
ensure_tools() {
  local tool
  for tool in "$@"; do
    if ! need "$tool"; then
      echo "installing $tool" >&2
      if need apt-get; then
        (apt-get update -qq && apt-get install -y -qq "$tool") >/dev/null
      else
        echo "error: $tool is not installed and apt-get is not available" >&2
        return 1
      fi
    fi
  done
}
