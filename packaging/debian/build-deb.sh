#!/usr/bin/env bash
# Lays out and builds homeostat-agent_VERSION_amd64.deb from the agent single executable.
#   build-deb.sh BINARY VERSION GLIBC_FLOOR OUTDIR
set -euo pipefail

binary=$1 version=$2 glibc=$3 outdir=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
packaging=$(dirname "$here")
stage=$packaging/build/deb/homeostat-agent_${version}_amd64

rm -rf "$stage"
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/homeostat" \
  "$stage/usr/share/doc/homeostat-agent"
install -m 0755 "$binary" "$stage/usr/bin/homeostat-agent"
install -m 0644 "$packaging/systemd/homeostat-agent.service" "$stage/lib/systemd/system/"
# 0600: install.sh puts the enrollment token in it.
install -m 0600 "$here/agent.yaml" "$stage/etc/homeostat/agent.yaml"
install -m 0644 "$packaging/README.md" "$stage/usr/share/doc/homeostat-agent/README.md"
install -m 0644 "$here/copyright" "$stage/usr/share/doc/homeostat-agent/copyright"
install -m 0644 "$here/conffiles" "$stage/DEBIAN/conffiles"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"

installed_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@GLIBC@/$glibc/" -e "s/@INSTALLED_SIZE@/$installed_kib/" \
  "$here/control.in" >"$stage/DEBIAN/control"

# xz, because Debian 11's dpkg cannot read zstd; level 1 packs the 110 MB binary to 33 MB in 15 s,
# where the default level 6 takes 80 s on two cores to save another 4 MB.
dpkg-deb --root-owner-group -Zxz -z"${HOMEOSTAT_DEB_XZ_LEVEL:-1}" --build "$stage" "$outdir/homeostat-agent_${version}_amd64.deb" >/dev/null
