#!/bin/bash
# FPM Doctor: CustomBuild post hook (installed by scripts/install.sh as
# custombuild/custom/hooks/{php,update_versions}/post/fpm_doctor.sh).
#
# CustomBuild *sources* this file in its root build shell, which may run with
# `set -e`, `set -u`, `set -o pipefail`, an ERR trap, and aborts the build on
# a non-zero status. Hence:
#   - everything runs in ONE subshell: no variable, function, cd, trap or
#     option can reach the build shell, and nothing is left to unset;
#   - the subshell's status is swallowed (`|| :`), the file ends with `:`;
#   - the check itself is detached (setsid, background) under `timeout`, so
#     the build never waits for it and a hang is killed;
#   - no `exit`: in a sourced file it would end the build shell.
#
# Environment (tests and tuning):
#   FPM_DOCTOR_BIN           binary (default /usr/local/lib/fpm_doctor/bin/fpm-doctor)
#   FPM_DOCTOR_CONFIG        config (default /etc/fpm_doctor/config.toml, used if present)
#   FPM_DOCTOR_ARGS          extra words for the binary (tests: --root DIR)
#   FPM_DOCTOR_HOOK_TIMEOUT  seconds before the check is killed (default 120)
#   FPM_DOCTOR_HOOK_LOG      log file (default /var/lib/fpm_doctor/hook.log)
(
    set +e +u +E +o pipefail +o posix 2>/dev/null
    trap - ERR EXIT INT TERM HUP QUIT
    IFS=$' \t\n'
    fd_bin=${FPM_DOCTOR_BIN:-/usr/local/lib/fpm_doctor/bin/fpm-doctor}
    fd_conf=${FPM_DOCTOR_CONFIG:-/etc/fpm_doctor/config.toml}
    fd_secs=${FPM_DOCTOR_HOOK_TIMEOUT:-120}
    fd_log=${FPM_DOCTOR_HOOK_LOG:-/var/lib/fpm_doctor/hook.log}
    case $fd_secs in '' | *[!0-9]* | 0) fd_secs=120 ;; esac
    # No state dir yet (plugin not installed): log nowhere rather than fail.
    if ! { : >>"$fd_log"; } 2>/dev/null; then fd_log=/dev/null; fi
    exec >>"$fd_log" 2>&1
    fd_now=$(command date -u +%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
    if [ ! -x "$fd_bin" ]; then
        echo "$fd_now custombuild hook: $fd_bin missing or not executable, skipped"
    else
        set -f # FPM_DOCTOR_ARGS is split into words, never globbed
        # shellcheck disable=SC2206
        fd_args=(${FPM_DOCTOR_ARGS:-})
        set +f
        if [ -f "$fd_conf" ]; then fd_args=(--config "$fd_conf" "${fd_args[@]}"); fi
        # The detached runner logs how the check ended (124: timed out).
        fd_run='timeout -k 10 "$1" "$2" hook custombuild-post "${@:3}"; rc=$?
            case $rc in
                0) ;;
                124 | 137) echo "$(date -u +%FT%TZ) custombuild hook: killed after $1 s" ;;
                *) echo "$(date -u +%FT%TZ) custombuild hook: fpm-doctor exited $rc" ;;
            esac'
        echo "$fd_now custombuild hook: starting $fd_bin hook custombuild-post (timeout ${fd_secs}s)"
        if command -v setsid >/dev/null 2>&1; then
            command setsid bash -c "$fd_run" fpm-doctor-hook "$fd_secs" "$fd_bin" "${fd_args[@]}" &
        else
            command bash -c "$fd_run" fpm-doctor-hook "$fd_secs" "$fd_bin" "${fd_args[@]}" &
        fi
    fi
) </dev/null >/dev/null 2>&1 || :
:
