#!/usr/bin/env bash
# Turn a Debian/Ubuntu tablet into a Label Assistant kiosk (run as root, once per image):
#
#   sudo ./install-kiosk.sh /path/to/unzipped/labelassist            # install or update
#   sudo ./install-kiosk.sh --remove                                 # back to a normal boot
#
# NOT RUN ON A REAL TABLET here (written and reviewed by reading; the build machine has no
# systemd boot). Each step prints what it does:
#   1. verifies the bundle against its MANIFEST.sha256
#   2. installs the packages the kiosk needs: cage, xwayland, libmtdev1 (Kivy's multitouch input)
#   3. creates the user "kiosk" (no password, groups input video render)
#   4. copies the bundle to /opt/labelassist (an update replaces only this folder)
#   5. creates /var/lib/labelassist (owned by kiosk): kiosk.toml from the template if there is
#      none (never overwritten), the admin PIN (asked unless --skip-pin), the demo project as the
#      start project if /var/lib/labelassist/projects/main does not exist
#   6. installs the udev rules for pen/touch and the systemd unit, enables it, boots graphical
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OPT=/opt/labelassist
DATA=/var/lib/labelassist
UNIT=labelassist-kiosk.service
SKIP_PIN=0

say() { printf '==> %s\n' "$*"; }
die() { printf 'install-kiosk.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo)"

if [ "${1:-}" = "--remove" ]; then
    say "disabling $UNIT (the bundle in $OPT and the data in $DATA stay)"
    systemctl disable --now "$UNIT" || true
    systemctl enable getty@tty1.service || true
    exit 0
fi
[ "${2:-}" = "--skip-pin" ] && SKIP_PIN=1
BUNDLE="${1:-}"
[ -n "$BUNDLE" ] && [ -x "$BUNDLE/labelassist" ] || die "give the unzipped bundle folder (with the labelassist executable)"
BUNDLE="$(cd "$BUNDLE" && pwd)"
TEMPLATE="$HERE/../kiosk.toml"

say "1. verifying $BUNDLE against MANIFEST.sha256"
(cd "$BUNDLE" && sha256sum -c --quiet MANIFEST.sha256) || die "the bundle does not match its manifest: do not deploy it"

say "2. packages: cage xwayland libmtdev1"
if command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cage xwayland libmtdev1 >/dev/null
else
    say "   no apt-get: install cage, Xwayland and libmtdev by hand"
fi

say "3. user kiosk (groups input video render)"
if ! id kiosk >/dev/null 2>&1; then
    useradd --create-home --user-group kiosk   # no password: nobody can log in as kiosk, only this unit starts it
fi
for g in input video render; do
    getent group "$g" >/dev/null && usermod -aG "$g" kiosk
done

say "4. bundle -> $OPT"
if [ "$BUNDLE" != "$OPT" ]; then
    systemctl stop "$UNIT" 2>/dev/null || true
    rm -rf "$OPT.new"
    cp -a "$BUNDLE" "$OPT.new"
    rm -rf "$OPT"
    mv "$OPT.new" "$OPT"
fi
chown -R root:root "$OPT"
chmod -R go-w "$OPT"

say "5. data home $DATA"
install -d -o kiosk -g kiosk -m 0750 "$DATA"
if [ ! -f "$DATA/kiosk.toml" ]; then
    [ -f "$TEMPLATE" ] && install -o kiosk -g kiosk -m 0600 "$TEMPLATE" "$DATA/kiosk.toml"
else
    say "   kiosk.toml kept as it is"
fi
as_kiosk() { runuser -u kiosk -- env LABELASSIST_HOME="$DATA" "$OPT/labelassist" "$@"; }
if [ "$SKIP_PIN" = 0 ]; then
    say "   set the admin PIN (4 to 12 digits; stored as a salted hash only)"
    as_kiosk kiosk set-pin
fi
if [ ! -f "$DATA/projects/main/project.toml" ]; then
    say "   no project in $DATA/projects/main yet: creating the demo project there"
    as_kiosk demo --folder "$DATA/projects/main" --no-open
fi

say "6. udev rules, systemd unit"
install -m 0644 "$HERE/99-labelassist-pen.rules" /etc/udev/rules.d/99-labelassist-pen.rules
udevadm control --reload || true
udevadm trigger --subsystem-match=input || true
install -m 0644 "$HERE/$UNIT" "/etc/systemd/system/$UNIT"
systemctl daemon-reload
systemctl disable getty@tty1.service 2>/dev/null || true
systemctl enable "$UNIT"
systemctl set-default graphical.target
say "done: reboot; the kiosk starts on tty1. Service console: Ctrl+Alt+F2."
