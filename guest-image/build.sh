#!/bin/bash
# guest-image/build.sh — build the cgv demo/test guest from Debian packages.
#
#   guest-image/build.sh [--out DIR] [--build-dir MESON_BUILD_DIR] [--rebuild]
#
# Makes vmlinuz (Debian's linux-image-6.1.0-N-amd64) and vmlinux (the same kernel
# uncompressed, booted through its PVH entry), initrd.img (busybox-static,
# the kernel modules in modules.txt plus their dependencies, cgv-guest as
# /sbin/cgv-guest and cgv-nf as /usr/sbin/cgv-nf from the meson build dir, the
# files under rootfs/) and manifest.json, and installs them into DIR (default
# /var/lib/cgv/images/default).
#
# Reproducible and cached: every input (the .debs' sha256, the two binaries,
# modules.txt, rootfs/, this script, SOURCE_DATE_EPOCH) goes into one hash; a
# finished image lives in /var/cache/cgv/guest-image/<hash>/ and is reused; the
# .debs are kept in /var/cache/cgv/debs/. Fixed mtimes, a sorted cpio list,
# owner 0:0, renumbered inodes and gzip -n: the same inputs give the same bytes.
#
# Runs as root on Debian 12 (after apt-get update); installs kmod and cpio if
# they are missing. Prints one line at the end: the image path and whether it
# was a cache hit.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_ROOT=$(dirname "$SCRIPT_DIR")
OUT=/var/lib/cgv/images/default
BUILD_DIR=$SRC_ROOT/build
CACHE=/var/cache/cgv
REBUILD=0
# Fixed timestamp for every file in the image (overridable, and then hashed).
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
ARCH=amd64

die() { echo "build.sh: $*" >&2; exit 1; }
note() { echo "build.sh: $*" >&2; }

usage() {
    sed -n '2,20s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        --build-dir) BUILD_DIR=${2:?--build-dir needs a directory}; shift 2 ;;
        --build-dir=*) BUILD_DIR=${1#*=}; shift ;;
        --rebuild) REBUILD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
case $EPOCH in ''|*[!0-9]*) die "SOURCE_DATE_EPOCH must be a number" ;; esac

[ "$(id -u)" = 0 ] || die "must run as root"
export LC_ALL=C
umask 022

# ---- tools ---------------------------------------------------------------
need_pkgs=()
command -v depmod >/dev/null || need_pkgs+=(kmod)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v gzip >/dev/null || need_pkgs+=(gzip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    note "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${need_pkgs[@]}" >&2
fi
STRIP=$(command -v strip || true)

GUEST_BIN=$BUILD_DIR/src/guest/cgv-guest
NF_BIN=$BUILD_DIR/src/guest/cgv-nf
for b in "$GUEST_BIN" "$NF_BIN"; do
    [ -x "$b" ] || die "$b not found: build it first (meson setup build && ninja -C build), or pass --build-dir"
done

mkdir -p "$CACHE/debs" "$CACHE/guest-image"
exec 9>"$CACHE/guest-image/.lock"
flock 9   # one build at a time

# ---- packages ------------------------------------------------------------
apt_updated=0
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][0-9.]*-[0-9]*-amd64\)$/\1/p' | head -n 1
}
KPKG=$(kernel_pkg)
if [ -z "$KPKG" ]; then
    note "apt-cache does not know linux-image-amd64; running apt-get update"
    apt-get update >&2
    apt_updated=1
    KPKG=$(kernel_pkg)
fi
[ -n "$KPKG" ] || die "cannot find the kernel package (apt-cache depends linux-image-amd64)"
KVER=${KPKG#linux-image-}

# pkg_info PKG: sets PKG_VER and PKG_SHA from apt's candidate version (one
# apt-cache call: each one reads all package lists).
pkg_info() {
    local rec
    rec=$(apt-cache show --no-all-versions "$1" 2>/dev/null || true)
    PKG_VER=$(sed -n 's/^Version: //p' <<< "$rec" | head -n 1)
    PKG_SHA=$(sed -n 's/^SHA256: //p' <<< "$rec" | head -n 1)
}

# fetch_deb PKG VAR: downloads (or finds in the cache) the candidate .deb,
# checks its sha256 against apt's, and sets VAR_DEB, VAR_VER, VAR_SHA.
fetch_deb() {
    local pkg=$1 var=$2 file tmp got
    pkg_info "$pkg"
    if [ -z "$PKG_VER" ] && [ $apt_updated = 0 ]; then
        apt-get update >&2
        apt_updated=1
        pkg_info "$pkg"
    fi
    [ -n "$PKG_VER" ] && [ -n "$PKG_SHA" ] || die "apt-cache does not know $pkg"
    file=$CACHE/debs/${pkg}_${PKG_VER//:/%3a}_$ARCH.deb
    if ! [ -f "$file" ] || [ "$(sha256sum < "$file" | cut -d' ' -f1)" != "$PKG_SHA" ]; then
        note "downloading $pkg $PKG_VER"
        tmp=$(mktemp -d "$CACHE/debs/.dl.XXXXXX")
        chmod 0755 "$tmp"
        # apt drops privileges to _apt for downloads; let it write here.
        if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
        (cd "$tmp" && apt-get download "$pkg=$PKG_VER" >&2) ||
            { rm -rf "$tmp"; die "cannot download $pkg=$PKG_VER"; }
        got=$(ls "$tmp"/*.deb 2>/dev/null | head -n 1)
        [ -n "$got" ] || { rm -rf "$tmp"; die "apt-get download left no .deb for $pkg"; }
        if [ "$(sha256sum < "$got" | cut -d' ' -f1)" != "$PKG_SHA" ]; then
            rm -rf "$tmp"
            die "$pkg $PKG_VER: sha256 mismatch"
        fi
        chmod 0644 "$got"
        mv -f "$got" "$file"
        rm -rf "$tmp"
    fi
    printf -v "${var}_DEB" '%s' "$file"
    printf -v "${var}_VER" '%s' "$PKG_VER"
    printf -v "${var}_SHA" '%s' "$PKG_SHA"
}

fetch_deb "$KPKG" KERNEL
fetch_deb busybox-static BB
KDEB=$KERNEL_DEB KPKG_VER=$KERNEL_VER
BBDEB=$BB_DEB

# ---- input hash ------------------------------------------------------------
sha() { sha256sum < "$1" | cut -d' ' -f1; }
inputs() {
    echo "format cgv-guest-image 1"
    echo "epoch $EPOCH"
    echo "strip ${STRIP:+yes}"
    echo "tool $(gzip --version | head -n 1)"
    echo "tool $(cpio --version | head -n 1)"
    echo "script $(sha "${BASH_SOURCE[0]}")"
    echo "modules $(sha "$SCRIPT_DIR/modules.txt")"
    echo "deb $KPKG $KPKG_VER $KERNEL_SHA"        # verified by fetch_deb
    echo "deb busybox-static $BB_VER $BB_SHA"
    echo "bin cgv-guest $(sha "$GUEST_BIN")"
    echo "bin cgv-nf $(sha "$NF_BIN")"
    (cd "$SCRIPT_DIR/rootfs" && find . \( -type f -o -type l -o -type d \) | sort |
        while read -r f; do
            if [ -L "$f" ]; then echo "rootfs $f link $(readlink "$f")"
            elif [ -d "$f" ]; then echo "rootfs $f dir"
            else echo "rootfs $f $( [ -x "$f" ] && echo 755 || echo 644) $(sha "$f")"
            fi
        done)
}
HASH=$(inputs | sha256sum | cut -c1-32)
IMG=$CACHE/guest-image/$HASH

# ---- build (on a cache miss) ----------------------------------------------
HIT=yes
if [ $REBUILD = 1 ] || ! [ -f "$IMG/vmlinuz" ] || ! [ -f "$IMG/vmlinux" ] ||
   ! [ -f "$IMG/initrd.img" ] || ! [ -f "$IMG/manifest.json" ]; then
    HIT=no
    WORK=$(mktemp -d /tmp/cgv-guest-image.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
    K=$WORK/kernel
    R=$WORK/root
    mkdir -p "$K" "$R"
    note "building image $HASH (kernel $KVER)"

    dpkg-deb -x "$KDEB" "$K"
    [ -f "$K/boot/vmlinuz-$KVER" ] || die "$KDEB has no boot/vmlinuz-$KVER"
    depmod -b "$K" "$KVER"
    MODDIR=$K/lib/modules/$KVER

    # name -> path in modules.dep ("-" and "_" are the same to the kernel)
    declare -A MODPATH=() MODDEPS=() LOADED=()
    while IFS= read -r line; do
        path=${line%%:*}
        base=${path##*/}; base=${base%.ko*}; base=${base//-/_}
        MODPATH[$base]=$path
        MODDEPS[$base]=${line#*:}
    done < "$MODDIR/modules.dep"
    declare -A BUILTIN=()
    while IFS= read -r path; do
        base=${path##*/}; base=${base%.ko*}; base=${base//-/_}
        BUILTIN[$base]=1
    done < "$MODDIR/modules.builtin"

    LOAD=()
    load_mod() { # name [args...]: dependencies first (modules.dep lists them last-first)
        local name=${1//-/_} deps d i
        shift
        [ -z "${LOADED[$name]:-}" ] || return 0
        if [ -z "${MODPATH[$name]:-}" ]; then
            [ -n "${BUILTIN[$name]:-}" ] || die "module $name: not in $KPKG"
            LOADED[$name]=builtin
            return 0
        fi
        read -r -a deps <<< "${MODDEPS[$name]}"
        for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
            d=${deps[$i]##*/}; d=${d%.ko*}
            load_mod "$d"
        done
        LOADED[$name]=1
        LOAD+=("${MODPATH[$name]}${*:+ $*}")
    }
    while read -r name args; do
        case $name in ''|'#'*) continue ;; esac
        # shellcheck disable=SC2086
        load_mod "$name" $args
    done < "$SCRIPT_DIR/modules.txt"

    # rootfs skeleton
    for d in bin sbin usr/bin usr/sbin etc/cgv proc sys dev run tmp root mnt var/log \
             "lib/modules/$KVER"; do
        mkdir -p "$R/$d"
    done
    chmod 0700 "$R/root"
    chmod 1777 "$R/tmp"
    mknod -m 0600 "$R/dev/console" c 5 1
    mknod -m 0666 "$R/dev/null" c 1 3

    # busybox and its applet links
    dpkg-deb -x "$BBDEB" "$WORK/bb"
    install -m 0755 "$WORK/bb/bin/busybox" "$R/bin/busybox"
    "$R/bin/busybox" --list-full | sort | while read -r applet; do
        case $applet in bin/busybox|'') continue ;; esac
        [ -e "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
    done

    # kernel modules, and the load order /init follows
    : > "$R/etc/cgv/modules"
    for entry in "${LOAD[@]}"; do
        path=${entry%% *}
        mkdir -p "$R/lib/modules/$KVER/$(dirname "$path")"
        install -m 0644 "$MODDIR/$path" "$R/lib/modules/$KVER/$path"
        echo "$entry" >> "$R/etc/cgv/modules"
    done
    chmod 0644 "$R/etc/cgv/modules"

    # cgv's own programs: the agent in /sbin (inittab and /init run it), the
    # sample network function in /usr/sbin (cgvd's specs supervise it as
    # `command: /usr/sbin/cgv-nf`; /sbin/cgv-nf is a link for older specs)
    install_bin() { # src dest
        if [ -n "$STRIP" ]; then
            "$STRIP" --strip-all -o "$2" "$1"
        else
            cp "$1" "$2"
        fi
        chmod 0755 "$2"
    }
    install_bin "$GUEST_BIN" "$R/sbin/cgv-guest"
    install_bin "$NF_BIN" "$R/usr/sbin/cgv-nf"
    ln -s /usr/sbin/cgv-nf "$R/sbin/cgv-nf"

    # /init, inittab and friends, with modes fixed by the executable bit
    (cd "$SCRIPT_DIR/rootfs" && find . -type d | sort) | while read -r d; do
        mkdir -p "$R/$d"
    done
    (cd "$SCRIPT_DIR/rootfs" && find . -type f | sort) | while read -r f; do
        if [ -x "$SCRIPT_DIR/rootfs/$f" ]; then m=0755; else m=0644; fi
        install -m $m "$SCRIPT_DIR/rootfs/$f" "$R/$f"
    done
    echo "$KVER" > "$R/etc/cgv/kernel-version"

    # reproducible archive: fixed mtimes, sorted names, owner 0:0, renumbered inodes
    find "$R" -exec touch -h -d "@$EPOCH" {} +
    (cd "$R" && find . -mindepth 1 -printf '%P\n' | sort |
        cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n > "$WORK/initrd.img"
    install -m 0644 "$K/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
    # The uncompressed ELF kernel. Debian's kernel has a PVH entry point
    # (ELF note 0x12), so QEMU boots it directly in 32-bit mode: no real-mode
    # setup, no decompression. Under TCG that halves the time from start to
    # the agent's HELLO (3.5 s instead of 7 s measured here). cgvd boots
    # vmlinux when an image has it, vmlinuz otherwise.
    python3 - "$WORK/vmlinuz" "$WORK/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"\xfd7zXZ\x00")
if at < 0:
    sys.exit("vmlinuz holds no xz-compressed kernel")
elf = lzma.LZMADecompressor().decompress(data[at:])
if elf[:4] != b"\x7fELF":
    sys.exit("the decompressed kernel is not ELF")
open(sys.argv[2], "wb").write(elf)
PY
    chmod 0644 "$WORK/vmlinux"

    mods_json=$(for entry in "${LOAD[@]}"; do p=${entry%% *}; b=${p##*/}; printf '"%s",' "${b%.ko*}"; done)
    # Every value below is a package version, a hash or a module name (no
    # quotes or backslashes), so plain printf makes valid JSON.
    {
        printf '{\n'
        printf '  "format": 1,\n'
        printf '  "input_hash": "%s",\n' "$HASH"
        printf '  "kernel_version": "%s",\n' "$KVER"
        printf '  "packages": {\n'
        printf '    "%s": "%s",\n' "$KPKG" "$KPKG_VER"
        printf '    "busybox-static": "%s"\n' "$BB_VER"
        printf '  },\n'
        printf '  "modules": [%s],\n' "${mods_json%,}"
        printf '  "source_date_epoch": %s,\n' "$EPOCH"
        printf '  "files": {\n'
        printf '    "vmlinuz": {"sha256": "%s", "size": %s},\n' \
            "$(sha "$WORK/vmlinuz")" "$(stat -c %s "$WORK/vmlinuz")"
        printf '    "vmlinux": {"sha256": "%s", "size": %s},\n' \
            "$(sha "$WORK/vmlinux")" "$(stat -c %s "$WORK/vmlinux")"
        printf '    "initrd.img": {"sha256": "%s", "size": %s}\n' \
            "$(sha "$WORK/initrd.img")" "$(stat -c %s "$WORK/initrd.img")"
        printf '  },\n'
        printf '  "inputs": [\n'
        inputs | sed 's/^/    "/; s/$/",/; $ s/,$//'
        printf '  ]\n'
        printf '}\n'
    } > "$WORK/manifest.json"

    STAGE=$CACHE/guest-image/.new.$HASH.$$
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    install -m 0644 "$WORK/vmlinuz" "$WORK/vmlinux" "$WORK/initrd.img" "$WORK/manifest.json" "$STAGE/"
    rm -rf "$IMG"
    mv "$STAGE" "$IMG"
fi

# Keep the few most recently used images; every change of the binaries makes
# a new one.
touch "$IMG"
(cd "$CACHE/guest-image" && ls -1t | tail -n +5 | while read -r old; do
    case $old in [0-9a-f]*) rm -rf "./$old" ;; esac
done)

# ---- install ----------------------------------------------------------------
mkdir -p "$OUT"
chmod 0755 "$OUT"
for f in vmlinuz vmlinux initrd.img manifest.json; do
    # copy then rename: a VM starting right now sees the old or the new file
    install -m 0644 "$IMG/$f" "$OUT/.$f.tmp"
    mv -f "$OUT/.$f.tmp" "$OUT/$f"
done
if [ $HIT = yes ]; then what="cache hit"; else what="built"; fi
echo "guest image $OUT (kernel $KVER, hash $HASH, $what, $(stat -c %s "$OUT/initrd.img") byte initrd)"
