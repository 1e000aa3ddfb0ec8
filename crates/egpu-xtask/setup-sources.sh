#!/bin/sh
# Install the two oracles the AMD tables and firmware tests are checked against:
#   linux-source-6.12       (amdgpu headers; only drivers/gpu/drm/amd is extracted)
#   firmware-amd-graphics   20250410 (real firmware files under /lib/firmware/amdgpu)
# Both come from bookworm-backports (firmware from non-free-firmware), which a bare Debian 12
# image does not enable. We derive a sources file from the image's own debian.sources so that
# no mirror host is named here. Idempotent: rerunning rewrites the same file and skips work done.
# Usage: sudo sh crates/egpu-xtask/setup-sources.sh [EXTRACT_DIR]
#   EXTRACT_DIR (default: target/amd-src) receives linux-source-6.12/drivers/gpu/drm/amd.
set -eu

BASE=/etc/apt/sources.list.d/debian.sources
DERIVED=/etc/apt/sources.list.d/egpu-bookworm-backports.sources
EXTRACT_DIR=${1:-target/amd-src}
FIRMWARE_VERSION_PREFIX=20250410
KERNEL_SERIES=6.12

if [ ! -r "$BASE" ]; then
    echo "setup-sources: $BASE not found; this script expects a Debian 12 (bookworm) image" >&2
    exit 1
fi

# Take URIs and Signed-By from the stanza whose Suites list the plain "bookworm" suite (the main
# archive; the security archive has no backports suite).
awk -v RS= '
    /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|\n|$)/ || /(^|\n)Suites:[ \t]*bookworm([ \t]|\n|$)/ {
        n = split($0, lines, "\n")
        uris = ""; signed = ""
        for (i = 1; i <= n; i++) {
            if (lines[i] ~ /^URIs:/) uris = lines[i]
            if (lines[i] ~ /^Signed-By:/) signed = lines[i]
        }
        if (uris != "") {
            print "Types: deb"
            print uris
            print "Suites: bookworm-backports"
            print "Components: main contrib non-free non-free-firmware"
            if (signed != "") print signed
            exit
        }
    }' "$BASE" > "$DERIVED.tmp"

if ! grep -q '^URIs:' "$DERIVED.tmp"; then
    rm -f "$DERIVED.tmp"
    echo "setup-sources: no stanza with Suites: bookworm in $BASE" >&2
    exit 1
fi
mv "$DERIVED.tmp" "$DERIVED"

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends -t bookworm-backports \
    "linux-source-$KERNEL_SERIES" firmware-amd-graphics xz-utils

fw_version=$(dpkg-query -W -f='${Version}' firmware-amd-graphics)
case "$fw_version" in
    "$FIRMWARE_VERSION_PREFIX"*) ;;
    *)
        echo "setup-sources: firmware-amd-graphics is $fw_version, expected $FIRMWARE_VERSION_PREFIX*;" >&2
        echo "  install it explicitly: apt-get install -t bookworm-backports firmware-amd-graphics=<20250410 version>" >&2
        exit 1
        ;;
esac

tarball=/usr/src/linux-source-$KERNEL_SERIES.tar.xz
if [ ! -r "$tarball" ]; then
    echo "setup-sources: $tarball missing after install" >&2
    exit 1
fi
# The package version is recorded next to the extracted headers; xtask checks it.
ks_version=$(dpkg-query -W -f='${Version}' "linux-source-$KERNEL_SERIES")
stamp="$EXTRACT_DIR/linux-source-$KERNEL_SERIES/DEBIAN_VERSION"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$ks_version" ]; then
    echo "setup-sources: headers already extracted in $EXTRACT_DIR ($ks_version)"
else
    mkdir -p "$EXTRACT_DIR"
    rm -rf "$EXTRACT_DIR/linux-source-$KERNEL_SERIES"
    tar -xJf "$tarball" -C "$EXTRACT_DIR" "linux-source-$KERNEL_SERIES/drivers/gpu/drm/amd" \
        "linux-source-$KERNEL_SERIES/Makefile"
    printf '%s\n' "$ks_version" > "$stamp"
    echo "setup-sources: extracted drivers/gpu/drm/amd of $ks_version into $EXTRACT_DIR"
fi
echo "setup-sources: firmware-amd-graphics $fw_version, linux-source-$KERNEL_SERIES $ks_version"
