#!/bin/sh
# Installs the Homeostat agent on this host, points it at a controller or at local baselines, and starts it; run it again to change settings, or with --uninstall.
#
#   install.sh [--controller URL --token TOKEN] [--baseline FILE]... [--labels k=v,...] [--insecure-http] [--package FILE|URL] [--unit FILE|URL] [--no-start] [--root DIR]
#   install.sh --uninstall [--purge] [--root DIR]
#
# --controller, --token  the controller's URL and a join token (homeostatctl token create); the agent enrolls once and
#             keeps its own credential in /var/lib/homeostat, so later runs need not repeat them.
# --baseline  a baseline file the agent enforces by itself (repeatable; standalone without --controller). It is
#             checked first and enforced where it is: keep it there, e.g. in /etc/homeostat/baselines/.
# --labels    labels this host asks for; the controller grants only what the token allows (token create --allow-labels)
#             and refuses the enrollment otherwise (homeostat-agent status says so). --labels '' removes them.
# --insecure-http  allow a plain ws:// controller (one run with --insecure-http); refused for a token that pins TLS.
# --no-controller  forget the controller and token (the host goes standalone; needs --baseline or baselines configured).
# --package   a homeostat-agent_*.deb (installed with dpkg) or the bare homeostat-agent executable
#             (installed as /usr/local/bin/homeostat-agent with its unit in /etc/systemd/system).
#             Default: the .deb, else the executable, beside this script or in ./out.
# --unit      the unit file for a bare executable (default: beside this script, or systemd/).
# --no-start  enable the unit but do not start it (images that boot later).
# --root DIR  install into an image mounted at DIR: nothing is started, nothing running is touched.
# --purge     with --uninstall: also delete the state (enrollment, audit log), cache and config.
#
# Settings not given keep their value from /etc/homeostat/agent.yaml, as do the lines this script does not manage.
# Safe to run again: files are replaced only when they differ, and the agent is restarted only then.
set -eu

prog=homeostat-agent
unit=$prog.service
config_rel=/etc/homeostat/agent.yaml
header='# Written by homeostat install.sh; it keeps other settings when run again.'
here=$(cd "$(dirname "$0")" && pwd)

controller='' token='' labels='' labels_set=0 insecure=0 no_controller=0 baselines_given=0
package='' unit_file='' root='' start=1 uninstall=0 purge=0

usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 64; }
say() { printf 'homeostat install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
: >"$tmp/baselines"

while [ $# -gt 0 ]; do
  case $1 in
    --controller) [ $# -ge 2 ] || usage; controller=$2; shift 2 ;;
    --token) [ $# -ge 2 ] || usage; token=$2; shift 2 ;;
    --baseline) [ $# -ge 2 ] || usage; printf '%s\n' "$2" >>"$tmp/baselines"; baselines_given=1; shift 2 ;;
    --labels) [ $# -ge 2 ] || usage; labels=$2; labels_set=1; shift 2 ;;
    --insecure-http) insecure=1; shift ;;
    --no-controller) no_controller=1; shift ;;
    --package) [ $# -ge 2 ] || usage; package=$2; shift 2 ;;
    --unit) [ $# -ge 2 ] || usage; unit_file=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root=$2; start=0; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done

[ "$(id -u)" = 0 ] || die "must run as root"
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root is not a directory"
  root=$(cd "$root" && pwd)
fi
config=$root$config_rel

systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

# systemctl against the running manager, or against the image under --root.
systemctl_() {
  if [ -n "$root" ]; then
    case $1 in enable | disable) systemctl --root="$root" "$@" ;; *) return 0 ;; esac
  elif systemd_running; then
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

# --- Everything is checked before anything is written ------------------------------------------

if [ -n "$controller" ] || [ -n "$token" ]; then
  [ -n "$controller" ] || die "--token needs --controller URL (e.g. wss://controller.example:7400)"
  [ -n "$token" ] || die "--controller needs --token TOKEN (homeostatctl token create)"
  [ "$no_controller" = 0 ] || die "--no-controller and --controller exclude each other"
  case $controller in
    wss://*) ;;
    ws://*)
      [ "$insecure" = 1 ] || die "--controller $controller is plain ws://: the token and the agent's credential would travel in cleartext; use wss://, or pass --insecure-http (the controller runs with it too)"
      # A token whose fifth part pins a TLS certificate belongs to a controller serving wss://.
      case $token in hsj2.*.*.*.*) die "the token pins the controller's TLS certificate, so its controller serves wss://; refusing ws://" ;; esac ;;
    *) die "--controller must be a wss:// (or, with --insecure-http, ws://) URL, not '$controller'" ;;
  esac
elif [ "$insecure" = 1 ]; then
  die "--insecure-http goes with --controller URL --token TOKEN"
fi
if [ -n "$labels" ]; then
  old_ifs=$IFS IFS=,
  for pair in $labels; do
    case $pair in [A-Za-z0-9_./-]*=*) ;; *) IFS=$old_ifs; die "--labels takes k=v,k2=v2, not '$pair'" ;; esac
  done
  IFS=$old_ifs
fi

# Baseline files as absolute paths on the host (inside the image with --root).
: >"$tmp/baseline-paths"
while IFS= read -r f; do
  case $f in
    /*) abs=$f ;;
    *) [ -z "$root" ] || die "--baseline $f: with --root, give the path the host will see (absolute)"
       dir=$(cd "$(dirname "$f")" 2>/dev/null && pwd) || die "--baseline $f: no such file"
       abs=$dir/$(basename "$f") ;;
  esac
  [ -f "$root$abs" ] || die "--baseline $f: no such file${root:+ under $root}"
  printf '%s\n' "$abs" >>"$tmp/baseline-paths"
done <"$tmp/baselines"

# The settings this run gives replace theirs; every other line of the current file stays as it is. A top-level key's
# block is its line and the indented or list lines under it.
drop=''
if [ -n "$controller" ] || [ "$no_controller" = 1 ]; then drop="$drop controller token insecureHttp"; fi
if [ "$labels_set" = 1 ]; then drop="$drop labels"; fi
if [ "$baselines_given" = 1 ]; then drop="$drop baselines"; fi
: >"$tmp/kept"
if [ -f "$config" ]; then
  awk -v drop=" $drop " '
    index($0, "# Written by homeostat install.sh") == 1 { next }
    /^[A-Za-z_][A-Za-z0-9_]*[ \t]*:/ {
      key = $0; sub(/[ \t]*:.*/, "", key)
      skipping = index(drop, " " key " ") > 0
      if (!skipping) print
      next
    }
    /^[ \t-]/ { if (!skipping) print; next }
    { skipping = 0; print }
  ' "$config" >"$tmp/kept"
fi

# YAML single quotes: the only escape is '' for '.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
{
  echo "$header"
  cat "$tmp/kept"
  if [ -n "$controller" ]; then
    echo "controller: $(quote "$controller")"
    echo "token: $(quote "$token")"
    if [ "$insecure" = 1 ]; then echo "insecureHttp: true"; fi
  fi
  if [ "$labels_set" = 1 ] && [ -n "$labels" ]; then echo "labels: $(quote "$labels")"; fi
  if [ "$baselines_given" = 1 ]; then
    list='' sep=''
    while IFS= read -r abs; do list="$list$sep$(quote "$abs")"; sep=', '; done <"$tmp/baseline-paths"
    echo "baselines: [$list]"
  fi
} >"$tmp/agent.yaml"
grep -q '^controller[ \t]*:' "$tmp/agent.yaml" || grep -q '^baselines[ \t]*:' "$tmp/agent.yaml" ||
  die "nothing to enforce: give --controller URL --token TOKEN, or --baseline FILE to run standalone"

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

case $package in
  *.deb)
    kind=deb
    command -v dpkg >/dev/null 2>&1 || die "$package is a Debian package but this host has no dpkg; pass the bare executable"
    want=$(dpkg-deb -f "$package" Version) || die "$package is not a Debian package"
    bin=/usr/bin/$prog ;;
  *)
    kind=bare
    bin=/usr/local/bin/$prog
    "$package" --version >/dev/null 2>&1 || die "$package does not run here (glibc too old, or not a homeostat-agent executable)"
    if [ -z "$unit_file" ]; then
      for candidate in "$here/$unit" "$here/systemd/$unit"; do
        if [ -f "$candidate" ]; then unit_file=$candidate; break; fi
      done
      [ -n "$unit_file" ] || die "no $unit beside $0; pass --unit FILE|URL"
    fi
    unit_file=$(fetch "$unit_file")
    grep -q "^ExecStart=/usr/bin/$prog " "$unit_file" || die "$unit_file is not the $unit this script expects (ExecStart=/usr/bin/$prog ...)"
    sed "s#/usr/bin/$prog#$bin#g" "$unit_file" >"$tmp/$unit" ;;
esac

# The baselines are checked by the agent that will enforce them.
if [ "$baselines_given" = 1 ]; then
  checker=$package
  if [ "$kind" = deb ]; then
    checker=$tmp/$prog
    if ! dpkg-deb --fsys-tarfile "$package" | tar -xOf - "./usr/bin/$prog" >"$checker"; then die "cannot unpack $prog from $package"; fi
    chmod 0755 "$checker"
  fi
  while IFS= read -r abs; do
    HOMEOSTAT_CACHE_DIR=$tmp/cache "$checker" validate "$root$abs" >&2 || die "--baseline $abs is not a valid baseline (above); nothing was changed"
  done <"$tmp/baseline-paths"
fi

# --- Changes ------------------------------------------------------------------------------------

# The configuration first: a package's maintainer script starts the agent, and it must start with these settings.
# 0600: the token enrolls any host that has it.
config_changed=0
if put "$tmp/agent.yaml" 0600 "$config"; then config_changed=1; say "wrote $config_rel"; fi

binary_changed=0 package_installed=0
if [ "$kind" = deb ]; then
  have=$(dpkg_ -s "$prog" 2>/dev/null | sed -n 's/^Version: //p')
  if ! deb_installed || [ "$have" != "$want" ]; then
    # confold: keep the agent.yaml written above. postinst enables the unit and (re)starts it, unless told not to.
    no_start=1
    [ "$start" = 1 ] && no_start=0
    DEBIAN_FRONTEND=noninteractive HOMEOSTAT_NO_START=$no_start dpkg_ --force-confold -i "$package" >/dev/null
    say "installed $prog $want (package)"
    package_installed=1
  fi
else
  if put "$package" 0755 "$root$bin"; then binary_changed=1; say "installed $bin"; fi
  if put "$tmp/$unit" 0644 "$root/etc/systemd/system/$unit"; then binary_changed=1; fi
fi

systemctl_ daemon-reload
systemctl_ enable "$unit" >/dev/null 2>&1 || die "systemctl enable $unit failed"

if [ "$start" = 1 ] && systemd_running; then
  # A package just installed was started by its postinst with this configuration: once is enough. Otherwise a changed
  # configuration or executable needs a restart; with nothing changed, start does nothing to a running agent.
  action=start
  if [ "$package_installed" = 0 ] && { [ "$config_changed" = 1 ] || [ "$binary_changed" = 1 ]; }; then action=restart; fi
  if systemctl "$action" "$unit" && systemctl is-active --quiet "$unit"; then
    say "$unit is running; see: systemctl status $unit, $bin status"
  else
    journalctl -u "$unit" -n 20 --no-pager >&2 2>/dev/null || true
    die "$unit did not start; see: journalctl -u $unit"
  fi
else
  say "$unit enabled; it starts at next boot (or: systemctl start $unit)"
fi
