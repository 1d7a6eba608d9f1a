//! Talking to DirectAdmin: its `task.queue` (rewrite and notify requests),
//! `dataskq`, and the validation of every value we put in a queue line or a
//! command argument.

use super::commands::{self, StepReport, Which};
use crate::config::Config;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::{Duration, Instant};

/// Longest notify line we append (DA's queue is line based; a huge line
/// helps nobody).
pub const NOTIFY_MAX: usize = 4096;

/// A DA user name as we accept it: `[a-z0-9_.-]`, starting with a letter or
/// digit (so it can never pass as a command option), at most 64 bytes.
pub fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.as_bytes()[0].is_ascii_alphanumeric()
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// A domain as we accept it in a command argument.
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.as_bytes()[0].is_ascii_alphanumeric()
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// `application/x-www-form-urlencoded` value: unreserved bytes stay, every
/// other byte (space, `&`, `=`, `%`, `+`, newline, non-ASCII) becomes `%XX`.
pub fn form_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Append one whole line to DA's task.queue in ONE `O_APPEND` write, so it
/// never interleaves with DA's own writers. The queue is created if absent
/// (its absence is normal: dataskq removes it when done), owned like its
/// folder (diradmin) so DA can still append to it.
pub fn queue_append(cfg: &Config, line: &str) -> Result<(), String> {
    debug_assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
    let path = cfg.host(&cfg.paths.task_queue);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let md = f
        .metadata()
        .map_err(|e| format!("stat {}: {e}", path.display()))?;
    if !md.file_type().is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if md.len() == 0 {
        if let Some(dir) = path.parent().and_then(|p| std::fs::metadata(p).ok()) {
            if (dir.uid(), dir.gid()) != (md.uid(), md.gid()) {
                use std::os::fd::AsRawFd;
                // SAFETY: fchown of our own descriptor; failure is harmless.
                unsafe { libc::fchown(f.as_raw_fd(), dir.uid(), dir.gid()) };
            }
        }
    }
    let n = f
        .write(line.as_bytes())
        .map_err(|e| format!("append {}: {e}", path.display()))?;
    if n != line.len() {
        return Err(format!(
            "append {}: short write ({n} of {})",
            path.display(),
            line.len()
        ));
    }
    Ok(())
}

/// Queue a notification to the admins:
/// `action=notify&value=admin&subject=…&message=…` (the action is
/// `[hook] notify_task`), form-encoded, capped to [`NOTIFY_MAX`] bytes (the
/// message is cut first), one line, one write.
pub fn notify_admin(cfg: &Config, subject: &str, message: &str) -> Result<(), String> {
    let head = format!("{}&subject=", cfg.hook.notify_task);
    let head = head.as_str();
    let mut subj = String::new();
    for ch in subject.chars() {
        let e = form_encode(ch.encode_utf8(&mut [0u8; 4]));
        if head.len() + subj.len() + e.len() > NOTIFY_MAX / 4 {
            break;
        }
        subj.push_str(&e);
    }
    let mut line = format!("{head}{subj}&message=");
    for ch in message.chars() {
        let e = form_encode(ch.encode_utf8(&mut [0u8; 4]));
        if line.len() + e.len() + 1 > NOTIFY_MAX {
            break;
        }
        line.push_str(&e);
    }
    line.push('\n');
    queue_append(cfg, &line)
}

/// The queue line asking DA to rewrite one user's web server configs.
pub fn rewrite_line(user: &str) -> String {
    format!("action=rewrite&value=httpd&user={}\n", form_encode(user))
}

/// Whether dataskq is run after queueing.
fn run_dataskq(cfg: &Config) -> bool {
    match cfg.commands.run_dataskq {
        Some(b) => b,
        None => cfg.is_live_root() && cfg.host(&cfg.paths.dataskq).exists(),
    }
}

/// Trigger DA's rewrite of these users' configs. With `commands.rewrite`
/// set, run it once per user; else append one queue line per user, run
/// dataskq, and wait (bounded) until DA has consumed our lines. The wait
/// timing out is recorded, not a failure: DA's cron runs the queue anyway.
pub fn trigger_rewrite(cfg: &Config, users: &[String], steps: &mut Vec<StepReport>) -> Result<(), String> {
    let mut users: Vec<&String> = users.iter().collect();
    users.sort();
    users.dedup();
    if users.is_empty() {
        return Ok(());
    }
    if let Some(bad) = users.iter().find(|u| !valid_user(u)) {
        let s = StepReport::note("rewrite", false, format!("invalid user name {bad:?}"));
        let e = s.summary();
        steps.push(s);
        return Err(e);
    }
    let timeout = Duration::from_secs(cfg.commands.timeout_secs.max(1));
    if let Some(line) = commands::resolve(cfg, Which::Rewrite) {
        let argv = commands::split(&line)?;
        for u in users {
            let s = match commands::substitute(&argv, Some(u), None) {
                Ok(a) => commands::run("rewrite", &a, timeout),
                Err(e) => StepReport::note("rewrite", false, e),
            };
            let ok = s.ok;
            let e = s.summary();
            steps.push(s);
            if !ok {
                return Err(e);
            }
        }
        return Ok(());
    }
    let lines: Vec<String> = users.iter().map(|u| rewrite_line(u)).collect();
    for l in &lines {
        if let Err(e) = queue_append(cfg, l) {
            steps.push(StepReport::note("rewrite", false, e.clone()));
            return Err(e);
        }
    }
    steps.push(StepReport::note(
        "rewrite",
        true,
        format!(
            "queued {} in {}",
            lines.iter().map(|l| l.trim_end()).collect::<Vec<_>>().join(", "),
            cfg.paths.task_queue
        ),
    ));
    if !run_dataskq(cfg) {
        steps.push(StepReport::skipped(
            "dataskq",
            "not run (root is not / or dataskq missing): DA processes the queue on its next run",
        ));
        return Ok(());
    }
    let dataskq = cfg.host(&cfg.paths.dataskq).to_string_lossy().into_owned();
    let s = commands::run("dataskq", &[dataskq], timeout);
    let ok = s.ok;
    let e = s.summary();
    steps.push(s);
    if !ok {
        return Err(e);
    }
    let wait = Duration::from_secs(cfg.commands.rewrite_wait_secs);
    let queue = cfg.host(&cfg.paths.task_queue);
    let started = Instant::now();
    loop {
        let pending = match std::fs::read(&queue) {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b);
                lines.iter().any(|l| text.lines().any(|t| t == l.trim_end()))
            }
            Err(_) => false,
        };
        if !pending {
            steps.push(StepReport::note(
                "rewrite_wait",
                true,
                format!("DA consumed the queue in {:.1}s", started.elapsed().as_secs_f32()),
            ));
            return Ok(());
        }
        if started.elapsed() >= wait {
            steps.push(StepReport::note(
                "rewrite_wait",
                true,
                format!(
                    "timed out after {}s: our lines are still in {}; generated files may be stale",
                    wait.as_secs(),
                    cfg.paths.task_queue
                ),
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
