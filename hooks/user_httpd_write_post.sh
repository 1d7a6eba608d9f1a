#!/bin/sh
# FPM Doctor: DirectAdmin runs this after writing a user's web server config
# (env `username`). A full rewrite runs it once per user, so it only queues
# the user (`hook user-httpd-write` validates the name and appends it in one
# O_APPEND write) and lets ONE background worker re-check the queue. It
# always exits 0: a failing check must never disturb DirectAdmin.
# Env for tests: FPM_DOCTOR_BIN, FPM_DOCTOR_CONFIG, FPM_DOCTOR_ARGS, FPM_DOCTOR_HOOK_LOG.
bin=${FPM_DOCTOR_BIN:-/usr/local/lib/fpm_doctor/bin/fpm-doctor}
conf=${FPM_DOCTOR_CONFIG:-/etc/fpm_doctor/config.toml}
log=${FPM_DOCTOR_HOOK_LOG:-/var/lib/fpm_doctor/hook.log}
{ : >>"$log"; } 2>/dev/null || log=/dev/null
if [ -x "$bin" ]; then
    if [ -f "$conf" ]; then set -- --config "$conf"; else set --; fi
    # --user=VALUE: a name starting with '-' cannot pass for an option.
    # shellcheck disable=SC2086 # FPM_DOCTOR_ARGS is a word list (tests: --root DIR)
    timeout 10 "$bin" hook user-httpd-write "$@" ${FPM_DOCTOR_ARGS:-} "--user=${username:-}" \
        </dev/null >/dev/null 2>>"$log" || :
fi
exit 0
