//! The admin and reseller pages render from the latest full scan, the
//! *snapshot* (`<state_dir>/snapshot.json`, the `scan --json` report), so a
//! page of a 10,000-domain server answers at once. A scan runs detached
//! (`fpm-doctor web-snapshot`, own session) because DA closes a page's
//! output when the browser leaves; the pages poll `status.raw`.

use crate::config::Config;
use crate::hooks::state_dir;
use crate::readers::Scope;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SNAPSHOT: &str = "snapshot.json";
/// `{pid, started_unix}` while a detached scan runs.
pub const RUNNING: &str = "snapshot.run";
/// The last detached scan's error, if it failed.
pub const ERROR: &str = "snapshot.error";

/// The parts of the report (JSON schema 1) the pages show. Owned and
/// deserialisable, so live scans and the snapshot render the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snap {
    pub verdict: String,
    #[serde(default)]
    pub webserver: Option<String>,
    #[serde(default)]
    pub php: Vec<SPhp>,
    #[serde(default)]
    pub domains: Vec<SDomain>,
    #[serde(default)]
    pub findings: Vec<SFinding>,
    #[serde(default)]
    pub primary_cause: Option<SCause>,
    #[serde(default)]
    pub fpm: Vec<SFpm>,
    #[serde(default)]
    pub probed: bool,
    /// Every check and its state (`ok|finding|unknown|not_applicable`).
    #[serde(default)]
    pub checks: Vec<SCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SCheck {
    pub id: String,
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SPhp {
    pub slot: u8,
    pub release: String,
    #[serde(default)]
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SDomain {
    pub user: String,
    pub domain: String,
    #[serde(default)]
    pub parent: Option<String>,
    pub php_slot: u8,
    #[serde(default)]
    pub php_release: Option<String>,
    #[serde(default)]
    pub expected_socket: Option<String>,
    pub status: String,
    #[serde(default)]
    pub expected_basis: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SFinding {
    pub check: String,
    pub severity: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default)]
    pub socket: Option<String>,
    #[serde(default)]
    pub socket_state: Option<String>,
    #[serde(default)]
    pub expected_socket: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub socket_detail: Option<String>,
    #[serde(default)]
    pub log_line: Option<String>,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub affected_domains: Vec<String>,
    /// Secondary evidence (logs): its `unknown` never sets the verdict.
    #[serde(default)]
    pub secondary: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SCause {
    pub check: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    pub reason: String,
    pub evidence: SFinding,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SFpm {
    pub slot: u8,
    pub release: String,
    pub state: String,
    #[serde(default)]
    pub listening: usize,
    #[serde(default)]
    pub failing: usize,
}

impl Snap {
    pub fn from_report(r: &crate::scan::Report) -> Result<Snap, String> {
        serde_json::to_value(r)
            .and_then(serde_json::from_value)
            .map_err(|e| format!("report: {e}"))
    }

    /// Only what `may_see` users own; server-wide findings (no user) only
    /// when `server_wide` (admins).
    pub fn scoped(mut self, may_see: impl Fn(&str) -> bool, server_wide: bool) -> Snap {
        self.domains.retain(|d| may_see(&d.user));
        self.findings.retain(|f| match &f.user {
            Some(u) => may_see(u),
            None => server_wide,
        });
        if let Some(c) = &self.primary_cause {
            let ok = match &c.user {
                Some(u) => may_see(u),
                None => server_wide,
            };
            if !ok {
                self.primary_cause = None;
            }
        }
        self
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn path(cfg: &Config, name: &str) -> PathBuf {
    state_dir(cfg).join(name)
}

/// The snapshot and its age in seconds, if there is one.
pub fn load(cfg: &Config) -> Result<Option<(Snap, u64)>, String> {
    let p = path(cfg, SNAPSHOT);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let snap: Snap = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    let mtime = std::fs::metadata(&p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Some((snap, now_unix().saturating_sub(mtime))))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunMark {
    pid: i32,
    started_unix: u64,
}

/// What `status.raw` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `running` | `done` | `none` (no snapshot yet).
    pub state: &'static str,
    pub running: bool,
    /// Seconds since the snapshot was written.
    pub age_secs: Option<u64>,
    /// Seconds the running scan has taken so far.
    pub running_secs: Option<u64>,
    pub error: Option<String>,
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill(pid, 0) only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn running(cfg: &Config) -> Option<RunMark> {
    let m: RunMark = serde_json::from_slice(&std::fs::read(path(cfg, RUNNING)).ok()?).ok()?;
    alive(m.pid).then_some(m)
}

pub fn status(cfg: &Config) -> Status {
    let run = running(cfg);
    let age = std::fs::metadata(path(cfg, SNAPSHOT))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| now_unix().saturating_sub(d.as_secs()));
    let error = std::fs::read_to_string(path(cfg, ERROR))
        .ok()
        .filter(|s| !s.is_empty());
    Status {
        state: match (&run, age) {
            (Some(_), _) => "running",
            (None, Some(_)) => "done",
            (None, None) => "none",
        },
        running: run.is_some(),
        age_secs: age,
        running_secs: run.map(|m| now_unix().saturating_sub(m.started_unix)),
        error,
    }
}

/// Starts `exe web-snapshot [--config F] [--root R]` detached unless one
/// runs. Returns whether one was started.
pub fn start(cfg: &Config, exe: &Path) -> Result<bool, String> {
    if running(cfg).is_some() {
        return Ok(false);
    }
    crate::apply::fsx::ensure_private_dir(&state_dir(cfg))?;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(exe);
    cmd.arg("web-snapshot");
    if let Some(c) = &cfg.config_file {
        cmd.arg("--config").arg(c);
    }
    if !cfg.is_live_root() {
        cmd.arg("--root").arg(&cfg.root);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe. The scan outlives the page
    // (DA closes a page's output when the browser leaves).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("start {}: {e}", exe.display()))?;
    let mark = RunMark {
        pid: child.id() as i32,
        started_unix: now_unix(),
    };
    let _ = crate::apply::fsx::write_private(
        &path(cfg, RUNNING),
        &serde_json::to_vec(&mark).unwrap_or_default(),
    );
    Ok(true)
}

/// The detached scan itself: scan the server, write the snapshot through a
/// temp file and a rename (a reader never sees half a file).
pub fn run(cfg: &Config) -> Result<(), String> {
    let dir = state_dir(cfg);
    crate::apply::fsx::ensure_private_dir(&dir)?;
    let mark = RunMark {
        pid: std::process::id() as i32,
        started_unix: now_unix(),
    };
    let _ =
        crate::apply::fsx::write_private(&dir.join(RUNNING), &serde_json::to_vec(&mark).unwrap_or_default());
    let result = crate::scan::scan(cfg, &Scope::default()).and_then(|r| {
        let json = serde_json::to_vec(&r).map_err(|e| e.to_string())?;
        crate::apply::fsx::write_private(&dir.join(SNAPSHOT), &json)?;
        let _ = std::fs::remove_file(dir.join(ERROR));
        // The read-only views for servers where *_run_as does not work;
        // a failure there must not lose the snapshot.
        if let Err(e) =
            Snap::from_report(&r).and_then(|s| super::publish::publish(cfg, &s, now_unix() as i64))
        {
            let _ = crate::apply::fsx::write_private(
                &dir.join(ERROR),
                format!("publishing read-only views: {e}").as_bytes(),
            );
        }
        Ok(())
    });
    match &result {
        Ok(()) => {}
        Err(e) => {
            let _ = crate::apply::fsx::write_private(&dir.join(ERROR), e.as_bytes());
        }
    }
    let _ = std::fs::remove_file(dir.join(RUNNING));
    result
}

/// After a repair: re-scan the touched users and replace their rows in the
/// snapshot, so the overview is right at once without a full scan.
pub fn refresh_users(cfg: &Config, users: &[String]) -> Result<(), String> {
    let Some((mut snap, _)) = load(cfg)? else {
        return Ok(());
    };
    for u in users {
        let r = crate::scan::scan(
            cfg,
            &Scope {
                user: Some(u.clone()),
                domain: None,
            },
        )?;
        let fresh = Snap::from_report(&r)?;
        snap.domains.retain(|d| &d.user != u);
        snap.findings.retain(|f| f.user.as_deref() != Some(u));
        snap.domains.extend(fresh.domains);
        snap.findings.extend(
            fresh
                .findings
                .into_iter()
                .filter(|f| f.user.as_deref() == Some(u)),
        );
        if snap.primary_cause.as_ref().and_then(|c| c.user.as_deref()) == Some(u) {
            snap.primary_cause = fresh.primary_cause;
        }
    }
    snap.domains
        .sort_by(|a, b| (&a.user, &a.domain).cmp(&(&b.user, &b.domain)));
    let json = serde_json::to_vec(&snap).map_err(|e| e.to_string())?;
    crate::apply::fsx::write_private(&path(cfg, SNAPSHOT), &json)
}
