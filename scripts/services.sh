#!/usr/bin/env bash
# Make sure the real services the tests use are installed and running, idempotently, and
# quickly when all is there already. Prints what it did; fails loudly if a service cannot start.
#
#   Debian's docker.io (dockerd running), a local test image built with `docker import` from
#   busybox-static (no image registry is reachable), Debian's vagrant (its docker provider
#   runs "VMs" as containers), Debian's zookeeper, and Debian's etcd-server on 127.0.0.1.
set -euo pipefail

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: FAILED: %s\n' "$*" >&2; exit 1; }

TEST_IMAGE=${INFRAKIT_TEST_IMAGE:-infrakit-test/busybox:latest}
STATE=${INFRAKIT_SERVICES_DIR:-/var/tmp/infrakit-services}
mkdir -p "$STATE"

need_packages=()
command -v dockerd >/dev/null 2>&1 || need_packages+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need_packages+=(busybox-static)
command -v vagrant >/dev/null 2>&1 || need_packages+=(vagrant)
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || dpkg -s zookeeper >/dev/null 2>&1 || need_packages+=(zookeeper)
command -v etcd >/dev/null 2>&1 || need_packages+=(etcd-server)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)

if [ ${#need_packages[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "need root to install ${need_packages[*]}"
    say "installing ${need_packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >"$STATE/apt.log" 2>&1 \
        || { tail -20 "$STATE/apt.log" >&2; die "apt-get install ${need_packages[*]}"; }
fi

# dockerd
if ! docker info >/dev/null 2>&1; then
    say "starting dockerd"
    nohup dockerd >"$STATE/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd did not start"; }
fi
say "docker $(docker version --format '{{.Server.Version}}') running"

# The test image: busybox-static imported as a tiny rootfs.
if ! docker image inspect "$TEST_IMAGE" >/dev/null 2>&1; then
    say "building $TEST_IMAGE from busybox-static"
    rootfs=$(mktemp -d)
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
    tar -C "$rootfs" -c . | docker import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$TEST_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi
say "image $TEST_IMAGE ready"

# etcd on 127.0.0.1 (a private data dir; the Debian service unit is not used).
if ! curl -fsS --max-time 1 http://127.0.0.1:2379/health >/dev/null 2>&1; then
    say "starting etcd on 127.0.0.1:2379"
    nohup etcd --data-dir "$STATE/etcd" --listen-client-urls http://127.0.0.1:2379 \
        --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
        >"$STATE/etcd.log" 2>&1 &
    for _ in $(seq 1 100); do
        curl -fsS --max-time 1 http://127.0.0.1:2379/health >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fsS --max-time 1 http://127.0.0.1:2379/health >/dev/null 2>&1 \
        || { tail -20 "$STATE/etcd.log" >&2; die "etcd did not start"; }
fi
say "etcd running"

command -v vagrant >/dev/null 2>&1 && say "vagrant $(vagrant --version 2>/dev/null | awk '{print $2}') installed"
[ -x /usr/share/zookeeper/bin/zkServer.sh ] && say "zookeeper installed"
exit 0
