#!/bin/sh
# Installs the Homeostat agent on this host, points it at a controller and starts it; run it again to change settings, or with --uninstall.
#
#   install.sh --controller URL --token TOKEN [--labels k=v,...] [--insecure-http] [--package FILE|URL] [--no-start] [--root DIR]
#   install.sh --uninstall [--purge] [--root DIR]
#
# --labels    labels this host asks for; the controller grants only what the token allows (token create --allow-labels)
#             and refuses the enrollment otherwise (homeostat-agent status says so).
# --insecure-http  allow a plain ws:// controller (one run with --insecure-http); refused for a token that pins TLS.
# --package   a homeostat-agent_*.deb (installed with dpkg) or the bare homeostat-agent executable
#             (installed as /usr/local/bin/homeostat-agent with its unit in /etc/systemd/system).
#             Default: the .deb, else the executable, beside this script or in ./out.
# --unit      the unit file for a bare executable (default: beside this script, or systemd/).
# --no-start  enable the unit but do not start it (images that boot later).
# --root DIR  install into an image mounted at DIR: nothing is started, nothing running is touched.
# --purge     with --uninstall: also delete the state (enrollment, audit log), cache and config.
#
# Safe to run again: files are replaced only when they differ, and the agent is restarted only then.
# The agent keeps its enrollment in /var/lib/homeostat, so a token is used once; later runs may repeat it.
set -eu

prog=homeostat-agent
unit=$prog.service
here=$(cd "$(dirname "$0")" && pwd)

controller='' token='' labels='' insecure=0 package='' unit_file='' root='' start=1 uninstall=0 purge=0

usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 64; }
say() { printf 'homeostat install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --controller) [ $# -ge 2 ] || usage; controller=$2; shift 2 ;;
    --token) [ $# -ge 2 ] || usage; token=$2; shift 2 ;;
    --labels) [ $# -ge 2 ] || usage; labels=$2; shift 2 ;;
    --insecure-http) insecure=1; shift ;;
    --package) [ $# -ge 2 ] || usage; package=$2; shift 2 ;;
    --unit) [ $# -ge 2 ] || usage; unit_file=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root=$2; start=0; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done

[ "$(id -u)" = 0 ] || die "must run as root"
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root is not a directory"
  root=$(cd "$root" && pwd)
fi

# systemctl against the running manager, or against the image under --root.
systemctl_() {
  if [ -n "$root" ]; then
    case $1 in enable | disable) systemctl --root="$root" "$@" ;; *) return 0 ;; esac
  elif [ -d /run/systemd/system ]; then
    systemctl "$@"
  else
    say "systemd is not running here; skipped: systemctl $*"
  fi
}

dpkg_() { if [ -n "$root" ]; then dpkg --root="$root" --force-script-chrootless "$@"; else dpkg "$@"; fi; }

deb_installed() { dpkg_ -s "$prog" 2>/dev/null | grep -q '^Status: install ok installed'; }

# Replaces DEST with SRC (mode MODE) when they differ; returns 0 if it changed anything.
put() {
  if [ -f "$3" ] && cmp -s "$1" "$3"; then return 1; fi
  mkdir -p "$(dirname "$3")"
  cp "$1" "$3.new.$$" && chmod "$2" "$3.new.$$" && mv -f "$3.new.$$" "$3"
}

if [ "$uninstall" = 1 ]; then
  systemctl_ disable --now "$unit" >/dev/null 2>&1 || true
  if command -v dpkg >/dev/null 2>&1 && deb_installed; then
    if [ "$purge" = 1 ]; then dpkg_ --purge "$prog" >/dev/null; else dpkg_ --remove "$prog" >/dev/null; fi
  fi
  rm -f "$root/usr/local/bin/$prog" "$root/etc/systemd/system/$unit"
  if [ "$purge" = 1 ]; then
    rm -rf "$root/var/lib/homeostat" "$root/var/cache/homeostat" "$root/etc/homeostat"
    say "removed, state and configuration deleted"
  else
    say "removed; state kept in $root/var/lib/homeostat, configuration in $root/etc/homeostat (--purge deletes them)"
  fi
  systemctl_ daemon-reload
  exit 0
fi

[ -n "$controller" ] || die "--controller URL is required (e.g. wss://controller.example:7400)"
[ -n "$token" ] || die "--token TOKEN is required (homeostatctl token create)"
case $controller in
  wss://*) ;;
  ws://*)
    [ "$insecure" = 1 ] || die "--controller $controller is plain ws://: the token and the agent's credential would travel in cleartext; use wss://, or pass --insecure-http (the controller runs with it too)"
    # A token whose fifth part pins a TLS certificate belongs to a controller serving wss://.
    case $token in hsj2.*.*.*.*) die "the token pins the controller's TLS certificate, so its controller serves wss://; refusing ws://" ;; esac ;;
  *) die "--controller must be a wss:// (or, with --insecure-http, ws://) URL, not '$controller'" ;;
esac
if [ -n "$labels" ]; then
  old_ifs=$IFS IFS=,
  for pair in $labels; do
    case $pair in [A-Za-z0-9_./-]*=*) ;; *) IFS=$old_ifs; die "--labels takes k=v,k2=v2, not '$pair'" ;; esac
  done
  IFS=$old_ifs
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch() { # URL-or-path -> local path on stdout
  case $1 in
    http://* | https://*)
      dest=$tmp/$(basename "$1")
      if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$dest" "$1"
      elif command -v wget >/dev/null 2>&1; then wget -q -O "$dest" "$1"
      else die "need curl or wget to download $1"; fi
      echo "$dest" ;;
    *) [ -f "$1" ] || die "no such file: $1"; echo "$1" ;;
  esac
}

if [ -z "$package" ]; then
  for candidate in "$here"/homeostat-agent_*_amd64.deb "$here"/out/homeostat-agent_*_amd64.deb "$here/$prog" "$here/out/$prog"; do
    if [ -f "$candidate" ]; then package=$candidate; break; fi
  done
  [ -n "$package" ] || die "no package found beside $0; pass --package FILE|URL"
fi
package=$(fetch "$package")

changed=0
case $package in
  *.deb)
    command -v dpkg >/dev/null 2>&1 || die "$package is a Debian package but this host has no dpkg; pass the bare executable"
    want=$(dpkg-deb -f "$package" Version)
    have=$(dpkg_ -s "$prog" 2>/dev/null | sed -n 's/^Version: //p')
    if ! deb_installed || [ "$have" != "$want" ]; then
      # confold: keep an agent.yaml that this script or an admin wrote.
      DEBIAN_FRONTEND=noninteractive dpkg_ --force-confold -i "$package" >/dev/null
      say "installed $prog $want (package)"
      changed=1
    fi
    bin=/usr/bin/$prog ;;
  *)
    bin=/usr/local/bin/$prog
    "$package" --version >/dev/null 2>&1 || die "$package does not run here (glibc too old, or not a homeostat-agent executable)"
    if put "$package" 0755 "$root$bin"; then changed=1; say "installed $bin"; fi
    if [ -z "$unit_file" ]; then
      for candidate in "$here/$unit" "$here/systemd/$unit"; do
        if [ -f "$candidate" ]; then unit_file=$candidate; break; fi
      done
      [ -n "$unit_file" ] || die "no $unit beside $0; pass --unit FILE|URL"
    fi
    unit_file=$(fetch "$unit_file")
    sed "s#/usr/bin/$prog#$bin#g" "$unit_file" >"$tmp/$unit"
    if put "$tmp/$unit" 0644 "$root/etc/systemd/system/$unit"; then changed=1; fi ;;
esac

# YAML single quotes: the only escape is '' for '.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
{
  echo "# Written by homeostat install.sh; running it again replaces this file."
  echo "controller: $(quote "$controller")"
  echo "token: $(quote "$token")"
  if [ -n "$labels" ]; then echo "labels: $(quote "$labels")"; fi
  if [ "$insecure" = 1 ]; then echo "insecureHttp: true"; fi
} >"$tmp/agent.yaml"
# 0600: the token enrolls any host that has it.
if put "$tmp/agent.yaml" 0600 "$root/etc/homeostat/agent.yaml"; then changed=1; say "wrote /etc/homeostat/agent.yaml"; fi

systemctl_ daemon-reload
systemctl_ enable "$unit" >/dev/null 2>&1
if [ "$start" = 1 ] && [ -d /run/systemd/system ]; then
  if [ "$changed" = 1 ]; then systemctl_ restart "$unit"; else systemctl_ start "$unit"; fi
  if systemctl_ is-active --quiet "$unit"; then
    say "$unit is running; see: systemctl status $unit, $bin status"
  else
    die "$unit did not start; see: journalctl -u $unit"
  fi
else
  say "$unit enabled; it starts at next boot (or: systemctl start $unit)"
fi
