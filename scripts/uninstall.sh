#!/bin/sh
# FPM Doctor plugin uninstall (DirectAdmin runs it as root). Removes the
# CustomBuild hooks and the installed binary. Keeps the state dir (backups,
# repair journal: a repair can still be undone by hand) and the config,
# unless run with --purge.
#
# Environment: INSTALL_ROOT (default /), DA_DIR (default
# /usr/local/directadmin), CB_HOOK_COMMANDS (default "php update_versions").
set -eu

INSTALL_ROOT=${INSTALL_ROOT:-/}
DA_DIR=${DA_DIR:-/usr/local/directadmin}
CB_HOOK_COMMANDS=${CB_HOOK_COMMANDS:-php update_versions}
R=${INSTALL_ROOT%/}
PURGE=0
for a in "$@"; do
    case $a in
        --purge) PURGE=1 ;;
        *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
    esac
done

LIB_DIR=$R/usr/local/lib/fpm_doctor
STATE_DIR=$R/var/lib/fpm_doctor
CONF_DIR=$R/etc/fpm_doctor

say() { echo "fpm_doctor uninstall: $*"; }

for cmd in $CB_HOOK_COMMANDS; do
    f=$R$DA_DIR/custombuild/custom/hooks/$cmd/post/fpm_doctor.sh
    # Only a file we installed (an admin's own hook of that name stays).
    if [ -f "$f" ] && grep -q "FPM Doctor" "$f"; then
        rm -f "$f"
        say "removed CustomBuild hook $f"
    fi
done

if [ -f "$R/etc/cron.d/fpm_doctor" ] && grep -q "FPM Doctor" "$R/etc/cron.d/fpm_doctor"; then
    rm -f "$R/etc/cron.d/fpm_doctor"
    say "removed $R/etc/cron.d/fpm_doctor"
fi
rmdir "$R/etc/cron.d" 2>/dev/null || :
if [ "$PURGE" -eq 1 ] && [ -d "$R/var/cache/fpm_doctor" ]; then
    rm -rf "$R/var/cache/fpm_doctor"
fi

if [ -e "$LIB_DIR/bin/fpm-doctor" ]; then
    rm -f "$LIB_DIR/bin/fpm-doctor"
    say "removed $LIB_DIR/bin/fpm-doctor"
fi
rmdir "$LIB_DIR/bin" "$LIB_DIR" 2>/dev/null || :

if [ "$PURGE" -eq 1 ]; then
    rm -rf "$STATE_DIR" "$CONF_DIR"
    say "purged $STATE_DIR and $CONF_DIR"
    # The plugin's system user goes too (it owns nothing else).
    if [ "${R:-}" = "" ]; then
        if grep -q '^fpm_doctor:' /etc/passwd 2>/dev/null && command -v userdel >/dev/null 2>&1; then
            userdel fpm_doctor && say "removed system user fpm_doctor"
        fi
    else
        for f in "$R/etc/passwd" "$R/etc/group"; do
            [ -f "$f" ] || continue
            grep -v '^fpm_doctor:' "$f" >"$f.fpm_doctor-new.$$" || :
            mv -f "$f.fpm_doctor-new.$$" "$f"
            [ -s "$f" ] || rm -f "$f"
        done
        rmdir "$R/etc" 2>/dev/null || :
    fi
else
    say "kept $STATE_DIR (backups, journal) and $CONF_DIR (config); --purge removes them"
fi
say "done"
