//! The setuid boundary. DA runs the plugin's pages as a dedicated system
//! user (`fpm_doctor`, via `*_run_as`); the binary is setuid root, mode 4750
//! `root:fpm_doctor`, so no website, cron job or shell user can run it. This
//! module decides, before anything else runs, who the caller really is and
//! what they may ask for:
//!
//! - real uid 0: a root shell or a root hook — everything is allowed;
//! - real uid = the plugin user, effective uid 0: DA's page runner — only the
//!   `cgi` face, with DA's session variables trusted;
//! - any other real uid with effective uid 0: refused outright;
//! - no setuid at all (real = effective, not root): an unprivileged run that
//!   can read only what that user can; `USERNAME` is never trusted.
//!
//! When the caller is not root, every way to steer the binary is refused:
//! `--config`, `--root`, environment overrides, command templates; the one
//! config read is the root-owned file at its fixed path.

use crate::accounts::Accounts;
use std::ffi::OsString;

/// The system user DA runs the plugin's pages as (`*_run_as` in plugin.conf).
pub const PLUGIN_USER: &str = "fpm_doctor";

/// Where the account database is read from: the host's, parsed by hand.
const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Real uid 0.
    Root,
    /// DA's page runner: real uid = the plugin user, setuid root.
    PluginUser,
    /// Neither: a plain unprivileged run (no setuid in effect).
    Unprivileged,
}

impl Caller {
    /// Whether DA's `USERNAME` may be believed.
    pub fn trusts_session(self) -> bool {
        matches!(self, Caller::Root | Caller::PluginUser)
    }
}

/// Environment variables a page may pass through; everything else is dropped.
pub const ENV_ALLOW: &[&str] = &[
    "USERNAME",
    "SESSION_ID",
    "SESSION_KEY",
    "SESSION_SELECTED_DOMAIN",
    "QUERY_STRING",
    "POST",
    "REQUEST_METHOD",
    "HTTP_HOST",
    "LANG",
];

/// Who is calling, from the real and effective uids and the host's passwd file.
pub fn classify(ruid: u32, euid: u32, passwd: &[u8]) -> Result<Caller, String> {
    if ruid == 0 {
        return Ok(Caller::Root);
    }
    if euid != 0 {
        return Ok(Caller::Unprivileged);
    }
    let acc = Accounts::parse(passwd, b"");
    match acc.user(PLUGIN_USER) {
        Some(a) if a.uid == ruid => Ok(Caller::PluginUser),
        _ => Err(format!(
            "uid {ruid} may not run this setuid program (only root and {PLUGIN_USER})"
        )),
    }
}

/// Arguments a caller may give. The plugin user gets the `cgi` face only,
/// with no path or config override.
pub fn check_args(caller: Caller, args: &[OsString]) -> Result<(), String> {
    if caller == Caller::Root || caller == Caller::Unprivileged {
        return Ok(());
    }
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if !matches!(words.first().map(String::as_str), Some("cgi") | Some("whoami")) {
        return Err("the plugin user may only run the cgi face".into());
    }
    for w in &words {
        let name = w.split('=').next().unwrap_or("");
        if matches!(name, "--config" | "--root") {
            return Err(format!("{name} is refused for callers other than root"));
        }
    }
    Ok(())
}

/// Process hygiene for a setuid start: private umask, fds 0–2 open, `/` as
/// working directory, no core dumps, a cleaned environment.
pub fn harden() {
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o077));
    for fd in 0..=2 {
        // A closed 0–2 would let the next open() become our stdout.
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            let _ = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDWR, Mode::empty());
        }
    }
    let _ = std::env::set_current_dir("/");
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let keep: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| ENV_ALLOW.iter().any(|a| k == *a))
        .collect();
    for (k, _) in std::env::vars_os() {
        // SAFETY: single-threaded at this point (called first thing in main).
        unsafe { std::env::remove_var(k) };
    }
    for (k, v) in keep {
        unsafe { std::env::set_var(k, v) };
    }
    unsafe { std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") };
}

/// Run first in `main`: classify the caller, refuse what they may not do,
/// harden the process when a setuid boundary is crossed.
pub fn startup(args: &[OsString]) -> Result<Caller, String> {
    let ruid = nix::unistd::getuid().as_raw();
    let euid = nix::unistd::geteuid().as_raw();
    let passwd = if ruid != 0 && euid == 0 {
        std::fs::read(PASSWD).unwrap_or_default()
    } else {
        Vec::new()
    };
    let _ = GROUP;
    let caller = classify(ruid, euid, &passwd)?;
    if ruid != euid {
        harden();
    }
    check_args(caller, args)?;
    if caller == Caller::PluginUser {
        // Become root in full: a process whose real uid is still the plugin
        // user's could be stopped (SIGSTOP) by that user in the middle of a
        // repair, holding the lock. A session of its own, too.
        nix::unistd::setresuid(0.into(), 0.into(), 0.into()).map_err(|e| format!("setresuid: {e}"))?;
        let _ = nix::unistd::setsid();
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &[u8] = b"root:x:0:0::/root:/bin/sh\nfpm_doctor:x:990:990::/nonexistent:/usr/sbin/nologin\nalice:x:1001:1001::/home/alice:/bin/sh\n";

    #[test]
    fn only_root_and_the_plugin_user_cross_the_setuid_boundary() {
        assert_eq!(classify(0, 0, PW), Ok(Caller::Root));
        assert_eq!(classify(990, 0, PW), Ok(Caller::PluginUser));
        assert!(
            classify(1001, 0, PW).is_err(),
            "a website's user running the setuid binary"
        );
        assert_eq!(classify(1001, 1001, PW), Ok(Caller::Unprivileged));
        assert!(!Caller::Unprivileged.trusts_session());
        assert!(Caller::PluginUser.trusts_session());
    }

    #[test]
    fn the_plugin_user_gets_the_cgi_face_without_overrides() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(check_args(Caller::PluginUser, &a(&["fpm-doctor", "cgi", "--level", "user"])).is_ok());
        assert!(check_args(
            Caller::PluginUser,
            &a(&["fpm-doctor", "repair", "--all", "--yes"])
        )
        .is_err());
        assert!(check_args(
            Caller::PluginUser,
            &a(&["fpm-doctor", "cgi", "--config", "/tmp/x"])
        )
        .is_err());
        assert!(check_args(Caller::PluginUser, &a(&["fpm-doctor", "cgi", "--root=/tmp/x"])).is_err());
        assert!(check_args(Caller::Root, &a(&["fpm-doctor", "repair", "--all"])).is_ok());
    }
}
