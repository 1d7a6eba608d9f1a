//! The automatic side: what runs without a person.
//!
//! - `hook custombuild-post` ([`custombuild_post`]): after CustomBuild built
//!   PHP, scan the whole server, write `<state_dir>/last-hook.json`, apply
//!   the `safe` plans when `[hook] on_upgrade = "repair-safe"`, and tell the
//!   admin through DA's task.queue. It must never break a build, so it
//!   reports failures in the summary instead of failing.
//! - `hook user-httpd-write` ([`enqueue_user`]): DA rewrote one user's web
//!   config; append the user to `<state_dir>/recheck.queue` and make sure one
//!   drain worker runs. DA fires it once per user on a full rewrite (2,000
//!   users → 2,000 calls), so it only queues.
//! - `hook drain` ([`drain`]): the one worker (flock on `drain.lock`) that
//!   re-scans each queued user and records drift.

use crate::apply::{self, fsx, Safety};
use crate::checks::{socket_drift, Finding, Severity};
use crate::config::{Config, NotifyWhen, OnUpgrade};
use crate::readers::Scope;
use crate::{repair, report, scan};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const LAST_HOOK: &str = "last-hook.json";
pub const RECHECK_QUEUE: &str = "recheck.queue";
pub const DRAIN_LOCK: &str = "drain.lock";
pub const DRAIN_LOG: &str = "drain.log";
pub const EVENTS_LOG: &str = "events.log";
pub const RECHECK_DIR: &str = "recheck";
/// Where the detached worker's stdout/stderr go.
pub const HOOK_LOG: &str = "hook.log";

/// `<state_dir>` as this process opens it.
pub fn state_dir(cfg: &Config) -> PathBuf {
    cfg.host(&cfg.paths.state_dir)
}

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d) = apply::journal::civil_from_days((secs / 86400) as i64);
    let t = secs % 86400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn now() -> (u64, String) {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (s, rfc3339(s))
}

fn open_flags() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Append one line in ONE `O_APPEND` write (lines from concurrent writers
/// never interleave).
fn append_line(path: &Path, line: &str) -> Result<(), String> {
    let mut f = open_flags()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    f.write_all(line.as_bytes())
        .map_err(|e| format!("append {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// hook custombuild-post

#[derive(Debug, Serialize, Default)]
pub struct Counts {
    pub users: usize,
    pub domains: usize,
    pub domains_ok: usize,
    pub domains_drift: usize,
    pub domains_unknown: usize,
    pub findings: usize,
    pub critical: usize,
    pub warning: usize,
    pub unknown: usize,
}

/// One drifted domain, with the text that breaks it.
#[derive(Debug, Serialize, Clone)]
pub struct Drifted {
    pub user: String,
    pub domain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_socket: Option<String>,
}

/// A plan the hook left for a person.
#[derive(Debug, Serialize)]
pub struct Left {
    pub finding: String,
    pub safety: Safety,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Repaired {
    pub repair_id: String,
    pub outcome: apply::Outcome,
    /// The findings the applied plans fix.
    pub plans: Vec<String>,
    pub files: Vec<apply::FileReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `<state_dir>/last-hook.json`.
#[derive(Debug, Serialize)]
pub struct HookSummary {
    pub schema: u32,
    pub hook: &'static str,
    pub time: String,
    pub unix_time: u64,
    pub policy: OnUpgrade,
    /// The scan's verdict before any repair (`ok|warning|critical|unknown`).
    pub verdict: &'static str,
    pub counts: Counts,
    pub drifted_domains: Vec<Drifted>,
    /// What `repair-safe` applied (absent under `report` or when nothing was safe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Repaired>,
    /// Plans not applied automatically (`confirm`, `manual`, or everything under `report`).
    pub not_applied: Vec<Left>,
    /// The verdict of a scan after the repair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_after: Option<&'static str>,
    /// Why the check could not run (the build went on regardless).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub notified: bool,
}

fn is_drift(f: &Finding) -> bool {
    f.check == socket_drift::ID && f.severity >= Severity::Warning
}

/// Drifted domains of a report, each with the finding that names it.
pub fn drifted(r: &scan::Report) -> Vec<Drifted> {
    r.domains
        .iter()
        .filter(|d| d.status == "drift")
        .map(|d| {
            let f = r.findings.iter().filter(|f| is_drift(f)).find(|f| {
                f.domain.as_deref() == Some(d.domain.as_str()) || f.affected_domains.contains(&d.domain)
            });
            Drifted {
                user: d.user.clone(),
                domain: d.domain.clone(),
                socket: f.and_then(|f| f.socket.clone()),
                socket_state: f.and_then(|f| f.socket_state),
                file: f.and_then(|f| f.file.clone()),
                line: f.and_then(|f| f.line),
                layer: f.and_then(|f| f.layer),
                expected_socket: f
                    .and_then(|f| f.expected_socket.clone())
                    .or_else(|| d.expected_socket.clone()),
            }
        })
        .collect()
}

fn counts(r: &scan::Report) -> Counts {
    let by = |st: &str| r.domains.iter().filter(|d| d.status == st).count();
    let sev = |s: Severity| r.findings.iter().filter(|f| f.severity == s).count();
    Counts {
        users: r.users,
        domains: r.domains.len(),
        domains_ok: by("ok"),
        domains_drift: by("drift"),
        domains_unknown: by("unknown"),
        findings: r.findings.len(),
        critical: sev(Severity::Critical),
        warning: sev(Severity::Warning),
        unknown: sev(Severity::Unknown),
    }
}

/// Runs the post-build check. Never fails: every error lands in the summary.
pub fn custombuild_post(cfg: &Config) -> HookSummary {
    let (unix_time, time) = now();
    let mut s = HookSummary {
        schema: 1,
        hook: "custombuild-post",
        time,
        unix_time,
        policy: cfg.hook.on_upgrade,
        verdict: "unknown",
        counts: Counts::default(),
        drifted_domains: vec![],
        repaired: None,
        not_applied: vec![],
        verdict_after: None,
        errors: vec![],
        notified: false,
    };
    match scan::scan(cfg, &Scope::default()) {
        Ok(r) => {
            s.verdict = r.verdict;
            s.counts = counts(&r);
            s.drifted_domains = drifted(&r);
        }
        Err(e) => s.errors.push(format!("scan: {e}")),
    }
    if s.errors.is_empty() && s.verdict != "ok" {
        plan_and_repair(cfg, &mut s);
    }
    let wants = match cfg.hook.notify {
        NotifyWhen::Never => false,
        NotifyWhen::Always => true,
        NotifyWhen::Problems => s.verdict != "ok" || s.repaired.is_some() || !s.errors.is_empty(),
    };
    if wants {
        let (subject, message) = notice(cfg, &s);
        match apply::notify_admin(cfg, &subject, &message) {
            Ok(()) => s.notified = true,
            Err(e) => s.errors.push(format!("notify: {e}")),
        }
    }
    if let Err(e) = write_summary(cfg, &s) {
        s.errors.push(e);
    }
    s
}

fn plan_and_repair(cfg: &Config, s: &mut HookSummary) {
    let proposal = match repair::propose(cfg, &Scope::default()) {
        Ok(p) => p,
        Err(e) => {
            s.errors.push(format!("plan: {e}"));
            return;
        }
    };
    let chosen = match cfg.hook.on_upgrade {
        OnUpgrade::RepairSafe => proposal.selected(Safety::Safe),
        OnUpgrade::Report => vec![],
    };
    s.not_applied = proposal
        .planned
        .iter()
        .filter(|p| !chosen.iter().any(|c| std::ptr::eq(*c, *p)))
        .map(|p| Left {
            finding: p.plan.finding.clone(),
            safety: p.plan.safety,
            advice: p.plan.advice.clone(),
        })
        .collect();
    if chosen.is_empty() {
        return;
    }
    let r = repair::execute(cfg, &chosen, None);
    s.repaired = Some(Repaired {
        repair_id: r.repair_id.clone(),
        outcome: r.outcome,
        plans: chosen.iter().map(|p| p.plan.finding.clone()).collect(),
        files: r.files.clone(),
        error: r.error.clone(),
    });
    if r.outcome == apply::Outcome::Ok {
        match scan::scan(cfg, &Scope::default()) {
            Ok(after) => s.verdict_after = Some(after.verdict),
            Err(e) => s.errors.push(format!("scan after repair: {e}")),
        }
    }
}

/// The admin message: short, with where to look next.
fn notice(cfg: &Config, s: &HookSummary) -> (String, String) {
    let subject = match (&s.repaired, s.verdict) {
        (_, _) if !s.errors.is_empty() && s.counts.domains == 0 => {
            "FPM Doctor: the check after the PHP build failed".to_string()
        }
        (Some(r), _) if r.outcome == apply::Outcome::Ok => format!(
            "FPM Doctor: repaired PHP-FPM socket drift after the PHP build ({} left)",
            s.verdict_after.unwrap_or("?")
        ),
        (_, "ok") => "FPM Doctor: PHP build checked, every PHP site reaches its socket".to_string(),
        (_, v) if s.counts.domains_drift == 0 => format!(
            "FPM Doctor: PHP build checked: {v}, {} finding(s) to read",
            s.counts.findings
        ),
        (_, v) => format!(
            "FPM Doctor: {} domain(s) point at a dead PHP-FPM socket after the PHP build ({v})",
            s.counts.domains_drift
        ),
    };
    let mut m = format!(
        "After CustomBuild's PHP build FPM Doctor scanned {} domain(s) of {} user(s): {} ok, {} drifted, {} unknown.\n",
        s.counts.domains, s.counts.users, s.counts.domains_ok, s.counts.domains_drift, s.counts.domains_unknown
    );
    const SHOW: usize = 20;
    for d in s.drifted_domains.iter().take(SHOW) {
        m.push_str(&format!(
            "- {} ({}): {} {} in {}:{}\n",
            d.domain,
            d.user,
            d.socket.as_deref().unwrap_or("?"),
            d.socket_state.unwrap_or("?"),
            d.file.as_deref().unwrap_or("?"),
            d.line.unwrap_or(0)
        ));
    }
    if s.drifted_domains.len() > SHOW {
        m.push_str(&format!("… and {} more\n", s.drifted_domains.len() - SHOW));
    }
    if let Some(r) = &s.repaired {
        m.push_str(&format!(
            "Repaired automatically (safe plans only), repair {}: {:?}{}\n",
            r.repair_id,
            r.outcome,
            r.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        ));
        for p in &r.plans {
            m.push_str(&format!("- {p}\n"));
        }
        m.push_str(&format!("Undo with: fpm-doctor undo {}\n", r.repair_id));
    }
    if !s.not_applied.is_empty() {
        m.push_str(&format!(
            "{} fix(es) wait for you: fpm-doctor repair --all --dry-run\n",
            s.not_applied.len()
        ));
    }
    for e in &s.errors {
        m.push_str(&format!("Error: {e}\n"));
    }
    m.push_str(&format!(
        "Summary: {}/{LAST_HOOK}\n",
        cfg.paths.state_dir.trim_end_matches('/')
    ));
    (report::sanitize(&subject), m)
}

fn write_summary(cfg: &Config, s: &HookSummary) -> Result<(), String> {
    let dir = state_dir(cfg);
    fsx::ensure_private_dir(&dir)?;
    let json = serde_json::to_vec_pretty(s).map_err(|e| format!("summary: {e}"))?;
    fsx::write_private(&dir.join(LAST_HOOK), &json)
}

// ---------------------------------------------------------------------------
// hook user-httpd-write / hook drain

/// Appends `user` to the re-check queue. Appenders hold a shared lock on
/// the queue so the drainer's read-and-truncate (exclusive) never loses a line.
pub fn enqueue_user(cfg: &Config, user: &str) -> Result<(), String> {
    if !apply::da::valid_user(user) {
        return Err(format!("invalid user name {:?}", report::sanitize(user)));
    }
    let dir = state_dir(cfg);
    fsx::ensure_private_dir(&dir)?;
    let path = dir.join(RECHECK_QUEUE);
    let mut f = open_flags()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    flock(&f, libc::LOCK_SH).map_err(|e| format!("lock {}: {e}", path.display()))?;
    let line = format!("{user}\n");
    let n = f
        .write(line.as_bytes())
        .map_err(|e| format!("append {}: {e}", path.display()))?;
    if n != line.len() {
        return Err(format!("append {}: short write", path.display()));
    }
    Ok(())
}

/// The drain lock if free; `None` while a worker holds it.
fn try_drain_lock(cfg: &Config) -> Result<Option<File>, String> {
    let dir = state_dir(cfg);
    fsx::ensure_private_dir(&dir)?;
    let path = dir.join(DRAIN_LOCK);
    let f = open_flags()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    match flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(e) => Err(format!("lock {}: {e}", path.display())),
    }
}

/// True when no drain worker runs right now.
pub fn drain_idle(cfg: &Config) -> Result<bool, String> {
    Ok(try_drain_lock(cfg)?.is_some())
}

/// Starts `exe hook drain <args>` detached (own session, stdin from
/// /dev/null, output to `<state_dir>/hook.log`) when no worker runs. A
/// worker that is running sees our line: it re-reads the queue after
/// releasing the lock. Returns whether a worker was started.
pub fn spawn_drain(cfg: &Config, exe: &Path, args: &[std::ffi::OsString]) -> Result<bool, String> {
    if !drain_idle(cfg)? {
        return Ok(false);
    }
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let log = open_flags()
        .append(true)
        .create(true)
        .open(state_dir(cfg).join(HOOK_LOG))
        .map_err(|e| format!("open {HOOK_LOG}: {e}"))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["hook", "drain"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: setsid(2) is async-signal-safe; it detaches the worker from
    // DA's hook (its process group and terminal) so DA never waits for it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("start {}: {e}", exe.display()))?;
    Ok(true)
}

/// Takes every queued line (read and truncate under the exclusive lock).
fn take_queue(cfg: &Config) -> Result<Vec<String>, String> {
    let path = state_dir(cfg).join(RECHECK_QUEUE);
    let mut f = match open_flags().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("open {}: {e}", path.display())),
    };
    flock(&f, libc::LOCK_EX).map_err(|e| format!("lock {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    if !bytes.is_empty() {
        f.set_len(0)
            .map_err(|e| format!("truncate {}: {e}", path.display()))?;
        let _ = f.rewind();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut users: Vec<String> = Vec::new();
    for l in text.lines() {
        // The queue is ours, but re-validate: the name becomes a file name.
        if apply::da::valid_user(l) && !users.iter().any(|u| u == l) {
            users.push(l.to_string());
        }
    }
    Ok(users)
}

fn queue_pending(cfg: &Config) -> bool {
    std::fs::metadata(state_dir(cfg).join(RECHECK_QUEUE)).is_ok_and(|m| m.len() > 0)
}

/// `<state_dir>/recheck/<user>.json`.
#[derive(Debug, Serialize)]
pub struct Recheck {
    pub schema: u32,
    pub user: String,
    pub time: String,
    pub unix_time: u64,
    pub verdict: &'static str,
    pub drifted_domains: Vec<Drifted>,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Re-scans one user; writes `recheck/<user>.json` and one `events.log`
/// line per drifted domain.
pub fn recheck_user(cfg: &Config, user: &str) -> Result<Recheck, String> {
    if !apply::da::valid_user(user) {
        return Err(format!("invalid user name {:?}", report::sanitize(user)));
    }
    let (unix_time, time) = now();
    let scope = Scope {
        user: Some(user.to_string()),
        domain: None,
    };
    let mut rc = Recheck {
        schema: 1,
        user: user.to_string(),
        time: time.clone(),
        unix_time,
        verdict: "unknown",
        drifted_domains: vec![],
        findings: vec![],
        error: None,
    };
    match scan::scan(cfg, &scope) {
        Ok(r) => {
            rc.verdict = r.verdict;
            rc.drifted_domains = drifted(&r);
            rc.findings = r.findings;
        }
        Err(e) => rc.error = Some(e),
    }
    let dir = state_dir(cfg).join(RECHECK_DIR);
    fsx::ensure_private_dir(&dir)?;
    let json = serde_json::to_vec_pretty(&rc).map_err(|e| e.to_string())?;
    fsx::write_private(&dir.join(format!("{user}.json")), &json)?;
    let events = state_dir(cfg).join(EVENTS_LOG);
    for d in &rc.drifted_domains {
        #[derive(Serialize)]
        struct Event<'a> {
            time: &'a str,
            event: &'static str,
            source: &'static str,
            #[serde(flatten)]
            drift: &'a Drifted,
        }
        let e = Event {
            time: &time,
            event: "drift",
            source: "user_httpd_write_post",
            drift: d,
        };
        // JSON escapes newlines: one event is always one line.
        let line = serde_json::to_string(&e).map_err(|e| e.to_string())? + "\n";
        append_line(&events, &line)?;
    }
    Ok(rc)
}

/// What one drain run did.
#[derive(Debug, Serialize, Default)]
pub struct DrainReport {
    /// Another worker held the lock: this one did nothing.
    pub busy: bool,
    pub rechecked: Vec<String>,
    pub errors: Vec<String>,
}

/// The drain worker: under `drain.lock`, take the queue and re-check each
/// user until it is empty; after releasing the lock look again, because an
/// appender that found the lock held relies on us to see its line.
pub fn drain(cfg: &Config) -> DrainReport {
    let mut rep = DrainReport::default();
    let log = state_dir(cfg).join(DRAIN_LOG);
    let mut first = true;
    loop {
        let lock = match try_drain_lock(cfg) {
            Ok(Some(l)) => l,
            Ok(None) => {
                rep.busy = first;
                return rep;
            }
            Err(e) => {
                rep.errors.push(e);
                return rep;
            }
        };
        first = false;
        let stamp = |what: &str| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let _ = append_line(&log, &format!("{what} {} {t}\n", std::process::id()));
        };
        stamp("start");
        loop {
            let users = match take_queue(cfg) {
                Ok(u) => u,
                Err(e) => {
                    rep.errors.push(e);
                    break;
                }
            };
            if users.is_empty() {
                break;
            }
            for u in users {
                match recheck_user(cfg, &u) {
                    Ok(_) => rep.rechecked.push(u),
                    Err(e) => rep.errors.push(format!("{u}: {e}")),
                }
            }
        }
        stamp("end");
        drop(lock);
        if !rep.errors.is_empty() || !queue_pending(cfg) {
            return rep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
