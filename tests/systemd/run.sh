#!/usr/bin/env bash
# The service under a real systemd, from the .deb, on a minimal Debian
# bookworm (docs/book/src/install.md → "Under a real systemd"). Run as root
# on a Debian host whose apt reaches Debian's packages:
#
#   tests/systemd/run.sh
#
# 1. builds the package (`scripts/deb`: cargo deb) and takes the debug binary (default
#    features) for the sandbox (the packaged one has no `sandbox` subcommand);
# 2. debootstraps a minimal bookworm (minbase + systemd, systemd-sysv, dbus)
#    from the mirror apt is configured with, cached in target/systemd-test/rootfs
#    (a second run reuses it; delete it to rebuild);
# 3. copies it to a throwaway root, adds the test unit (mydex-systemd-test.service,
#    wanted by multi-user.target), boots it with systemd-nspawn, and waits:
#    check.sh runs inside, installs the package with apt (only what its
#    Depends pull in), follows docs/book/src/install.md, checks the
#    service through systemd and writes results to target/systemd-test/results/;
# 4. prints the results; exits non-zero if any check failed.
#
# Environment: CARGO_TARGET_DIR (default target/), MYDEX_SYSTEMD_MIRROR (default:
# apt's bookworm mirror), MYDEX_SYSTEMD_KEEP=1 keeps the throwaway root,
# MYDEX_SYSTEMD_NO_BUILD=1 reuses the .deb and binary already built,
# MYDEX_SYSTEMD_PROFILE the cargo profile the package is built with (default
# release, as shipped; .ci/run uses dev: the build the tests already made,
# without the sandbox feature, takes seconds where a release build of every
# dependency takes minutes of the two cores).
#
# `tests/systemd/run.sh --prepare` does only the slow, mostly unattended part
# that needs no build of ours (the tools, cargo-deb, the cached rootfs) and
# exits; `--prepare-tools` and `--prepare-rootfs` do one half each (.ci/run
# starts both in the background at its start: the package needs cargo-deb
# long before the suite needs the rootfs). `--build` builds
# the package and the sandbox binary and exits; .ci/run does that once the
# tests are built, then boots the container (MYDEX_SYSTEMD_NO_BUILD=1) in the
# background while the tests run.
set -euo pipefail
prepare=0 build_only=0 want_tools=1 want_rootfs=1
case "${1:-}" in
    --prepare) prepare=1 ;;
    --prepare-tools) prepare=1 want_rootfs=0 ;;
    --prepare-rootfs) prepare=1 want_tools=0 ;;
    --build) build_only=1 ;;
esac
cd "$(dirname "$0")/../.."
repo=$PWD
here=$repo/tests/systemd
[ "$(id -u)" = 0 ] || { echo "tests/systemd/run.sh: run as root (debootstrap, systemd-nspawn)" >&2; exit 2; }

cache=$repo/target/systemd-test
tgt=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$cache"
step() { printf '\n== %s\n' "$*"; }

# ---- tools
if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
    step "installing debootstrap and systemd-container"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null
fi
if [ $want_tools = 1 ] && ! cargo deb --version >/dev/null 2>&1; then
    step "installing cargo-deb"
    cargo install cargo-deb --locked
fi

# ---- build: the .deb (default-features = false, as shipped), then the sandbox binary
profile=${MYDEX_SYSTEMD_PROFILE:-release}
if [ "${MYDEX_SYSTEMD_NO_BUILD:-}" != 1 ] && [ $prepare = 0 ]; then
    step "scripts/deb --profile $profile (cargo deb, with the man pages and completions)"
    scripts/deb --profile "$profile"
    # The sandbox is a stand-in, not what is shipped: the debug build the
    # tests already made (default features) serves, stripped, and spares CI a
    # second release build.
    step "cargo build (default features: the sandbox)"
    cargo build --bin mydex-connector
    install -s -m 755 "$tgt/debug/mydex-connector" "$cache/mydex-connector-sandbox"
    deb=$(ls -t "$tgt"/debian/mydex-connector_*.deb | head -n1)
    cp "$deb" "$cache/mydex-connector.deb"
fi
[ $build_only = 1 ] && { step "built: $cache/mydex-connector.deb and the sandbox binary"; exit 0; }
[ $want_rootfs = 1 ] || { step "prepared: the tools installed"; exit 0; }

# ---- the minimal bookworm, cached
mirror=${MYDEX_SYSTEMD_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
    awk '$2 == "bookworm" { print $1; exit }')}
mirror=${mirror:-http://deb.debian.org/debian/}
rootfs=$cache/rootfs
stamp="debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm ROOT $mirror"
if [ "$(cat "$rootfs/.mydex-systemd-test" 2>/dev/null)" = "$stamp" ]; then
    step "rootfs: reusing $rootfs"
else
    step "rootfs: $stamp"
    rm -rf "$rootfs" "$rootfs.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$rootfs.tmp" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
        { tail -n 20 "$cache/debootstrap.log"; exit 1; }
    echo "$stamp" > "$rootfs.tmp/.mydex-systemd-test"
    mv "$rootfs.tmp" "$rootfs"
fi

[ $prepare = 1 ] && { step "prepared: the tools installed, the rootfs cached"; exit 0; }
deb=$cache/mydex-connector.deb
[ -f "$deb" ] || { echo "no $deb: run without MYDEX_SYSTEMD_NO_BUILD" >&2; exit 2; }
echo "package: $deb ($(du -h "$deb" | cut -f1))"
[ -x "$cache/mydex-connector-sandbox" ] || { echo "no $cache/mydex-connector-sandbox: run without MYDEX_SYSTEMD_NO_BUILD" >&2; exit 2; }

# ---- a throwaway copy with the package, the sandbox binary and the test unit
root=$cache/run-root
results=$cache/results
rm -rf "$root" "$results"
cleanup() { [ "${MYDEX_SYSTEMD_KEEP:-}" = 1 ] || rm -rf "$root"; }
trap cleanup EXIT
cp -a --reflink=auto "$rootfs" "$root"
mkdir -p "$results" "$root/root/pkg" "$root/mnt/tests" "$root/mnt/results"
cp "$deb" "$root/root/pkg/mydex-connector.deb"
install -m 755 "$cache/mydex-connector-sandbox" "$root/usr/local/bin/mydex-connector-sandbox"
install -m 644 "$here/mydex-systemd-test.service" "$root/etc/systemd/system/"
ln -sf /etc/systemd/system/mydex-systemd-test.service "$root/etc/systemd/system/multi-user.target.wants/mydex-systemd-test.service"
# The container shares the host's network (apt needs the mirror): three free
# ports for the sandbox and the daemon's two listeners.
read -r p1 p2 p3 < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
printf 'SANDBOX_PORT=%s\nCALLBACK_PORT=%s\nADMIN_PORT=%s\n' "$p1" "$p2" "$p3" > "$results/ports"

# ---- boot it; the test unit powers it off when done
step "booting the container (console: $cache/console.log)"
start=$(date +%s)
set +e
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout -k 30 1200 systemd-nspawn -D "$root" --boot \
    --register=no --keep-unit --console=pipe --resolv-conf=copy-host \
    --machine=mydex-systemd-test \
    --bind-ro="$here:/mnt/tests" --bind="$results:/mnt/results" \
    < /dev/null > "$cache/console.log" 2>&1
nspawn_rc=$?
set -e
echo "container ran $(($(date +%s) - start)) s (systemd-nspawn exit $nspawn_rc)"

step "results (target/systemd-test/results/results.txt)"
if [ -s "$results/results.txt" ]; then
    cat "$results/results.txt"
fi
if ! grep -q '^DONE failures=0$' "$results/results.txt" 2>/dev/null; then
    grep -q '^DONE' "$results/results.txt" 2>/dev/null || { echo "the check did not finish; console:"; tail -n 40 "$cache/console.log"; }
    echo "tests/systemd: FAILED"
    exit 1
fi
echo "tests/systemd: all checks passed"
