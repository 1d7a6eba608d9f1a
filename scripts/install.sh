#!/bin/sh
# FPM Doctor plugin install (DirectAdmin runs it as root, without request
# environment; update.sh runs it too). Idempotent: installs the binary, the
# state dir, the default config (ONLY if missing: never overwritten), and
# the CustomBuild hooks.
#
# Environment:
#   INSTALL_ROOT       prefix for every path touched (default /; tests use a temp dir)
#   DA_DIR             DirectAdmin's home (default /usr/local/directadmin)
#   CB_HOOK_COMMANDS   CustomBuild commands to hook (default "php update_versions")
set -eu
# Parents we create are world-readable like the system's; private files get
# their mode explicitly.
umask 022

INSTALL_ROOT=${INSTALL_ROOT:-/}
DA_DIR=${DA_DIR:-/usr/local/directadmin}
CB_HOOK_COMMANDS=${CB_HOOK_COMMANDS:-php update_versions}
R=${INSTALL_ROOT%/}
PLUGIN_DIR=$(cd "$(dirname "$0")/.." && pwd)

LIB_DIR=$R/usr/local/lib/fpm_doctor
BIN=$LIB_DIR/bin/fpm-doctor
STATE_DIR=$R/var/lib/fpm_doctor
CONF_DIR=$R/etc/fpm_doctor
CONF=$CONF_DIR/config.toml
HOOK_SRC=$PLUGIN_DIR/scripts/hooks/custombuild_post.sh

say() { echo "fpm_doctor install: $*"; }

# root:root when we are root (DA runs us as root; a test may not be).
own_root() {
    if [ "$(id -u)" -eq 0 ]; then chown 0:0 "$@"; fi
}

# Copy to a temp name then rename: a running binary or a hook being sourced
# is never seen half-written.
install_file() { # src dst mode
    tmp="$2.fpm_doctor-new.$$"
    cp "$1" "$tmp"
    chmod "$3" "$tmp"
    own_root "$tmp"
    mv -f "$tmp" "$2"
}

if [ ! -f "$PLUGIN_DIR/bin/fpm-doctor" ]; then
    echo "fpm_doctor install: $PLUGIN_DIR/bin/fpm-doctor missing (build the plugin with ./build.sh)" >&2
    exit 1
fi

# The dedicated system user DA runs the plugin's pages as (*_run_as in
# plugin.conf). No website, cron job or shell user is in its group, so only
# root and DA's page runner can execute the setuid binary.
PLUGIN_USER=fpm_doctor
ensure_plugin_user() {
    if [ "$R" = "" ]; then
        if ! grep -q "^$PLUGIN_USER:" /etc/passwd; then
            if command -v useradd >/dev/null 2>&1; then
                useradd --system --user-group --no-create-home --home-dir /nonexistent \
                    --shell /usr/sbin/nologin "$PLUGIN_USER"
            else
                adduser --system --group --no-create-home --home /nonexistent "$PLUGIN_USER"
            fi
            say "created system user $PLUGIN_USER"
        fi
    else
        # Under INSTALL_ROOT (tests) the tree has its own passwd/group.
        mkdir -p "$R/etc"
        touch "$R/etc/passwd" "$R/etc/group"
        if ! grep -q "^$PLUGIN_USER:" "$R/etc/passwd"; then
            echo "$PLUGIN_USER:x:990:990:FPM Doctor plugin pages:/nonexistent:/usr/sbin/nologin" >>"$R/etc/passwd"
            echo "$PLUGIN_USER:x:990:" >>"$R/etc/group"
            say "created system user $PLUGIN_USER in $R/etc/passwd"
        fi
    fi
}
plugin_gid() {
    awk -F: -v u="$PLUGIN_USER" '$1 == u { print $3 }' "$R/etc/group" | head -n 1
}

ensure_plugin_user
mkdir -p "$LIB_DIR/bin"
chmod 755 "$LIB_DIR"
chmod 750 "$LIB_DIR/bin"
install_file "$PLUGIN_DIR/bin/fpm-doctor" "$BIN" 750
GID=$(plugin_gid)
if [ "$(id -u)" -eq 0 ] && [ -n "$GID" ]; then
    chown "0:$GID" "$LIB_DIR/bin" "$BIN"
    # setuid root, runnable by root and the plugin user only (chmod after
    # chown: chown clears the setuid bit).
    chmod 4750 "$BIN"
    say "installed $BIN (root:$PLUGIN_USER 4750, setuid)"
else
    say "installed $BIN (not root: no setuid bit)"
fi

mkdir -p "$STATE_DIR"
chmod 700 "$STATE_DIR"
own_root "$STATE_DIR"
say "state dir $STATE_DIR (0700)"

mkdir -p "$CONF_DIR"
chmod 755 "$CONF_DIR"
if [ -e "$CONF" ]; then
    say "kept existing config $CONF"
else
    tmp="$CONF.fpm_doctor-new.$$"
    (umask 077 && cat >"$tmp") <<'TOML'
# FPM Doctor configuration. Every value below is the default: uncomment and
# change only what differs on this server. `fpm-doctor explain` documents the
# checks; README.md documents every key.

[paths]
# da_dir = "/usr/local/directadmin"
# options_conf = "/usr/local/directadmin/custombuild/options.conf"
# users_dir = "/usr/local/directadmin/data/users"
# admin_dir = "/usr/local/directadmin/data/admin"
# templates_custom_dir = "/usr/local/directadmin/data/templates/custom"
# cb_nginx_overlay = "/usr/local/directadmin/custombuild/custom/nginx/conf"
# cb_nginx_reverse_overlay = "/usr/local/directadmin/custombuild/custom/nginx_reverse/conf"
# nginx_conf = "/etc/nginx/nginx.conf"
# php_prefix = "/usr/local/php{XY}"        # {XY} = 83 for PHP 8.3
# passwd = "/etc/passwd"
# group = "/etc/group"
# state_dir = "/var/lib/fpm_doctor"       # journal, backups, hook summaries
# task_queue = "/usr/local/directadmin/data/task.queue"
# dataskq = "/usr/local/directadmin/dataskq"
# nginx_error_log = "/var/log/nginx/error.log"
# nginx_domain_log_dir = "/var/log/nginx/domains"
# user_controlled = ["/home"]            # read without following symlinks, owner-checked

[logs]
# window_hours = 24
# max_bytes = 67108864
# rotations = 3

[access]
# Whether DirectAdmin lets users choose a domain's PHP version on this server
# (their package's PHP selector): only then may a user apply a php1_select fix.
# users_choose_php = false

[probe]
# timeout_ms = 1500
# parallelism = 16

[commands]
# Run as argument lists, never through a shell. "" turns a command off.
# rewrite = ""                 # default: queue action=rewrite&value=httpd&user=... in task.queue
# nginx_test = "nginx -t"
# nginx_reload = "nginx -s reload"    # default: systemctl reload nginx under systemd
# apache_test = "apachectl -t"
# apache_reload = "apachectl graceful"
# run_dataskq = true
# rewrite_wait_secs = 30
# timeout_secs = 60

[apply]
# keep_repairs = 50
# lock_wait_secs = 60

[hook]
# After a CustomBuild PHP build: "report" (scan, summary, notify) or
# "repair-safe" (also apply the fixes marked safe; never the others).
# on_upgrade = "report"
# When to send the admin a DirectAdmin message: "problems", "always", "never".
# notify = "problems"
# The task.queue action of that message (subject and message are appended).
# notify_task = "action=notify&value=admin"
TOML
    chmod 600 "$tmp"
    own_root "$tmp"
    mv -f "$tmp" "$CONF"
    say "wrote default config $CONF (0600)"
fi

for cmd in $CB_HOOK_COMMANDS; do
    dir=$R$DA_DIR/custombuild/custom/hooks/$cmd/post
    mkdir -p "$dir"
    chmod 755 "$dir"
    install_file "$HOOK_SRC" "$dir/fpm_doctor.sh" 755
    say "installed CustomBuild hook $dir/fpm_doctor.sh"
done
# An hourly scan as root keeps the admin page's snapshot fresh and publishes
# the read-only views used where *_run_as does not take effect.
CRON=$R/etc/cron.d/fpm_doctor
mkdir -p "$R/etc/cron.d"
tmp="$CRON.fpm_doctor-new.$$"
cat >"$tmp" <<CRONTAB
# FPM Doctor: refresh the scan snapshot and the read-only views (installed by scripts/install.sh)
17 * * * * root /usr/local/lib/fpm_doctor/bin/fpm-doctor web-snapshot >/dev/null 2>&1
CRONTAB
chmod 644 "$tmp"
own_root "$tmp"
mv -f "$tmp" "$CRON"
say "hourly snapshot in $CRON"

say "done"
