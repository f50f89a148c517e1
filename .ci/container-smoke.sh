#!/usr/bin/env bash
# Smoke test of a built image: run it, wait for Docker's HEALTHCHECK (`palisade healthcheck`) to
# report healthy, then call /health and /ready from outside the container, and stop it with
# SIGTERM expecting exit 0. Used by the image workflow (no Docker engine on the dev machines).
#
#   bash .ci/container-smoke.sh IMAGE_REF
#
# The image defaults to production settings, which (rightly) refuse the embedded SQLite default:
# the smoke test runs it in development mode on a writable tmpfs working directory.
set -euo pipefail

image="${1:?usage: container-smoke.sh IMAGE_REF}"
name="palisade-smoke-$$"
timeout="${SMOKE_TIMEOUT:-90}"

cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

docker run -d --name "$name" -p 127.0.0.1:18080:8080 \
	--read-only --mount type=tmpfs,destination=/work,tmpfs-mode=1777 --workdir /work \
	-e PALISADE_ENVIRONMENT=development "$image" >/dev/null

deadline=$((SECONDS + timeout))
while :; do
	status=$(docker inspect --format '{{.State.Health.Status}}' "$name" 2>/dev/null || echo missing)
	[ "$status" = healthy ] && break
	if [ "$status" = unhealthy ] || [ "$status" = missing ] || [ "$SECONDS" -ge "$deadline" ]; then
		docker logs "$name" 2>&1 | tail -n 50 >&2 || true
		echo "container-smoke: the container is '$status' (not healthy) after $((SECONDS))s" >&2
		exit 1
	fi
	sleep 2
done
echo "container-smoke: HEALTHCHECK reports healthy"

for path in /health /ready; do
	code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:18080$path")
	[ "$code" = 200 ] || { echo "container-smoke: GET $path answered $code" >&2; docker logs "$name" 2>&1 | tail -n 50 >&2; exit 1; }
	echo "container-smoke: GET $path 200"
done

docker stop --time 30 "$name" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "container-smoke: exit code $code after SIGTERM (expected 0)" >&2; exit 1; }
echo "container-smoke: stopped cleanly (exit 0)"
