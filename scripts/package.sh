#!/usr/bin/env bash
# Builds the installable packages of manyi for servers without internet:
# for x86_64 and aarch64 (Kunpeng, Phytium) a .deb, an .rpm and a .tar.gz
# with install.sh, all with the same layout:
#
#   /usr/bin/manyi                     wrapper: /etc/manyi/manyi.toml and secrets.env by default
#   /usr/lib/manyi/manyi               the binary
#   /usr/lib/manyi/setup.sh            user manyi, /var/lib/manyi (0750), rater key (maintainer scripts run it)
#   /lib/systemd/system/manyi.service  (/usr/lib/systemd/system in the .rpm and .tar.gz)
#   /etc/manyi/manyi.toml              configuration files: never overwritten on upgrade
#   /etc/manyi/reference/{orgs.csv,offices.toml}
#   /usr/share/manyi/{jobs,survey-templates,reference/{categories,calendar}.csv}
#   /usr/share/doc/manyi/README.md
#
#   scripts/package.sh                       both targets, version from Cargo.toml
#   scripts/package.sh --target aarch64      one target (x86_64 | aarch64 | all)
#   scripts/package.sh --version 0.2.0 --out DIR --no-build
#   scripts/package.sh --target x86_64 --binary PATH --version 0.1.0~old   package a binary built elsewhere
#
# The binaries are built with cargo-zigbuild against glibc 2.28 (the glibc of
# Kylin V10 and UOS V20), so they run there although this machine's glibc is
# newer: `pip install ziglang cargo-zigbuild` once. With --glibc host they
# are built with cargo and Debian's gcc-aarch64-linux-gnu instead, needing
# this machine's glibc or newer. The .deb is made with dpkg-deb, the .rpm with
# rpmbuild (Debian: apt-get install rpm), the .tar.gz with tar; no cargo
# plugin is needed for packaging.
#
# Output: target/package/ (or --out): manyi_VERSION_ARCH.deb,
# manyi-VERSION-1.ARCH.rpm, manyi-VERSION-ARCH.tar.gz, and SHA256SUMS.
# `--check` only checks the packaging files (fast; what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

targets=(x86_64 aarch64)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
out="$repo/target/package"
build=1
glibc=2.28
check_only=0
binary=

while [ $# -gt 0 ]; do
    case "$1" in
        --target) shift; [ "${1:-}" = all ] && targets=(x86_64 aarch64) || targets=("${1:?--target needs x86_64, aarch64 or all}") ;;
        --version) shift; version="${1:?--version needs a version}" ;;
        --out) shift; out="${1:?--out needs a directory}" ;;
        --no-build) build=0 ;;
        --glibc) shift; glibc="${1:?--glibc needs 2.28 (or another version) or host}" ;;
        --check) check_only=1 ;;
        --binary) shift; binary="${1:?--binary needs a path}"; build=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "package.sh: $*" >&2; exit 1; }

# The quick check CI runs: every script parses, the unit is valid, the
# configuration names only files the package ships, the spec and control
# fields are complete.
check_packaging() {
    local f
    for f in scripts/package.sh packaging/setup.sh packaging/manyi.sh packaging/install.sh packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm; do
        bash -n "$f" || die "$f does not parse"
        [ -x "$f" ] || die "$f is not executable"
    done
    grep -q '^ExecStart=/usr/lib/manyi/manyi serve$' packaging/manyi.service || die "packaging/manyi.service: ExecStart is not /usr/lib/manyi/manyi serve"
    if command -v systemd-analyze >/dev/null 2>&1; then
        # verify wants the ExecStart binary to exist; a stand-in copy of the unit points at /bin/true.
        local tmp
        tmp=$(mktemp -d)
        sed 's#^ExecStart=.*#ExecStart=/bin/true#' packaging/manyi.service >"$tmp/manyi.service"
        local said
        said=$(systemd-analyze verify --man=no "$tmp/manyi.service" 2>&1) || { rm -rf "$tmp"; die "packaging/manyi.service does not verify: $said"; }
        rm -rf "$tmp"
        [ -z "$said" ] || die "packaging/manyi.service: systemd-analyze verify says: $said"
    fi
    # Every path of the shipped configuration is one the package installs.
    local p
    for p in $(grep -o '"/[^"]*"' packaging/manyi.toml | tr -d '"'); do
        case "$p" in
            /var/lib/manyi|/var/lib/manyi/inbox/ratings|/var/lib/manyi/inbox/wjx) ;;
            /usr/share/manyi/survey-templates) [ -d survey-templates ] || die "survey-templates/ is missing" ;;
            /usr/share/manyi/jobs) [ -d jobs ] || die "jobs/ is missing" ;;
            /usr/share/manyi/reference/*) [ -f "reference/${p##*/}" ] || die "reference/${p##*/} is missing" ;;
            /etc/manyi/reference/*) [ -f "packaging/reference/${p##*/}" ] || die "packaging/reference/${p##*/} is missing" ;;
            *) die "packaging/manyi.toml names $p, which the package does not install" ;;
        esac
    done
    for p in /etc/manyi/manyi.toml /etc/manyi/reference/orgs.csv /etc/manyi/reference/offices.toml; do
        grep -q "^%config(noreplace) $p\$" packaging/rpm/manyi.spec || die "packaging/rpm/manyi.spec: $p is not %config(noreplace)"
    done
    [ -n "$version" ] || die "no version in Cargo.toml"
    echo "package.sh --check: packaging files ok (version $version)"
}

if [ "$check_only" = 1 ]; then
    check_packaging
    exit 0
fi
check_packaging >/dev/null

command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (apt-get install dpkg)"
command -v rpmbuild >/dev/null || die "rpmbuild is missing (apt-get install rpm)"
if [ "$build" = 1 ] && [ "$glibc" != host ]; then
    command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild is missing: pip install ziglang cargo-zigbuild (or --glibc host)"
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/times"

# The highest GLIBC_x.y symbol version the binary needs.
glibc_floor() {
    readelf -W --dyn-syms "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -u -V | tail -n1
}

build_binary() {
    local arch=$1 triple="$1-unknown-linux-gnu" start
    start=$(date +%s)
    if [ "$glibc" = host ]; then
        if [ "$arch" = aarch64 ] && [ "$(uname -m)" != aarch64 ]; then
            command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc is missing: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
            export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
        fi
        cargo build --release --locked --target "$triple" --bin manyi
    else
        cargo zigbuild --release --locked --target "$triple.$glibc" --bin manyi
    fi
    echo "$arch build $(( $(date +%s) - start ))s" >>"$work/times"
}

# stage ARCH UNITDIR ROOT: the installed tree.
stage() {
    local arch=$1 unitdir=$2 root=$3
    install -d "$root/usr/bin" "$root/usr/lib/manyi" "$root$unitdir" "$root/etc/manyi/reference" \
        "$root/usr/share/manyi/reference" "$root/usr/share/doc/manyi"
    install -m 0755 "$work/manyi-$arch" "$root/usr/lib/manyi/manyi"
    install -m 0755 packaging/manyi.sh "$root/usr/bin/manyi"
    install -m 0755 packaging/setup.sh "$root/usr/lib/manyi/setup.sh"
    install -m 0644 packaging/manyi.service "$root$unitdir/manyi.service"
    install -m 0644 packaging/manyi.toml "$root/etc/manyi/manyi.toml"
    install -m 0644 packaging/reference/orgs.csv packaging/reference/offices.toml "$root/etc/manyi/reference/"
    install -m 0644 reference/categories.csv reference/calendar.csv "$root/usr/share/manyi/reference/"
    cp -R jobs survey-templates "$root/usr/share/manyi/"
    install -m 0644 README.md ARCHITECTURE.md "$root/usr/share/doc/manyi/"
    printf 'manyi %s\nLicense: MIT\n' "$version" >"$root/usr/share/doc/manyi/copyright"
    find "$root" -type d -exec chmod 0755 {} +
    find "$root/usr/share" "$root/etc" -type f -exec chmod 0644 {} +
}

make_deb() {
    local arch=$1 debarch root="$work/deb-$1" floor
    case "$arch" in x86_64) debarch=amd64 ;; aarch64) debarch=arm64 ;; esac
    stage "$arch" /lib/systemd/system "$root"
    floor=$(glibc_floor "$root/usr/lib/manyi/manyi")
    install -d "$root/DEBIAN"
    install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
    printf '%s\n' /etc/manyi/manyi.toml /etc/manyi/reference/orgs.csv /etc/manyi/reference/offices.toml >"$root/DEBIAN/conffiles"
    # For `dpkg --verify manyi`.
    (cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's#^\./##' | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
    cat >"$root/DEBIAN/control" <<EOF
Package: manyi
Version: $version
Architecture: $debarch
Maintainer: manyi maintainers <manyi@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6 (>= $floor), passwd
Section: misc
Priority: optional
Description: resident satisfaction (满意度) figures from 好差评 ratings
 manyi turns 好差评 ratings and questionnaire answers into satisfaction
 figures and emails monthly reports to leadership and offices. One binary
 and a systemd service (not enabled at install: edit /etc/manyi first).
EOF
    dpkg-deb --root-owner-group -Zgzip -z9 --build "$root" "$out/manyi_${version}_${debarch}.deb" >/dev/null
}

make_rpm() {
    local arch=$1 root="$work/rpm-$1"
    stage "$arch" /usr/lib/systemd/system "$root"
    rpmbuild -bb --quiet --target "$arch-linux" \
        --define "_topdir $work/rpmbuild-$arch" --define "_rpmdir $out" --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "pkg_version $version" --define "stage $root" \
        packaging/rpm/manyi.spec >/dev/null
}

make_tar() {
    local arch=$1 name="manyi-$version-$1" dir="$work/tar-$1"
    stage "$arch" /usr/lib/systemd/system "$dir/$name/root"
    install -m 0755 packaging/install.sh "$dir/$name/install.sh"
    echo "$arch" >"$dir/$name/ARCH"
    echo "$version" >"$dir/$name/VERSION"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
        -C "$dir" -czf "$out/$name.tar.gz" "$name"
}

# The binary as shipped: without debug sections (the release profile's line
# tables make it 700 MB), with its symbols, so a panic's backtrace names functions.
strip_binary() {
    local arch=$1 bin=$2 strip=strip
    [ "$(uname -m)" = "$arch" ] || strip="$arch-linux-gnu-strip"
    command -v "$strip" >/dev/null || die "$strip is missing (apt-get install binutils-$arch-linux-gnu)"
    [ -x "$bin" ] || die "$bin is missing (build it, or drop --no-build)"
    "$strip" --strip-debug -o "$work/manyi-$arch" "$bin"
}

[ -z "$binary" ] || [ "${#targets[@]}" = 1 ] || die "--binary needs --target x86_64 or --target aarch64"
for arch in "${targets[@]}"; do
    case "$arch" in x86_64|aarch64) ;; *) die "unknown target $arch (x86_64, aarch64 or all)" ;; esac
    [ "$build" = 1 ] && build_binary "$arch"
    start=$(date +%s)
    strip_binary "$arch" "${binary:-$target_dir/$arch-unknown-linux-gnu/release/manyi}"
    make_deb "$arch"
    make_rpm "$arch"
    make_tar "$arch"
    echo "$arch packaging $(( $(date +%s) - start ))s, glibc floor $(glibc_floor "$work/manyi-$arch")" >>"$work/times"
done

(cd "$out" && sha256sum -- *.deb *.rpm *.tar.gz >SHA256SUMS)
cat "$work/times"
ls -l "$out"
