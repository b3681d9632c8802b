#!/usr/bin/env bash
# make arm64-check: install and run this project on Debian arm64 (the base of Raspberry Pi OS)
# under qemu user emulation, the way the README's Pi section tells a user to, and check that
# its masks agree with this machine's masks of the same frames and the same model.
#
#   sudo deploy/arm64/check.sh [bookworm|bullseye]     (default bookworm: Python 3.11)
#
# Needs root (debootstrap, chroot, mounts) and Debian's qemu-user-static, debootstrap and
# binfmt-support (installed with apt-get when missing). Emulated speed means nothing, so the
# check reports only: how long the install took, that demo and bench ran, and the agreement.
#
# Cached under $RUSTSEG_ARM64_CACHE (default /var/cache/rustseg-arm64), never in the checkout:
#   SUITE/root/          the arm64 root file system (debootstrap: ~8 min the first time)
#   SUITE/pip-cache/     pip's cache, which keeps the pydensecrf2 wheel compiled there
#                        (~14 min the first time), so a second run installs in about a minute.
# Each run installs into a new venv from a fresh copy of the tracked files, so what is checked
# is this commit's install, not a leftover.
set -euo pipefail
trap "exit 143" TERM; trap "exit 130" INT   # so the EXIT trap below unmounts on a timeout too

SUITE=${1:-bookworm}
case "$SUITE" in bookworm|bullseye) ;; *)
    echo "arm64-check: unknown suite '$SUITE' (bookworm or bullseye)" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${RUSTSEG_ARM64_CACHE:-/var/cache/rustseg-arm64}/$SUITE
ROOT=$CACHE/root
MIRROR=${RUSTSEG_ARM64_MIRROR:-http://deb.debian.org/debian}
HOST_PYTHON=${HOST_PYTHON:-$REPO/.venv/bin/python}
# The emulated CPU: a Raspberry Pi 5's core (its half-precision arithmetic is what XNNPACK may
# use for a float16 model, the case where the masks can differ most from x86).
EMULATED_CPU=${RUSTSEG_ARM64_CPU:-cortex-a76}
RESULTS=${RUSTSEG_ARM64_RESULTS:-$REPO/build/arm64-check/$SUITE}
# The frames whose masks are compared: the demo's well-rusted plate, 12 frames at 320x240 (an
# invoke takes seconds under emulation; the model sees 320 px whatever the frame size).
COMPARE_SOURCE='synthetic://?width=320&height=240&frames=12&seed=3'
PACKAGES=$(sed -e 's/#.*//' "$REPO/deploy/arm64/apt-packages.txt" | xargs)

say() { printf 'arm64-check: %s\n' "$*" >&2; }
elapsed() { echo $(( $(date +%s) - $1 )); }

[ "$(id -u)" -eq 0 ] || { say "needs root (debootstrap, chroot, mounts): sudo make arm64-check"; exit 2; }
[ -x "$HOST_PYTHON" ] || { say "no host Python at $HOST_PYTHON (run make test or make demo first, or set HOST_PYTHON)"; exit 2; }

ensure_emulation() {
    if ! command -v debootstrap >/dev/null || [ ! -e /usr/bin/qemu-aarch64-static ] \
            || ! command -v update-binfmts >/dev/null; then
        command -v apt-get >/dev/null || { say "needs debootstrap and qemu-user-static, and there is no apt-get"; exit 2; }
        say "installing qemu-user-static, debootstrap and binfmt-support (Debian packages)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap \
            binfmt-support >/dev/null
    fi
    # Containers often start without binfmt_misc mounted; the kernel needs it to hand aarch64
    # binaries to qemu.
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { say "qemu-aarch64 is not registered with binfmt_misc"; exit 1; }
}

build_root() {
    if [ -e "$ROOT/.rustseg-root-complete" ]; then
        say "root file system: cached ($ROOT)"
        return
    fi
    say "root file system: debootstrap $SUITE arm64 into $ROOT (slow the first time)"
    local started; started=$(date +%s)
    rm -rf "$ROOT.partial"
    mkdir -p "$CACHE"
    # minbase: as bare as Debian gets, so the apt packages below are all a Pi user needs.
    nice -n 15 debootstrap --arch=arm64 --variant=minbase --include=ca-certificates \
        "$SUITE" "$ROOT.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { say "debootstrap failed; last lines of $CACHE/debootstrap.log:"; tail -5 "$CACHE/debootstrap.log" >&2; exit 1; }
    touch "$ROOT.partial/.rustseg-root-complete"
    mv "$ROOT.partial" "$ROOT"    # only a finished root is ever reused
    say "root file system: built in $(elapsed "$started") s"
}

MOUNTED=()
mount_into_root() {
    mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT/var/cache/pip" "$CACHE/pip-cache"
    mount -t proc proc "$ROOT/proc"; MOUNTED+=("$ROOT/proc")
    mount --rbind /dev "$ROOT/dev"; mount --make-rslave "$ROOT/dev"; MOUNTED+=("$ROOT/dev")
    # No /sys: with the host's CPU list there, XNNPACK's cpuinfo goes on to parse the host's
    # x86 /proc/cpuinfo as an ARM one and the first invoke crashes under qemu. Without it,
    # cpuinfo takes the emulated CPU's features from the auxiliary vector, as on a real Pi.
    # The refine worker passes frames through POSIX shared memory: it needs a /dev/shm.
    if ! mountpoint -q "$ROOT/dev/shm"; then
        mkdir -p "$ROOT/dev/shm"; mount -t tmpfs shm "$ROOT/dev/shm"; MOUNTED+=("$ROOT/dev/shm")
    fi
    mount --bind "$CACHE/pip-cache" "$ROOT/var/cache/pip"; MOUNTED+=("$ROOT/var/cache/pip")
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # pip in the root trusts what this machine trusts (a TLS-inspecting proxy's CA, say).
    cp -L /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca-certificates.crt"
}
unmount_root() {
    local i
    for (( i=${#MOUNTED[@]}-1; i>=0; i-- )); do
        umount -R "${MOUNTED[$i]}" 2>/dev/null || umount -lR "${MOUNTED[$i]}" 2>/dev/null || true
    done
    MOUNTED=()
}
trap unmount_root EXIT

in_root() {   # run a shell command inside the arm64 root, niced: it shares the machine
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 QEMU_CPU="$EMULATED_CPU" PIP_CACHE_DIR=/var/cache/pip PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_CERT=/etc/ssl/host-ca-certificates.crt \
        nice -n 15 /bin/bash -euo pipefail -c "$1"
}

copy_checkout() {
    # The tracked files of this checkout (what a clone holds), nothing built or ignored.
    rm -rf "$ROOT/opt/rustseg"
    mkdir -p "$ROOT/opt/rustseg"
    git -C "$REPO" ls-files -z --cached | (cd "$REPO" && tar --null -T - -cf -) \
        | tar -xf - -C "$ROOT/opt/rustseg"
}

ensure_emulation
build_root
mount_into_root
say "inside the root: $(in_root 'uname -m') ($EMULATED_CPU under qemu), $(in_root 'python3 --version 2>/dev/null || echo no python3 yet')"

started=$(date +%s)
in_root "dpkg -s $PACKAGES >/dev/null 2>&1 || { apt-get update -q >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null; }"
APT_S=$(elapsed "$started")
say "apt packages ($PACKAGES): ready in $APT_S s"

copy_checkout
# The README's Pi lines, word for word (--system-site-packages lets picamera2 in on a Pi).
started=$(date +%s)
in_root "rm -rf /opt/venv && python3 -m venv --system-site-packages /opt/venv && cd /opt/rustseg && \
    /opt/venv/bin/pip install -q '.[edge,report]'" \
    || { say "pip install '.[edge,report]' failed on arm64 ($SUITE)"; exit 1; }
INSTALL_S=$(elapsed "$started")
say "pip install '.[edge,report]': $INSTALL_S s"

OUT=/opt/check-out
in_root "rm -rf $OUT && mkdir -p $OUT && cd $OUT && \
    timeout 1800 /opt/venv/bin/rustseg demo --frames 5 --quiet --out-dir $OUT/demo > $OUT/demo.txt 2>&1" \
    || { say "rustseg demo failed on arm64:"; tail -20 "$ROOT$OUT/demo.txt" >&2; exit 1; }
say "rustseg demo ran: $(grep -m1 'report:' "$ROOT$OUT/demo.txt" || tail -1 "$ROOT$OUT/demo.txt")"
in_root "cd $OUT && timeout 1800 /opt/venv/bin/rustseg bench --frames 3 --warmup 1 --json $OUT/bench.json > $OUT/bench.txt 2>&1" \
    || { say "rustseg bench failed on arm64:"; tail -20 "$ROOT$OUT/bench.txt" >&2; exit 1; }
say "rustseg bench ran (emulated timings, meaningless): $(grep -m1 ' FPS ' "$ROOT$OUT/bench.txt")"

# The same frames, the same model, the same command on both machines: thresholded seg masks
# (refine none) isolate the model; light adds k-means and the CRF, which run on the CPU too.
rm -rf "$RESULTS"; mkdir -p "$RESULTS"
for refine in none light; do
    in_root "cd $OUT && timeout 1800 /opt/venv/bin/rustseg run --source '$COMPARE_SOURCE' --refine $refine \
        --headless --quiet --save-masks $OUT/masks-$refine --log $OUT/frames-$refine.jsonl > $OUT/run-$refine.txt 2>&1" \
        || { say "rustseg run --refine $refine failed on arm64:"; tail -20 "$ROOT$OUT/run-$refine.txt" >&2; exit 1; }
    cp -r "$ROOT$OUT/masks-$refine" "$RESULTS/arm64-masks-$refine"
    cp "$ROOT$OUT/frames-$refine.jsonl" "$RESULTS/arm64-frames-$refine.jsonl"
    (cd "$REPO" && PYTHONPATH="$REPO" nice -n 15 "$HOST_PYTHON" -m edge.cli run --source "$COMPARE_SOURCE" \
        --refine "$refine" --headless --quiet --save-masks "$RESULTS/host-masks-$refine" \
        --log "$RESULTS/host-frames-$refine.jsonl" > "$RESULTS/host-run-$refine.txt" 2>&1) \
        || { say "rustseg run --refine $refine failed on this machine:"; tail -20 "$RESULTS/host-run-$refine.txt" >&2; exit 1; }
done
cp "$ROOT$OUT/demo.txt" "$ROOT$OUT/bench.txt" "$RESULTS/"

unmount_root
say "results in $RESULTS"
"$HOST_PYTHON" "$REPO/deploy/arm64/compare_masks.py" "$RESULTS" --suite "$SUITE" \
    --apt-seconds "$APT_S" --install-seconds "$INSTALL_S"
