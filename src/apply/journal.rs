//! The repair journal (`<state_dir>/journal/<id>.json`), the backups
//! (`<state_dir>/backups/<id>/`) and the server-wide lock
//! (`<state_dir>/lock`).

use super::commands::StepReport;
use super::fsx;
use super::{Plan, Target};
use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a repair is. Each state is journalled (fsync) before the next
/// step starts, so after a crash the last state says what may have happened.
/// `intent` → `backed_up` → `written` → `rewritten` → `validated` →
/// `reloaded` → `verified` → `applied`; or → `rolled_back` / `refused` /
/// `failed`. Files are only written after `backed_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JState {
    /// Plans and hashes recorded; backups may be partial; nothing written.
    Intent,
    /// Every original is backed up (and each new text beside it).
    BackedUp,
    /// Some or all files may hold the new text.
    Written,
    Rewritten,
    Validated,
    Reloaded,
    /// Everything passed; only the final record is missing.
    Verified,
    /// Terminal: the new text is in place.
    Applied,
    /// Terminal: the originals are back.
    RolledBack,
    /// Terminal: checked and refused before anything was written.
    Refused,
    /// Terminal: rollback could not restore everything (see `error`).
    Failed,
}

impl JState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JState::Applied | JState::RolledBack | JState::Refused | JState::Failed
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Apply,
    Undo,
}

/// One file of a repair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JFile {
    /// Server path.
    pub file: String,
    /// Backup of the original bytes, relative to the repair's backup folder.
    pub backup: String,
    /// Copy of the new bytes, same folder.
    pub written: String,
    pub orig_sha256: String,
    pub new_sha256: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// One repair (or undo) as journalled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JournalEntry {
    pub id: String,
    pub kind: Kind,
    /// For an undo: the repair it reverts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<String>,
    pub created_unix: u64,
    pub pid: u32,
    pub state: JState,
    #[serde(default)]
    pub plans: Vec<Plan>,
    #[serde(default)]
    pub files: Vec<JFile>,
    #[serde(default)]
    pub rewrite_users: Vec<String>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub steps: Vec<StepReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// False when the repair ran actions (a restart, a MySQL kill, an unban)
    /// that no undo can revert: undo restores its files only, and refuses
    /// when it has none.
    #[serde(default = "yes")]
    pub undoable: bool,
}

fn yes() -> bool {
    true
}

pub fn journal_dir(cfg: &Config) -> PathBuf {
    cfg.host(&cfg.paths.state_dir).join("journal")
}

pub fn backup_dir(cfg: &Config, id: &str) -> PathBuf {
    cfg.host(&cfg.paths.state_dir).join("backups").join(id)
}

/// A repair id: UTC time to the nanosecond, pid and a counter, so ids sort
/// in the order repairs took the lock.
pub fn new_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86400) as i64);
    let t = secs % 86400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:09}Z-{}-{}",
        t / 3600,
        t / 60 % 60,
        t % 60,
        now.subsec_nanos(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A safe id (we build paths from it).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Write the entry durably (temp, fsync, rename, fsync folder).
pub fn save(cfg: &Config, e: &JournalEntry) -> Result<(), String> {
    let dir = journal_dir(cfg);
    fsx::ensure_private_dir(&dir)?;
    let json = serde_json::to_vec_pretty(e).map_err(|x| format!("journal encode: {x}"))?;
    fsx::write_private(&dir.join(format!("{}.json", e.id)), &json)
}

pub fn load(cfg: &Config, id: &str) -> Result<JournalEntry, String> {
    if !valid_id(id) {
        return Err(format!("invalid repair id {id:?}"));
    }
    let p = journal_dir(cfg).join(format!("{id}.json"));
    let b = std::fs::read(&p).map_err(|e| format!("repair {id}: {}: {e}", p.display()))?;
    serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", p.display()))
}

/// All entries, oldest first. Unreadable entries are skipped (reported by
/// the caller via `list_errors`).
pub fn list(cfg: &Config) -> (Vec<JournalEntry>, Vec<String>) {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let Ok(rd) = std::fs::read_dir(journal_dir(cfg)) else {
        return (out, errs);
    };
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if !valid_id(id) {
            continue;
        }
        match load(cfg, id) {
            Ok(e) => out.push(e),
            Err(e) => errs.push(e),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    (out, errs)
}

/// Keep the newest `keep` terminal entries; delete older ones and their
/// backups. Unfinished entries are never pruned (recover needs them).
pub fn prune(cfg: &Config, keep: usize) -> Vec<String> {
    let (entries, _) = list(cfg);
    let done: Vec<&JournalEntry> = entries.iter().filter(|e| e.state.is_terminal()).collect();
    let mut removed = Vec::new();
    if done.len() <= keep {
        return removed;
    }
    for e in &done[..done.len() - keep] {
        let _ = std::fs::remove_dir_all(backup_dir(cfg, &e.id));
        if std::fs::remove_file(journal_dir(cfg).join(format!("{}.json", e.id))).is_ok() {
            removed.push(e.id.clone());
        }
    }
    let _ = fsx::sync_path_dir(&journal_dir(cfg));
    removed
}

/// The server-wide repair lock: `flock` on `<state_dir>/lock`, released
/// when dropped or when the process dies (even by kill -9).
pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(cfg: &Config, wait: Duration) -> Result<Lock, String> {
        let dir = cfg.host(&cfg.paths.state_dir);
        fsx::ensure_private_dir(&dir)?;
        let path = dir.join("lock");
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let started = Instant::now();
        loop {
            // SAFETY: flock(2) on our own descriptor.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock { _file: f });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) && e.raw_os_error() != Some(libc::EINTR) {
                return Err(format!("lock {}: {e}", path.display()));
            }
            if started.elapsed() >= wait {
                return Err(format!(
                    "another repair is running: {} still locked after {}s; try again later",
                    path.display(),
                    wait.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19723), (2024, 1, 1));
        assert_eq!(civil_from_days(19782), (2024, 2, 29));
        assert!(valid_id(&new_id()));
        assert!(!valid_id("../x"));
    }
}
