#!/usr/bin/env bash
# make test-containers: build the Dockerfile and run docker-compose.yml on a real engine.
#
#  1. Installs what is missing (docker.io, docker-compose, mmdebstrap) with apt-get.
#  2. Starts a private dockerd (its own socket, data and run directories in one temporary
#     folder, no default bridge, no iptables rules) that only this run uses.
#  3. Makes the Dockerfile's base (debian:<suite>-slim) locally: mmdebstrap
#     --variant=minbase of that suite, slimmed like the published image, with this
#     machine's own CA certificates (/usr/local/share/ca-certificates) so that a build
#     behind an intercepting proxy can download; cached for a week.
#  4. Builds the image from the Dockerfile as shipped; checks it kept its HEALTHCHECK
#     and runs by itself (its own CMD, healthy, not root).
#  5. Runs docker-compose.yml as shipped (a copy without the top-level `name:`, which
#     compose v1 rejects; -p names the project instead), published on a free loopback
#     port: the registry healthy, then the subsystems (compose's depends_on gate, checked
#     from the engine's events), then the offliner, whose exit code is the test's.
#  6. Restarts the registry's container, then replaces it with a new one: each time the
#     same state comes back (the second time from the volume alone); it runs as uid 10001.
#  7. The `ha` profile (only if this pageholder has `serve --store`): builds postgres from
#     deploy/postgres, starts postgres, registry-a and registry-b on it and the subsystems
#     with both URLs; exactly one registry leads; runs ha-offliner; kills the leader's
#     container; the other takes over with the same state (read with both URLs, from the
#     host and through the CLI in a subsystem's container).
#  8. Removes every container, network, volume and image, stops the daemon and deletes
#     its folder, also after a failure (trap), which prints the containers' logs first.
#
# Skips (exit 0, with the reason) only where no engine can run at all: not root, no
# apt-get to install one, no namespaces. Any other problem fails.
#
# PAGEHOLDER_CONTAINERS_CACHE: where the base's root filesystem is cached
# (default: /var/cache/pageholder-containers).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/tests/containers"
CACHE="${PAGEHOLDER_CONTAINERS_CACHE:-/var/cache/pageholder-containers}"
RUN_PREFIX=/var/tmp/pageholder-containers.
SUBSYSTEMS=(nic0 gpu0 rdma0)
EXPECTED_BLOCKS=("40=offline" "41=offline" "42=offline" "44=online")  # docker-compose.yml's scenario
UID_EXPECTED=10001

PROJECT="phct$$"
TOKEN="containers-test-token-$$-$RANDOM$RANDOM$RANDOM"
RUN=""           # the daemon's folder, once made
DOCKERD_PID=""
TORN_DOWN=""
SKIPPED=""
PASSED=0
STARTED=$SECONDS

say() { printf '==> [%3ds] %s\n' $((SECONDS - STARTED)) "$*"; }
ok() { PASSED=$((PASSED + 1)); printf 'ok %d - %s\n' "$PASSED" "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
skip() { SKIPPED=1; printf 'SKIPPED make test-containers: %s\n' "$*"; exit 0; }

# ---------------------------------------------------------------- what can run here

[ "$(uname -s)" = Linux ] || skip "a container engine needs Linux (this is $(uname -s))"
[ "$(id -u)" -eq 0 ] || skip "installing and starting a container engine needs root"
probe=$(unshare --mount --net --pid --fork true 2>&1) ||
    skip "cannot create namespaces here, so no engine can run: ${probe:-unshare failed}"

missing=()
command -v dockerd >/dev/null && [ -x /usr/bin/docker ] || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]}"
    log=$(mktemp)
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        fail "apt-get could not install ${missing[*]}"
    fi
    rm -f "$log"
fi
DOCKER_CLI=/usr/bin/docker
docker() { "$DOCKER_CLI" "$@"; }
if docker compose version >/dev/null 2>&1; then
    COMPOSE=("$DOCKER_CLI" compose)
else
    COMPOSE=(docker-compose)
fi

# ---------------------------------------------------------------- teardown, also on failure

print_logs() {
    local id name seen=""
    [ -n "$DOCKERD_PID" ] && docker info >/dev/null 2>&1 || return 0
    # the registry first: its log is what says why it did not come up
    for id in $(docker ps -aq --filter "name=registry") $(docker ps -aq); do
        case " $seen " in *" $id "*) continue ;; esac
        seen="$seen $id"
        name=$(docker inspect -f '{{.Name}} ({{.State.Status}}, exit {{.State.ExitCode}})' "$id")
        printf '\n----- log of container %s -----\n' "${name#/}" >&2
        docker logs --tail 200 "$id" 2>&1 | sed 's/^/    /' >&2
    done
    printf '%s\n' '----- end of logs -----' >&2
}

stop_dockerd() {
    local pid
    [ -n "$DOCKERD_PID" ] || return 0
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
        kill -TERM "$DOCKERD_PID"
        for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$DOCKERD_PID" 2>/dev/null && kill -KILL "$DOCKERD_PID"
    fi
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=""
    # containerd, its shims and docker-proxy all name the daemon's folder: end any left
    for pid in $(pgrep -f -- "$RUN/" || true); do
        printf 'ending process %s left by the daemon: %s\n' "$pid" \
            "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
        kill -KILL "$pid" 2>/dev/null || true
    done
}

remove_folder() {
    local folder=$1 target
    for target in $(findmnt -rn -o TARGET | grep -F -- "$folder/" | sort -r); do
        umount -l "$target" 2>/dev/null || true
    done
    rm -rf --one-file-system -- "$folder"
}

teardown() {
    # Everything on this daemon is this run's: remove it all, then prove it is gone.
    local left
    if [ -n "$DOCKERD_PID" ] && docker info >/dev/null 2>&1; then
        if [ -f "$RUN/docker-compose.yml" ]; then
            compose down --volumes --remove-orphans --timeout 5 >"$RUN/down.log" 2>&1 ||
                cat "$RUN/down.log" >&2
        fi
        docker ps -aq | xargs -r "$DOCKER_CLI" rm --force --volumes >/dev/null
        docker images -aq | xargs -r "$DOCKER_CLI" rmi --force >/dev/null 2>&1
        docker volume ls -q | xargs -r "$DOCKER_CLI" volume rm --force >/dev/null
        docker network prune --force >/dev/null
        left=$(
            docker ps -aq
            docker images -aq
            docker volume ls -q
            docker network ls -q --filter type=custom
        )
        [ -z "$left" ] || { printf 'still there after teardown:\n%s\n' "$left" >&2; return 1; }
    fi
    stop_dockerd
    [ -z "$RUN" ] || remove_folder "$RUN"
    TORN_DOWN=1
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ "$rc" -ne 0 ] && [ -z "$SKIPPED" ]; then
        print_logs
        if [ -n "$RUN" ] && [ -f "$RUN/dockerd.log" ] && ! kill -0 "${DOCKERD_PID:-0}" 2>/dev/null; then
            printf '\n----- dockerd log -----\n' >&2
            tail -n 40 "$RUN/dockerd.log" >&2
        fi
    fi
    [ -n "$TORN_DOWN" ] || teardown || rc=1
    if [ -z "$SKIPPED" ]; then
        say "done"
        printf 'test-containers: %d passed, %d failed\n' "$PASSED" $((rc != 0))
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- a private daemon

# Folders of earlier runs that were killed before their teardown: only if their daemon is gone.
for old in "$RUN_PREFIX"*; do
    [ -d "$old" ] || continue
    pid=$(cat "$old/pid" 2>/dev/null || echo 0)
    kill -0 "$pid" 2>/dev/null || remove_folder "$old"
done

RUN=$(mktemp -d "${RUN_PREFIX}XXXXXX")
export DOCKER_HOST="unix://$RUN/docker.sock"
say "starting a private dockerd in $RUN"
# setsid: a Ctrl-C reaches this script (which tears down), not the daemon directly.
setsid dockerd --host "$DOCKER_HOST" --data-root "$RUN/data" --exec-root "$RUN/exec" \
    --pidfile "$RUN/dockerd.pid" --bridge none --iptables=false --ip6tables=false \
    --ip-masq=false --log-level warn </dev/null >"$RUN/dockerd.log" 2>&1 &
DOCKERD_PID=$!
echo "$DOCKERD_PID" >"$RUN/pid"
deadline=$((SECONDS + 60))
until docker version >/dev/null 2>&1; do
    kill -0 "$DOCKERD_PID" 2>/dev/null || fail "dockerd exited at start (its log follows)"
    [ $SECONDS -lt $deadline ] || fail "dockerd did not answer within 60 s"
    sleep 0.2
done
ok "dockerd $(docker version -f '{{.Server.Version}}') answers on its own socket; compose: $("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -n 1)"

# ---------------------------------------------------------------- the base image

BASE=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$ROOT/Dockerfile" | head -n 1)
[[ $BASE =~ ^debian:([a-z]+)-slim$ ]] || fail "the Dockerfile's base is $BASE, not debian:<suite>-slim"
SUITE=${BASH_REMATCH[1]}
# shellcheck disable=SC2016 # "$1" in a hook is expanded by mmdebstrap, not here
MMDEBSTRAP=(
    --variant=minbase --format=tar --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    # what the published -slim images leave out
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    # this machine's own CAs: ca-certificates, when a build installs it, adds them
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"'
    --customize-hook='sync-in /usr/local/share/ca-certificates /usr/local/share/ca-certificates'
)
mkdir -p /usr/local/share/ca-certificates
key=$(
    {
        printf '%s\n' "$SUITE" "${MMDEBSTRAP[@]}"
        find /usr/local/share/ca-certificates -type f -print0 | sort -z | xargs -0r cat
    } | sha256sum | cut -c1-16
)
BASE_TAR="$CACHE/$SUITE-minbase-$key.tar"
if [ -n "$(find "$BASE_TAR" -mtime -7 2>/dev/null)" ]; then
    say "base $BASE: root filesystem from the cache ($BASE_TAR)"
else
    say "base $BASE: mmdebstrap --variant=minbase $SUITE"
    mkdir -p "$CACHE"
    rm -rf -- "$CACHE"/*-minbase-*.tar*  # older bases
    mmdebstrap "${MMDEBSTRAP[@]}" "$SUITE" "$BASE_TAR.part" >"$RUN/mmdebstrap.log" 2>&1 ||
        { tail -n 30 "$RUN/mmdebstrap.log" >&2; fail "mmdebstrap failed"; }
    mv "$BASE_TAR.part" "$BASE_TAR"
fi
docker import --change 'CMD ["bash"]' "$BASE_TAR" "$BASE" >/dev/null
ok "base image $BASE imported ($(docker image inspect -f '{{.Size}}' "$BASE" | awk '{printf "%.0f MB", $1 / 1e6}'))"

# ---------------------------------------------------------------- the image

IMAGE=$(sed -n 's/^ *image: *\([^ ]*\).*/\1/p' "$ROOT/docker-compose.yml" | head -n 1)
[ -n "$IMAGE" ] || fail "docker-compose.yml names no image"
say "building $IMAGE from the Dockerfile (log: build.log)"
# --network host: the daemon has no bridge of its own; the build's RUN steps download.
DOCKER_BUILDKIT=0 docker build --network host --tag "$IMAGE" "$ROOT" >"$RUN/build.log" 2>&1 ||
    { tail -n 40 "$RUN/build.log" >&2; fail "docker build failed"; }
[ -n "$(docker image inspect -f '{{if .Config.Healthcheck}}yes{{end}}' "$IMAGE")" ] ||
    fail "the image has no HEALTHCHECK (built in a format that drops it?)"
SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')
ok "image $IMAGE built with its HEALTHCHECK: $SIZE"

wait_healthy() {  # CONTAINER SECONDS: until the engine's own healthcheck says healthy
    local container=$1 deadline=$((SECONDS + $2)) state
    while :; do
        state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}' "$container")
        case $state in
        "running healthy "*) return 0 ;;
        exited* | dead*) fail "$container stopped (exit ${state##* }) before it was healthy" ;;
        *" none "*) fail "$container has no healthcheck" ;;
        *" unhealthy "*) fail "$container is unhealthy" ;;
        esac
        [ $SECONDS -lt $deadline ] || fail "$container not healthy within $2 s ($state)"
        sleep 0.5
    done
}

runs_as_uid() {  # CONTAINER: pid 1 is `pageholder serve`, running as UID_EXPECTED
    local container=$1 uids cmd
    cmd=$(docker exec "$container" cat /proc/1/cmdline | tr '\0' ' ')
    uids=$(docker exec "$container" sed -n 's/^Uid:\s*//p' /proc/1/status | tr -s '[:space:]' ' ')
    [[ $cmd == *"pageholder serve "* ]] || fail "$container runs '$cmd', not pageholder serve"
    [ "$uids" = "$UID_EXPECTED $UID_EXPECTED $UID_EXPECTED $UID_EXPECTED " ] ||
        fail "$container's pageholder serve runs with uids $uids, not $UID_EXPECTED"
}

say "running $IMAGE by itself, with its own CMD"
docker run --detach --name "$PROJECT-alone" --env PAGEHOLDER_ADMIN_TOKEN="$TOKEN" "$IMAGE" >/dev/null
wait_healthy "$PROJECT-alone" 60
runs_as_uid "$PROJECT-alone"
docker rm --force --volumes "$PROJECT-alone" >/dev/null
ok "the image's own CMD serves, its HEALTHCHECK passes, it runs as uid $UID_EXPECTED"

# ---------------------------------------------------------------- docker-compose.yml

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PAGEHOLDER_ADMIN_TOKEN="$TOKEN" PAGEHOLDER_HOST_PORT="127.0.0.1:$PORT"
URL="http://127.0.0.1:$PORT"
# compose v1 rejects a top-level `name:`; the shipped file keeps it for Compose v2.
sed '/^name:/d' "$ROOT/docker-compose.yml" >"$RUN/docker-compose.yml"
COMPOSE+=(--project-name "$PROJECT" --project-directory "$ROOT" --file "$RUN/docker-compose.yml")
compose() { "${COMPOSE[@]}" "$@"; }
compose config --quiet || fail "compose rejects docker-compose.yml"
container_of() { compose ps -q "$1"; }

say "compose up: registry, then ${SUBSYSTEMS[*]} once it is healthy (published on $URL)"
since=$(date +%s)
timeout 300 "${COMPOSE[@]}" up --detach --no-build registry "${SUBSYSTEMS[@]}" ||
    fail "compose up of the registry and the subsystems failed"
REGISTRY=$(container_of registry)
wait_healthy "$REGISTRY" 60
# The engine's events: the registry's first `healthy` precedes every subsystem's start.
docker events --since "$since" --until "$(($(date +%s) + 1))" \
    --filter "label=com.docker.compose.project=$PROJECT" \
    --format '{{.TimeNano}} {{.Status}} {{index .Actor.Attributes "com.docker.compose.service"}}' \
    >"$RUN/events.log"
awk -v subsystems="${SUBSYSTEMS[*]}" '
    $2 == "health_status:" && $3 == "healthy" && $4 == "registry" && !healthy { healthy = $1 }
    $2 == "start" { start[$3] = $1 }
    END {
        n = split(subsystems, names, " ")
        if (!healthy) { print "the registry never reported healthy"; exit 1 }
        for (i = 1; i <= n; i++)
            if (!(names[i] in start) || start[names[i]] < healthy) {
                print names[i] " started before the registry was healthy"; exit 1
            }
    }' "$RUN/events.log" >&2 || { cat "$RUN/events.log" >&2; fail "depends_on did not gate the start"; }
ok "registry healthy, then ${SUBSYSTEMS[*]} started (depends_on: service_healthy)"

say "compose up: the offliner"
timeout 120 "${COMPOSE[@]}" up --detach --no-build offliner || fail "compose up of the offliner failed"
OFFLINER=$(container_of offliner)
code=$(timeout 180 "$DOCKER_CLI" wait "$OFFLINER") || fail "the offliner did not finish in 180 s"
[ "$code" = 0 ] || fail "the offliner exited $code"
ok "the offliner exited 0: blocks 40-42 went offline, block 44 (rdma0 refuses) stayed online"

before=$(python3 "$HERE/registry_state.py" "$URL" "$TOKEN" "${EXPECTED_BLOCKS[@]}") ||
    fail "the registry's state, read from the host, is not the scenario's"

same_state_after() {  # WHAT: the registry is healthy again and reads as it did before
    wait_healthy "$REGISTRY" 60
    after=$(python3 "$HERE/registry_state.py" "$URL" "$TOKEN" "${EXPECTED_BLOCKS[@]}") ||
        fail "after $1, the registry's state is not the scenario's"
    [ "$before" = "$after" ] || fail "the state changed across $1:
before: $before
after:  $after"
}

say "restarting the registry's container"
started=$(docker inspect -f '{{.State.StartedAt}}' "$REGISTRY")
timeout 60 "${COMPOSE[@]}" restart --timeout 10 registry || fail "compose restart registry failed"
[ "$(docker inspect -f '{{.State.StartedAt}}' "$REGISTRY")" != "$started" ] ||
    fail "the registry's container did not restart"
same_state_after "a restart"
ok "after a restart of its container the registry has the same state"

say "recreating the registry's container: only the volume is left of the old one"
timeout 60 "${COMPOSE[@]}" up --detach --no-build --no-deps --force-recreate registry ||
    fail "compose could not recreate the registry"
old=$REGISTRY
REGISTRY=$(container_of registry)
[ "$REGISTRY" != "$old" ] || fail "the registry's container was not recreated"
same_state_after "a new container"
owner=$(docker exec "$REGISTRY" stat -c %u /data/pageholder.db) ||
    fail "no /data/pageholder.db in the registry's volume"
[ "$owner" = "$UID_EXPECTED" ] || fail "/data/pageholder.db belongs to uid $owner"
ok "a new registry container has the same state, from the volume (/data/pageholder.db)"
runs_as_uid "$REGISTRY"
ok "the registry runs as uid $UID_EXPECTED, not root"

# ---------------------------------------------------------------- the ha profile

is_ready() {  # URL: /readyz answers 200 (the leader; a standby answers 503 not_leader)
    python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.exit(0 if opener.open(sys.argv[1] + "/readyz", timeout=3).status == 200 else 1)
PY
}

if ! docker run --rm "$IMAGE" pageholder serve --help 2>&1 | grep -q -- '--store'; then
    say "the ha profile: skipped (this pageholder's serve has no --store)"
else
    say "the ha profile: the default topology down, building postgres from deploy/postgres"
    compose down --volumes --timeout 5 >"$RUN/down-default.log" 2>&1 ||
        { cat "$RUN/down-default.log" >&2; fail "compose down of the default topology failed"; }
    PG_IMAGE=$(sed -n 's/^ *image: *\(pageholder-postgres[^ ]*\).*/\1/p' "$ROOT/docker-compose.yml" | head -n 1)
    [ -n "$PG_IMAGE" ] || fail "docker-compose.yml names no pageholder-postgres image"
    DOCKER_BUILDKIT=0 docker build --network host --tag "$PG_IMAGE" "$ROOT/deploy/postgres" \
        >"$RUN/build-postgres.log" 2>&1 ||
        { tail -n 40 "$RUN/build-postgres.log" >&2; fail "docker build of deploy/postgres failed"; }
    ok "image $PG_IMAGE built ($(docker image inspect -f '{{.Size}}' "$PG_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"

    PORT_A=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    PORT_B=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    export PAGEHOLDER_HA_PORT_A="127.0.0.1:$PORT_A" PAGEHOLDER_HA_PORT_B="127.0.0.1:$PORT_B"
    export PAGEHOLDER_PG_PASSWORD="containers-test-pg-$$-$RANDOM$RANDOM"
    URL_A="http://127.0.0.1:$PORT_A" URL_B="http://127.0.0.1:$PORT_B"
    HA=("${COMPOSE[@]}" --profile ha)
    say "compose --profile ha up: postgres, registry-a, registry-b, ha-nic0, ha-gpu0, ha-rdma0"
    timeout 300 "${HA[@]}" up --detach --no-build postgres registry-a registry-b ha-nic0 ha-gpu0 ha-rdma0 ||
        fail "compose --profile ha up failed"
    REG_A=$("${HA[@]}" ps -q registry-a) REG_B=$("${HA[@]}" ps -q registry-b)
    wait_healthy "$REG_A" 90
    wait_healthy "$REG_B" 90
    deadline=$((SECONDS + 60)) LEADER="" STANDBY_URL=""
    while [ -z "$LEADER" ]; do
        a=0 b=0
        is_ready "$URL_A" && a=1
        is_ready "$URL_B" && b=1
        [ "$a$b" != 11 ] || fail "registry-a and registry-b both answer /readyz 200: two leaders"
        [ "$a$b" = 10 ] && LEADER=$REG_A STANDBY_URL=$URL_B
        [ "$a$b" = 01 ] && LEADER=$REG_B STANDBY_URL=$URL_A
        [ -n "$LEADER" ] || [ $SECONDS -lt $deadline ] || fail "no registry leads within 60 s"
        [ -n "$LEADER" ] || sleep 0.5
    done
    leader_name=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$LEADER")
    ok "both registries up on one PostgreSQL store, exactly one leads ($leader_name)"

    timeout 120 "${HA[@]}" up --detach --no-build ha-offliner || fail "compose up of ha-offliner failed"
    code=$(timeout 180 "$DOCKER_CLI" wait "$("${HA[@]}" ps -q ha-offliner)") ||
        fail "ha-offliner did not finish in 180 s"
    [ "$code" = 0 ] || fail "ha-offliner exited $code"
    ok "ha-offliner exited 0 through both URLs: blocks 40-42 offline, 44 online"

    NIC0=$("${HA[@]}" ps -q ha-nic0)
    before=$(python3 "$HERE/registry_state.py" "$URL_A,$URL_B" "$TOKEN" "${EXPECTED_BLOCKS[@]}") ||
        fail "the ha registries' state is not the scenario's"
    # What the CLI in a subsystem's container reads with both URLs: each holder's holds
    # (not last_error: a registry's own diagnostics, not kept across a takeover).
    holders_of() {
        docker exec "$NIC0" pageholder holders --json | python3 -c \
            'import json, sys; print(sorted((h["name"], h["holds"], h["held_pages"]) for h in json.load(sys.stdin)))'
    }
    holders_before=$(holders_of) ||
        fail "pageholder holders with both URLs failed in ha-nic0's container"

    say "killing the leader's container ($leader_name)"
    docker kill "$LEADER" >/dev/null
    deadline=$((SECONDS + 60))
    until is_ready "$STANDBY_URL"; do
        [ $SECONDS -lt $deadline ] || fail "the standby did not take over within 60 s"
        sleep 0.5
    done
    ok "the standby took over ($((60 - deadline + SECONDS)) s after the kill)"
    after=$(python3 "$HERE/registry_state.py" "$URL_A,$URL_B" "$TOKEN" "${EXPECTED_BLOCKS[@]}") ||
        fail "after the takeover, the state is not the scenario's"
    [ "$before" = "$after" ] || fail "the state changed across the takeover:
before: $before
after:  $after"
    holders_after=$(holders_of) ||
        fail "pageholder holders with both URLs failed after the takeover"
    [ "$holders_before" = "$holders_after" ] || fail "the holders changed across the takeover:
before: $holders_before
after:  $holders_after"
    ok "every hold made before the takeover is there, read with both URLs (host and CLI)"
fi

say "tearing down"
teardown || fail "teardown left things behind"
ok "no container, network, volume, image or daemon left"
