#!/bin/sh
# Installs manyi from this unpacked .tar.gz, as the .deb and .rpm would, for
# systems with neither dpkg nor rpm (or without root's package tools):
#
#   tar xzf manyi-VERSION-ARCH.tar.gz && cd manyi-VERSION-ARCH && sudo ./install.sh
#
# The binary, the systemd unit and /usr/share/manyi are replaced; a file of
# /etc/manyi that exists is never overwritten (the shipped one is written
# beside it as NAME.new); the user manyi, /var/lib/manyi (0750) and the rater
# key are created when missing (setup.sh). A running service is restarted.
# DESTDIR is not supported: this installs into /.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root="$here/root"
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo ./install.sh)" >&2; exit 1; }
[ -x "$root/usr/lib/manyi/manyi" ] || { echo "install.sh: $root/usr/lib/manyi/manyi is missing" >&2; exit 1; }

arch=$(uname -m)
want=$(cat "$here/ARCH")
[ "$arch" = "$want" ] || { echo "install.sh: this package is for $want, this machine is $arch" >&2; exit 1; }

install -d -m 0755 /usr/lib/manyi /usr/share/manyi /usr/share/doc/manyi /usr/lib/systemd/system /etc/manyi /etc/manyi/reference
install -m 0755 "$root/usr/lib/manyi/manyi" /usr/lib/manyi/manyi.new
mv /usr/lib/manyi/manyi.new /usr/lib/manyi/manyi
install -m 0755 "$root/usr/lib/manyi/setup.sh" /usr/lib/manyi/setup.sh
install -m 0755 "$root/usr/bin/manyi" /usr/bin/manyi
install -m 0644 "$root/usr/lib/systemd/system/manyi.service" /usr/lib/systemd/system/manyi.service
rm -rf /usr/share/manyi.new
cp -R "$root/usr/share/manyi" /usr/share/manyi.new
rm -rf /usr/share/manyi
mv /usr/share/manyi.new /usr/share/manyi
cp -R "$root/usr/share/doc/manyi/." /usr/share/doc/manyi/

for f in manyi.toml reference/orgs.csv reference/offices.toml; do
    if [ -e "/etc/manyi/$f" ]; then
        if ! cmp -s "$root/etc/manyi/$f" "/etc/manyi/$f"; then
            install -m 0644 "$root/etc/manyi/$f" "/etc/manyi/$f.new"
            echo "install.sh: kept /etc/manyi/$f; the shipped one is /etc/manyi/$f.new"
        fi
    else
        install -m 0644 "$root/etc/manyi/$f" "/etc/manyi/$f"
    fi
done

/usr/lib/manyi/setup.sh
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl try-restart manyi.service || true
fi
echo "install.sh: manyi $(cat "$here/VERSION") installed; next: edit /etc/manyi, then"
echo "  sudo -u manyi manyi check && sudo systemctl enable --now manyi"
