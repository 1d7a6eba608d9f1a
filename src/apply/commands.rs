//! Running the validate / reload / rewrite commands: split like a shell
//! would but executed as an argument list (no shell ever), with a minimal
//! environment, stdin from /dev/null, in their own process group and with a
//! timeout that kills the whole group.

use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The only environment a command gets.
pub const SAFE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// How much of stdout/stderr a report keeps (the end: errors come last).
const TAIL: usize = 4096;

/// One step of a repair as reported: a command run, a file restored, a
/// queue written, a callback called.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    /// `rewrite`, `validate`, `reload`, `verify`, `restore`, `dataskq`, …
    pub step: String,
    /// The argument list run (empty when the step is not a command).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Exit status; `None` when killed, timed out or not started.
    #[serde(default)]
    pub status: Option<i32>,
    pub ok: bool,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default)]
    pub skipped: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout_tail: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    /// Human explanation (why skipped, what failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl StepReport {
    pub fn note(step: &str, ok: bool, note: impl Into<String>) -> StepReport {
        StepReport {
            step: step.into(),
            ok,
            note: note.into(),
            ..StepReport::default()
        }
    }

    pub fn skipped(step: &str, note: impl Into<String>) -> StepReport {
        StepReport {
            skipped: true,
            ..StepReport::note(step, true, note)
        }
    }

    /// One line for error messages.
    pub fn summary(&self) -> String {
        let mut s = format!("{} failed", self.step);
        if !self.command.is_empty() {
            s.push_str(&format!(" ({})", shell_words::join(&self.command)));
        }
        if self.timed_out {
            s.push_str(": timed out");
        } else if let Some(c) = self.status {
            s.push_str(&format!(": exit {c}"));
        }
        if !self.note.is_empty() {
            s.push_str(&format!(": {}", self.note));
        }
        let tail = self.stderr_tail.trim();
        if !tail.is_empty() {
            let last: Vec<&str> = tail.lines().rev().take(3).collect();
            let last: Vec<&str> = last.into_iter().rev().collect();
            s.push_str(&format!(": {}", last.join(" / ")));
        }
        s
    }
}

/// Which configured command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Rewrite,
    NginxTest,
    NginxReload,
    ApacheTest,
    ApacheReload,
}

/// The command line to run, or `None` when the command is off. Unset
/// commands take their default only when the root is `/`: under `--root`
/// they are off, so an offline copy never validates or reloads the host's
/// web server. `Rewrite` has no default here (the default is DA's queue).
pub fn resolve(cfg: &Config, which: Which) -> Option<String> {
    resolve_with(cfg, which, std::path::Path::new("/run/systemd/system").exists())
}

/// [`resolve`] with the systemd detection given (testable).
pub fn resolve_with(cfg: &Config, which: Which, systemd: bool) -> Option<String> {
    let c = &cfg.commands;
    let set = match which {
        Which::Rewrite => &c.rewrite,
        Which::NginxTest => &c.nginx_test,
        Which::NginxReload => &c.nginx_reload,
        Which::ApacheTest => &c.apache_test,
        Which::ApacheReload => &c.apache_reload,
    };
    if let Some(s) = set {
        return if s.trim().is_empty() {
            None
        } else {
            Some(s.clone())
        };
    }
    if !cfg.is_live_root() {
        return None;
    }
    let d = match which {
        Which::Rewrite => return None,
        Which::NginxTest => "nginx -t",
        Which::NginxReload if systemd => "systemctl reload nginx",
        Which::NginxReload => "nginx -s reload",
        Which::ApacheTest => "apachectl -t",
        // DirectAdmin names Apache's unit `httpd`.
        Which::ApacheReload if systemd => "systemctl reload httpd",
        Which::ApacheReload => "apachectl graceful",
    };
    Some(d.to_string())
}

/// The start/restart command of PHP-FPM `version` (digits), `{version}`
/// substituted; `None` when off. Like the others, the default applies only
/// when the root is `/`.
pub fn resolve_fpm_restart(cfg: &Config, version: &str) -> Option<String> {
    resolve_fpm_restart_with(
        cfg,
        version,
        std::path::Path::new(&cfg.paths.systemd_dir).exists(),
    )
}

/// [`resolve_fpm_restart`] with the systemd detection given (testable).
pub fn resolve_fpm_restart_with(cfg: &Config, version: &str, systemd: bool) -> Option<String> {
    let line = match &cfg.commands.fpm_restart {
        Some(s) if s.trim().is_empty() => return None,
        Some(s) => s.clone(),
        None if !cfg.is_live_root() => return None,
        None if systemd => "systemctl restart php-fpm{version}".to_string(),
        // [U] How non-systemd DA hosts start FPM is unconfirmed: the master
        // binary daemonizes by default (`daemonize = yes`).
        None => {
            let prefix = cfg.paths.php_prefix.replace("{XY}", "{version}");
            format!("{prefix}/sbin/php-fpm{{version}} --fpm-config {prefix}/etc/php-fpm.conf")
        }
    };
    Some(line.replace("{version}", version))
}

/// The one way this program starts another: an argument list (no shell),
/// environment only PATH and LANG=C, stdin /dev/null, cwd `/`.
/// `argv` must not be empty.
pub fn sandboxed(argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C")
        .current_dir("/")
        .stdin(Stdio::null());
    cmd
}

/// Starts a command in its own session (setsid), detached from the caller's
/// terminal and process group, so it completes even when the page request
/// that asked for it is closed. Waits up to `wait` for it to finish to report
/// its status; a command still running then is reported as started, not
/// killed.
pub fn run_detached(step: &str, argv: &[String], wait: Duration) -> StepReport {
    let mut rep = StepReport {
        step: step.into(),
        command: argv.to_vec(),
        ..StepReport::default()
    };
    let Some(prog) = argv.first() else {
        rep.note = "empty command".into();
        return rep;
    };
    let mut cmd = sandboxed(argv);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid() is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            rep.note = format!("cannot run {prog}: {e}");
            return rep;
        }
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                rep.status = st.code();
                rep.ok = st.success();
                if st.code().is_none() {
                    rep.note = "killed by a signal".into();
                }
                return rep;
            }
            Ok(None) if started.elapsed() >= wait => {
                rep.ok = true;
                rep.note = format!(
                    "started detached (pid {}), still running after {}s",
                    child.id(),
                    wait.as_secs_f32()
                );
                return rep;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                rep.note = format!("wait: {e}");
                return rep;
            }
        }
    }
}

/// Split a command line like a shell would (quotes, escapes), without
/// interpreting `;`, `|`, `$`, globs: they stay literal arguments.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let argv = shell_words::split(line).map_err(|e| format!("command {line:?}: {e}"))?;
    if argv.is_empty() {
        return Err(format!("command {line:?} is empty"));
    }
    Ok(argv)
}

/// Substitute `{user}` and `{domain}` inside each argument. Values must
/// already be validated; a placeholder without a value is an error.
pub fn substitute(argv: &[String], user: Option<&str>, domain: Option<&str>) -> Result<Vec<String>, String> {
    argv.iter()
        .map(|a| {
            let mut a = a.clone();
            for (key, val) in [("{user}", user), ("{domain}", domain)] {
                if a.contains(key) {
                    match val {
                        Some(v) => a = a.replace(key, v),
                        None => return Err(format!("{key} has no value in this command")),
                    }
                }
            }
            Ok(a)
        })
        .collect()
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut r) = r {
        std::thread::spawn(move || {
            let mut keep = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 2 * TAIL {
                    keep.drain(..keep.len() - TAIL);
                }
            }
            let _ = tx.send(keep);
        });
    }
    rx
}

/// Run one argument list: no shell, environment only PATH and LANG=C,
/// stdin /dev/null, cwd `/`, killed (with its process group) after `timeout`.
pub fn run(step: &str, argv: &[String], timeout: Duration) -> StepReport {
    let mut rep = StepReport {
        step: step.into(),
        command: argv.to_vec(),
        ..StepReport::default()
    };
    let Some(prog) = argv.first() else {
        rep.note = "empty command".into();
        return rep;
    };
    let mut cmd = sandboxed(argv);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own group, so a timeout kills whatever the command started too.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            rep.note = format!("cannot run {prog}: {e}");
            return rep;
        }
    };
    let out_rx = reader(child.stdout.take());
    let err_rx = reader(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if started.elapsed() >= timeout => {
                // SAFETY: kill(2) of the process group we created.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                rep.timed_out = true;
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                rep.note = format!("wait: {e}");
                break None;
            }
        }
    };
    // A daemon that inherited our pipes must not hang us: bounded wait.
    let grace = Duration::from_millis(500);
    rep.stdout_tail = out_rx.recv_timeout(grace).map(|b| tail(&b)).unwrap_or_default();
    rep.stderr_tail = err_rx.recv_timeout(grace).map(|b| tail(&b)).unwrap_or_default();
    if let Some(st) = status {
        rep.status = st.code();
        rep.ok = st.success();
        if st.code().is_none() {
            rep.note = "killed by a signal".into();
        }
    }
    if rep.timed_out {
        rep.note = format!("timed out after {}s, killed", timeout.as_secs_f32());
    }
    rep
}
