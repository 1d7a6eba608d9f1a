//! The apply protocol: the ONE place that writes config files.
//!
//! Plans (file, byte span, old bytes, new bytes) are computed elsewhere;
//! this module applies them: lock → journal intent → back up → check each
//! span → write atomically → DA rewrite → validate → reload → verify, and on
//! any failure restores every original byte for byte. A crash at any point
//! leaves a journal that [`recover`] (run at the start of every apply and
//! undo) completes or rolls back: never a mix of old and new files.
//!
//! Test-only fault injection: [`ApplyOptions::fault`] or the environment
//! variable `FPM_DOCTOR_FAULT` naming one of [`FAULT_POINTS`] makes the
//! process SIGKILL itself right after that step (a real crash: no unwinding,
//! no destructors). Production code and configs never set either.

pub mod commands;
pub mod da;
pub mod fsx;
pub mod journal;

pub use commands::StepReport;
pub use da::notify_admin;
pub use journal::{JState, JournalEntry, Kind};

use crate::config::Config;
use commands::Which;
use fsx::{sha256_hex, DirEntry, Meta};
use journal::JFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How safe a fix is to apply without a human reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Safety {
    Safe,
    Confirm,
    /// Not applied by this module: `advice` says what to do.
    Manual,
}

/// Which web server validates and reloads after the edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Nginx,
    Apache,
}

/// Replace bytes `[start, end)` of `file` (a server path), which must equal
/// `old`, with `new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    pub file: String,
    pub start: usize,
    pub end: usize,
    #[serde(with = "bytes_text")]
    pub old: Vec<u8>,
    #[serde(with = "bytes_text")]
    pub new: Vec<u8>,
}

/// One fix, as computed by a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Human reference: "socket-drift a.test .cust_nginx:3".
    pub finding: String,
    pub safety: Safety,
    /// Byte-span edits; overlapping edits in one file are refused.
    pub edits: Vec<Edit>,
    /// DA users whose configs DA must regenerate after the edit.
    pub rewrite_users: Vec<String>,
    /// Operations run after the edits and the reload (a restart, a MySQL
    /// kill, an unban). They cannot be undone: the repair is journalled
    /// `undoable: false`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    pub target: Target,
    /// For Manual plans: the exact steps.
    pub advice: Option<String>,
}

/// An operation that is not a file edit. It runs after the edits (and the
/// reload), is journalled, and cannot be undone (`undoable: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Start or restart PHP-FPM `version` (digits, `83`) with the configured
    /// `[commands] fpm_restart`, detached from this process.
    FpmRestart { version: String },
    /// `KILL <thread>` if the thread still belongs to `db_user`.
    MysqlKill { thread: u64, db_user: String },
    /// Lift a ban: `tool` is `csf` (`csf -dr`), `csf_temp` (`csf -tr`) or
    /// `fail2ban` (`fail2ban-client set <jail> unbanip`); commands from `[firewall]`.
    Unban {
        tool: String,
        ip: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jail: Option<String>,
    },
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::FpmRestart { version } => format!("start or restart PHP-FPM {version}"),
            Action::MysqlKill { thread, db_user } => format!("kill MySQL thread {thread} of {db_user}"),
            Action::Unban { tool, ip, jail } => match jail {
                Some(j) => format!("lift the {tool} ban of {ip} in jail {j}"),
                None => format!("lift the {tool} ban of {ip}"),
            },
        }
    }

    /// Refuses values that could name something else than meant.
    fn check(&self) -> Result<(), String> {
        match self {
            Action::MysqlKill { db_user, .. }
                if db_user.is_empty() || db_user.contains(['\'', '\\', '\n']) =>
            {
                Err(format!("mysql kill: odd database user {db_user:?}"))
            }
            Action::Unban { tool, ip, jail } => {
                if crate::evidence::firewall::parse_net(ip).is_none() {
                    return Err(format!("unban: {ip:?} is not an address"));
                }
                if let Some(j) = jail {
                    if j.is_empty()
                        || !j
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        return Err(format!("unban: odd jail name {j:?}"));
                    }
                }
                match tool.as_str() {
                    "csf" | "csf_temp" => Ok(()),
                    "fail2ban" if jail.is_some() => Ok(()),
                    _ => Err(format!("unban: unknown tool {tool:?}")),
                }
            }
            _ => Ok(()),
        }
    }

    /// Runs it, reporting a step.
    fn run(&self, cfg: &Config) -> StepReport {
        match self {
            Action::FpmRestart { version } => {
                if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
                    return StepReport::note("fpm_restart", false, format!("invalid version {version:?}"));
                }
                let Some(line) = commands::resolve_fpm_restart(cfg, version) else {
                    return StepReport::skipped(
                        "fpm_restart",
                        "off: the root is not / and no [commands] fpm_restart is configured",
                    );
                };
                match commands::split(&line) {
                    Ok(argv) => commands::run_detached(
                        "fpm_restart",
                        &argv,
                        Duration::from_secs(cfg.commands.timeout_secs.max(1)),
                    ),
                    Err(e) => StepReport::note("fpm_restart", false, e),
                }
            }
            Action::MysqlKill { thread, db_user } => {
                match crate::evidence::mysql::kill(cfg, *thread, db_user) {
                    Ok(note) => StepReport::note("mysql-kill", true, note),
                    Err(e) => StepReport::note("mysql-kill", false, e),
                }
            }
            Action::Unban { tool, ip, jail } => {
                let f = &cfg.firewall;
                let (set, default) = match tool.as_str() {
                    "csf" => (&f.csf_unban, "csf -dr {ip}"),
                    "csf_temp" => (&f.csf_temp_unban, "csf -tr {ip}"),
                    _ => (&f.fail2ban_unban, "fail2ban-client set {jail} unbanip {ip}"),
                };
                let Some(line) = crate::config::resolve_cmd(cfg.is_live_root(), set, default) else {
                    return StepReport::skipped(
                        "unban",
                        format!("{tool} unban of {ip}: command off (root is not / and none configured)"),
                    );
                };
                let jail = jail.clone().unwrap_or_default();
                match crate::evidence::cmd::argv(&line, &[("ip", ip), ("jail", &jail)]) {
                    Ok(argv) => commands::run(
                        "unban",
                        &argv,
                        Duration::from_secs(cfg.firewall.timeout_secs.max(1)),
                    ),
                    Err(e) => StepReport::note("unban", false, e),
                }
            }
        }
    }
}

/// Runs one action; the step says what ran and whether it worked.
fn run_action(cfg: &Config, a: &Action) -> StepReport {
    a.run(cfg)
}

/// The verify callback: re-scan the touched domains, connect to their
/// sockets; `Err` ⇒ roll back.
pub type VerifyFn<'a> = &'a dyn Fn(&Config) -> Result<(), String>;

/// Everything the caller adds to a run.
#[derive(Default)]
pub struct ApplyOptions<'a> {
    /// Called after reload: re-scan the touched domains, connect to their
    /// sockets. `Err` ⇒ roll back.
    pub verify: Option<VerifyFn<'a>>,
    /// TEST ONLY: a name from [`FAULT_POINTS`]; the process kills itself
    /// (SIGKILL) right after that step.
    pub fault: Option<String>,
}

/// Where a test can crash a repair (see [`ApplyOptions::fault`]).
pub const FAULT_POINTS: &[&str] = &[
    "after_intent",
    "after_backup",
    "mid_write",
    "after_write",
    "after_rewrite",
    "after_validate",
    "after_reload",
    "after_verify",
    "mid_rollback",
];

/// The environment variable naming a fault point (tests only).
pub const FAULT_ENV: &str = "FPM_DOCTOR_FAULT";

fn fault(opts: Option<&ApplyOptions>, point: &str) {
    let hit = opts.and_then(|o| o.fault.as_deref()) == Some(point)
        || std::env::var(FAULT_ENV).ok().as_deref() == Some(point);
    if hit {
        // SAFETY: kill(2) of ourselves; like `kill -9`, nothing runs after.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::process::abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Planned,
    Applied,
    RolledBack,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub file: String,
    pub state: FileState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new text is in place, validated, reloaded and verified.
    Ok,
    /// Something failed after the check; every file is back to its original.
    RolledBack,
    /// Refused before writing anything (stale plan, overlap, symlink, …).
    Refused,
    /// Could not run, or the rollback could not restore everything.
    Failed,
}

/// What an apply or undo did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyReport {
    pub repair_id: String,
    pub files: Vec<FileReport>,
    pub steps: Vec<StepReport>,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// What the recovery run at the start did to interrupted repairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<String>,
    /// For a refused undo: current bytes vs what the repair wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl ApplyReport {
    fn new() -> ApplyReport {
        ApplyReport {
            repair_id: String::new(),
            files: Vec::new(),
            steps: Vec::new(),
            outcome: Outcome::Failed,
            error: None,
            recovered: Vec::new(),
            diff: None,
        }
    }

    fn fail(mut self, outcome: Outcome, err: String) -> ApplyReport {
        self.outcome = outcome;
        self.error = Some(err);
        self
    }

    fn set_file(&mut self, file: &str, state: FileState, note: Option<String>) {
        match self.files.iter_mut().find(|f| f.file == file) {
            Some(f) => {
                f.state = state;
                if note.is_some() {
                    f.note = note;
                }
            }
            None => self.files.push(FileReport {
                file: file.to_string(),
                state,
                note,
            }),
        }
    }
}

/// Apply the edits to `orig`. Every edit's `old` must match the bytes at
/// its span; overlapping edits (or two at the same start) are refused.
/// Bytes outside the spans are copied unchanged.
pub fn splice(orig: &[u8], edits: &[&Edit]) -> Result<Vec<u8>, String> {
    let mut sorted: Vec<&Edit> = edits.to_vec();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut out = Vec::with_capacity(orig.len());
    let mut pos = 0usize;
    let mut prev: Option<&Edit> = None;
    for e in sorted {
        if e.start > e.end || e.end > orig.len() {
            return Err(format!(
                "{}: edit {}..{} outside the file ({} bytes): the file changed since the scan",
                e.file,
                e.start,
                e.end,
                orig.len()
            ));
        }
        if let Some(p) = prev {
            if e.start < p.end || e.start == p.start {
                return Err(format!(
                    "{}: edits {}..{} and {}..{} overlap, refused",
                    e.file, p.start, p.end, e.start, e.end
                ));
            }
        }
        if orig[e.start..e.end] != e.old[..] {
            return Err(format!(
                "{}: bytes {}..{} are {:?}, the plan expected {:?}: the file changed since the scan",
                e.file,
                e.start,
                e.end,
                String::from_utf8_lossy(&orig[e.start..e.end]),
                String::from_utf8_lossy(&e.old)
            ));
        }
        out.extend_from_slice(&orig[pos..e.start]);
        out.extend_from_slice(&e.new);
        pos = e.end;
        prev = Some(e);
    }
    out.extend_from_slice(&orig[pos..]);
    Ok(out)
}

/// One file to replace, read under the lock.
struct Change {
    file: String,
    dir: DirEntry,
    orig: Vec<u8>,
    new: Vec<u8>,
    meta: Meta,
}

/// Edits grouped per file (sorted by path: a stable order for journal and
/// reports).
/// Keyed by the normalised path, so `/a//b` and `/a/./b` are one file
/// (two keys for one file would let the second write clobber the first).
fn by_file(plans: &[Plan]) -> BTreeMap<String, Vec<&Edit>> {
    let mut m: BTreeMap<String, Vec<&Edit>> = BTreeMap::new();
    for p in plans {
        for e in &p.edits {
            m.entry(normalize(&e.file)).or_default().push(e);
        }
    }
    m
}

/// `/a//./b` → `/a/b`. `..` is kept (and refused by `prepare`): it could
/// name a file outside what the plan meant.
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let body = parts.join("/");
    if path.starts_with('/') {
        format!("/{body}")
    } else {
        body
    }
}

/// Read every file (no symlinks, regular only) and compute its new bytes.
fn prepare(cfg: &Config, plans: &[Plan]) -> Result<Vec<Change>, Vec<String>> {
    let mut errs = Vec::new();
    for p in plans {
        if p.safety == Safety::Manual {
            errs.push(format!(
                "{}: manual fix, not applied automatically: {}",
                p.finding,
                p.advice.as_deref().unwrap_or("see the finding")
            ));
        }
        for u in &p.rewrite_users {
            if !da::valid_user(u) {
                errs.push(format!("{}: invalid user name {u:?}", p.finding));
            }
        }
        for a in &p.actions {
            if let Err(e) = a.check() {
                errs.push(format!("{}: {e}", p.finding));
            }
        }
    }
    let mut out = Vec::new();
    for (file, edits) in by_file(plans) {
        if !file.starts_with('/') || file.split('/').any(|c| c == "..") {
            errs.push(format!("{file}: not an absolute server path without `..`"));
            continue;
        }
        let r = DirEntry::open(&cfg.host(&file)).and_then(|dir| {
            let (orig, meta) = dir.read()?;
            let new = splice(&orig, &edits)?;
            Ok(Change {
                file: file.clone(),
                dir,
                orig,
                new,
                meta,
            })
        });
        match r {
            Ok(c) => out.push(c),
            Err(e) => errs.push(e),
        }
    }
    let actions = plans.iter().any(|p| !p.actions.is_empty());
    if out.is_empty() && errs.is_empty() && !actions {
        errs.push("nothing to apply: no edits".into());
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// Unified diff of what `plans` would change (files as they are now).
/// Non-UTF-8 bytes are shown lossily; files that cannot be planned get a
/// `# file: error` line.
pub fn diff(cfg: &Config, plans: &[Plan]) -> String {
    let mut out = String::new();
    for (file, edits) in by_file(plans) {
        let r = DirEntry::open(&cfg.host(&file))
            .and_then(|d| d.read())
            .and_then(|(orig, _)| {
                let new = splice(&orig, &edits)?;
                Ok((orig, new))
            });
        match r {
            Ok((orig, new)) => out.push_str(&unified(&file, &orig, &new)),
            Err(e) => out.push_str(&format!("# {file}: {e}\n")),
        }
    }
    out
}

fn unified(file: &str, old: &[u8], new: &[u8]) -> String {
    let a = String::from_utf8_lossy(old);
    let b = String::from_utf8_lossy(new);
    similar::TextDiff::from_lines(a.as_ref(), b.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(file, file)
        .to_string()
}

fn lock(cfg: &Config) -> Result<journal::Lock, String> {
    journal::Lock::acquire(cfg, Duration::from_secs(cfg.apply.lock_wait_secs))
}

/// Apply `plans` as one repair (see the module doc for the protocol).
pub fn apply(cfg: &Config, plans: &[Plan], opts: &ApplyOptions) -> ApplyReport {
    let mut rep = ApplyReport::new();
    let _lock = match lock(cfg) {
        Ok(l) => l,
        Err(e) => return rep.fail(Outcome::Failed, e),
    };
    rep.recovered = recover_locked(cfg);
    rep.repair_id = journal::new_id();
    let mut users: Vec<String> = plans.iter().flat_map(|p| p.rewrite_users.clone()).collect();
    users.sort();
    users.dedup();
    let mut targets: Vec<Target> = plans.iter().map(|p| p.target).collect();
    targets.sort();
    targets.dedup();
    let mut entry = JournalEntry {
        id: rep.repair_id.clone(),
        kind: Kind::Apply,
        undoes: None,
        created_unix: journal::now_unix(),
        pid: std::process::id(),
        state: JState::Intent,
        plans: plans.to_vec(),
        files: Vec::new(),
        rewrite_users: users,
        targets,
        steps: Vec::new(),
        error: None,
        undoable: plans.iter().all(|p| p.actions.is_empty()),
    };
    for f in by_file(plans).keys() {
        rep.set_file(f, FileState::Planned, None);
    }
    match prepare(cfg, plans) {
        Ok(changes) => run_txn(cfg, entry, changes, opts, rep),
        Err(errs) => {
            // Recorded so history shows refused attempts too.
            let err = errs.join("; ");
            entry.state = JState::Refused;
            entry.error = Some(err.clone());
            for f in rep.files.iter_mut() {
                f.state = FileState::Unchanged;
            }
            let saved = journal::save(cfg, &entry);
            let mut rep = rep.fail(Outcome::Refused, err);
            if let Err(e) = saved {
                rep.error = Some(format!("{}; journal: {e}", rep.error.unwrap_or_default()));
            }
            rep
        }
    }
}

/// Run a checked set of changes as one journalled transaction.
fn run_txn(
    cfg: &Config,
    mut entry: JournalEntry,
    changes: Vec<Change>,
    opts: &ApplyOptions,
    mut rep: ApplyReport,
) -> ApplyReport {
    let changes: Vec<Change> = changes
        .into_iter()
        .filter(|c| {
            let same = c.orig == c.new;
            if same {
                rep.set_file(&c.file, FileState::Unchanged, Some("edits change nothing".into()));
            }
            !same
        })
        .collect();
    entry.files = changes
        .iter()
        .enumerate()
        .map(|(i, c)| JFile {
            file: c.file.clone(),
            backup: format!("{i}.orig"),
            written: format!("{i}.new"),
            orig_sha256: sha256_hex(&c.orig),
            new_sha256: sha256_hex(&c.new),
            uid: c.meta.uid,
            gid: c.meta.gid,
            mode: c.meta.mode,
        })
        .collect();
    for c in &changes {
        rep.set_file(&c.file, FileState::Planned, None);
    }
    let actions: Vec<Action> = entry.plans.iter().flat_map(|p| p.actions.clone()).collect();
    if changes.is_empty() && !actions.is_empty() {
        return run_actions_only(cfg, entry, &actions, opts, rep);
    }
    if changes.is_empty() {
        // Nothing to write: no rewrite, no reload. Recorded as a no-op.
        entry.state = JState::Applied;
        entry.error = Some("no-op: the edits change nothing".into());
        if let Err(e) = journal::save(cfg, &entry) {
            return rep.fail(Outcome::Failed, format!("journal: {e}"));
        }
        rep.outcome = Outcome::Ok;
        return rep;
    }

    // 2. Journal the intent before touching anything.
    entry.state = JState::Intent;
    if let Err(e) = journal::save(cfg, &entry) {
        return rep.fail(Outcome::Failed, format!("journal: {e}"));
    }
    fault(Some(opts), "after_intent");

    // 3. Back up originals (and the new text, for undo and diffs).
    let bdir = journal::backup_dir(cfg, &entry.id);
    let backed = fsx::ensure_private_dir(&bdir).and_then(|_| {
        for (c, f) in changes.iter().zip(&entry.files) {
            fsx::write_private(&bdir.join(&f.backup), &c.orig)?;
            fsx::write_private(&bdir.join(&f.written), &c.new)?;
        }
        Ok(())
    });
    let step = |s: &mut ApplyReport, e: &mut JournalEntry, st: JState| -> Result<(), String> {
        e.state = st;
        e.steps = s.steps.clone();
        journal::save(cfg, e)
    };
    if let Err(e) = backed.and_then(|_| step(&mut rep, &mut entry, JState::BackedUp)) {
        return rollback_report(cfg, entry, Some(opts), rep, format!("backup: {e}"));
    }
    fault(Some(opts), "after_backup");

    // 4. Check again under the lock just before writing: a writer that does
    // not take our lock may have changed the file since we read it.
    for (c, f) in changes.iter().zip(&entry.files) {
        let now = c.dir.read().map(|(b, _)| sha256_hex(&b));
        if now.as_deref() != Ok(f.orig_sha256.as_str()) {
            let why = match now {
                Err(e) => e,
                Ok(_) => format!("{}: changed while the repair was prepared", c.file),
            };
            return rollback_report(cfg, entry, Some(opts), rep, why);
        }
    }

    // 5. Write atomically.
    for (i, c) in changes.iter().enumerate() {
        if let Err(e) = c.dir.replace(&c.new, c.meta) {
            return rollback_report(cfg, entry, Some(opts), rep, e);
        }
        rep.set_file(&c.file, FileState::Applied, None);
        if i == 0 {
            fault(Some(opts), "mid_write");
        }
    }
    if let Err(e) = step(&mut rep, &mut entry, JState::Written) {
        return rollback_report(cfg, entry, Some(opts), rep, format!("journal: {e}"));
    }
    fault(Some(opts), "after_write");

    // 6. DA rewrite.
    if let Err(e) = da::trigger_rewrite(cfg, &entry.rewrite_users, &mut rep.steps)
        .and_then(|_| step(&mut rep, &mut entry, JState::Rewritten))
    {
        return rollback_report(cfg, entry, Some(opts), rep, e);
    }
    fault(Some(opts), "after_rewrite");

    // 7. Validate.
    if let Err(e) = run_for_targets(cfg, &entry.targets, true, &mut rep.steps)
        .and_then(|_| step(&mut rep, &mut entry, JState::Validated))
    {
        return rollback_report(cfg, entry, Some(opts), rep, e);
    }
    fault(Some(opts), "after_validate");

    // 8. Reload.
    if let Err(e) = run_for_targets(cfg, &entry.targets, false, &mut rep.steps)
        .and_then(|_| step(&mut rep, &mut entry, JState::Reloaded))
    {
        return rollback_report(cfg, entry, Some(opts), rep, e);
    }
    fault(Some(opts), "after_reload");

    // 8b. Actions (restarts) once the new config is live; not undoable.
    for a in &actions {
        let s = run_action(cfg, a);
        let (ok, msg) = (s.ok, s.summary());
        rep.steps.push(s);
        if !ok {
            return rollback_report(cfg, entry, Some(opts), rep, msg);
        }
    }

    // 9. Verify.
    if let Some(v) = opts.verify {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v(cfg)))
            .unwrap_or_else(|_| Err("verify panicked".into()));
        match r {
            Ok(()) => rep.steps.push(StepReport::note("verify", true, "")),
            Err(e) => {
                let s = StepReport::note("verify", false, e);
                let msg = s.summary();
                rep.steps.push(s);
                return rollback_report(cfg, entry, Some(opts), rep, msg);
            }
        }
    }
    if let Err(e) = step(&mut rep, &mut entry, JState::Verified) {
        return rollback_report(cfg, entry, Some(opts), rep, format!("journal: {e}"));
    }
    fault(Some(opts), "after_verify");

    if let Err(e) = step(&mut rep, &mut entry, JState::Applied) {
        // The files are verified and in place; only the record failed.
        // Recovery will complete a `verified` entry.
        rep.error = Some(format!("journal: {e}"));
    }
    journal::prune(cfg, cfg.apply.keep_repairs.max(1));
    rep.outcome = Outcome::Ok;
    rep
}

/// A repair that only runs actions: journal the intent, run them, verify.
/// Nothing to roll back, so a failure is `failed`, never `rolled_back`.
fn run_actions_only(
    cfg: &Config,
    mut entry: JournalEntry,
    actions: &[Action],
    opts: &ApplyOptions,
    mut rep: ApplyReport,
) -> ApplyReport {
    entry.state = JState::Intent;
    if let Err(e) = journal::save(cfg, &entry) {
        return rep.fail(Outcome::Failed, format!("journal: {e}"));
    }
    let mut err = None;
    for a in actions {
        let s = run_action(cfg, a);
        if !s.ok && err.is_none() {
            err = Some(s.summary());
        }
        rep.steps.push(s);
    }
    if err.is_none() {
        if let Some(v) = opts.verify {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v(cfg)))
                .unwrap_or_else(|_| Err("verify panicked".into()));
            let s = match r {
                Ok(()) => StepReport::note("verify", true, ""),
                Err(e) => StepReport::note("verify", false, e),
            };
            if !s.ok {
                err = Some(s.summary());
            }
            rep.steps.push(s);
        }
    }
    entry.steps = rep.steps.clone();
    entry.state = if err.is_some() {
        JState::Failed
    } else {
        JState::Applied
    };
    entry.error = err.clone();
    let saved = journal::save(cfg, &entry);
    journal::prune(cfg, cfg.apply.keep_repairs.max(1));
    rep.outcome = if err.is_some() {
        Outcome::Failed
    } else {
        Outcome::Ok
    };
    rep.error = match (err, saved) {
        (Some(e), _) => Some(e),
        (None, Err(e)) => Some(format!("journal: {e}")),
        (None, Ok(())) => None,
    };
    rep
}

/// Run the validate (`test`) or reload commands of every target.
fn run_for_targets(
    cfg: &Config,
    targets: &[Target],
    test: bool,
    steps: &mut Vec<StepReport>,
) -> Result<(), String> {
    let name = if test { "validate" } else { "reload" };
    let timeout = Duration::from_secs(cfg.commands.timeout_secs.max(1));
    for t in targets {
        let which = match (t, test) {
            (Target::Nginx, true) => Which::NginxTest,
            (Target::Nginx, false) => Which::NginxReload,
            (Target::Apache, true) => Which::ApacheTest,
            (Target::Apache, false) => Which::ApacheReload,
        };
        let Some(line) = commands::resolve(cfg, which) else {
            let why = if cfg.is_live_root() {
                "off (empty in the config)"
            } else {
                "off: the root is not / and no command is configured"
            };
            steps.push(StepReport::skipped(name, format!("{t:?}: {why}")));
            continue;
        };
        let s = match commands::split(&line) {
            Ok(argv) => commands::run(name, &argv, timeout),
            Err(e) => StepReport::note(name, false, e),
        };
        let ok = s.ok;
        let msg = s.summary();
        steps.push(s);
        if !ok {
            return Err(msg);
        }
    }
    Ok(())
}

fn rollback_report(
    cfg: &Config,
    mut entry: JournalEntry,
    opts: Option<&ApplyOptions>,
    mut rep: ApplyReport,
    why: String,
) -> ApplyReport {
    entry.error = Some(why.clone());
    let restored = rollback(cfg, &mut entry, opts, &mut rep);
    rep.outcome = if entry.state == JState::Failed {
        Outcome::Failed
    } else {
        Outcome::RolledBack
    };
    rep.error = Some(match restored {
        Ok(()) => why,
        Err(e) => format!("{why}; rollback: {e}"),
    });
    rep
}

/// Restore every file of `entry` that holds the new text from its backup
/// (atomically, journalled owner and mode), then rewrite + validate +
/// reload again (best effort) if anything had been written. Files holding
/// neither text (changed by someone else) are left alone and reported.
fn rollback(
    cfg: &Config,
    entry: &mut JournalEntry,
    opts: Option<&ApplyOptions>,
    rep: &mut ApplyReport,
) -> Result<(), String> {
    let bdir = journal::backup_dir(cfg, &entry.id);
    let mut errs = Vec::new();
    let mut restored = 0usize;
    for f in entry.files.iter().rev() {
        let r = (|| -> Result<FileState, String> {
            let dir = DirEntry::open(&cfg.host(&f.file))?;
            for t in dir.remove_stale_temps() {
                rep.steps
                    .push(StepReport::note("cleanup", true, format!("removed {t}")));
            }
            let (cur, _) = dir.read()?;
            let h = sha256_hex(&cur);
            if h == f.orig_sha256 {
                return Ok(FileState::Unchanged);
            }
            if h != f.new_sha256 {
                return Err(format!(
                    "{}: holds neither the original nor our text (changed by someone else): left as is",
                    f.file
                ));
            }
            let orig =
                std::fs::read(bdir.join(&f.backup)).map_err(|e| format!("backup of {}: {e}", f.file))?;
            if sha256_hex(&orig) != f.orig_sha256 {
                return Err(format!("backup of {}: hash mismatch, not restored", f.file));
            }
            let meta = Meta {
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            };
            dir.replace(&orig, meta)?;
            Ok(FileState::RolledBack)
        })();
        match r {
            Ok(st) => {
                if st == FileState::RolledBack {
                    restored += 1;
                    rep.steps.push(StepReport::note(
                        "restore",
                        true,
                        format!("{}: original restored", f.file),
                    ));
                    fault(opts, "mid_rollback");
                }
                rep.set_file(&f.file, st, None);
            }
            Err(e) => {
                rep.steps.push(StepReport::note("restore", false, e.clone()));
                rep.set_file(&f.file, FileState::Applied, Some(e.clone()));
                errs.push(e);
            }
        }
    }
    // Regenerate and reload from the restored text if the new text could
    // have been seen by the rewrite or the web server.
    if restored > 0 || entry.state >= JState::Written {
        let _ = da::trigger_rewrite(cfg, &entry.rewrite_users, &mut rep.steps);
        if run_for_targets(cfg, &entry.targets, true, &mut rep.steps).is_ok() {
            let _ = run_for_targets(cfg, &entry.targets, false, &mut rep.steps);
        } else {
            rep.steps.push(StepReport::skipped(
                "reload",
                "not reloaded after rollback: validation of the restored config failed",
            ));
        }
    }
    entry.state = if errs.is_empty() {
        JState::RolledBack
    } else {
        JState::Failed
    };
    if !errs.is_empty() {
        let prev = entry.error.take().unwrap_or_default();
        entry.error = Some(format!("{prev}; rollback: {}", errs.join("; ")));
    }
    entry.steps = rep.steps.clone();
    if let Err(e) = journal::save(cfg, entry) {
        errs.push(format!("journal: {e}"));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Finish interrupted repairs; runs (under the lock) at the start of every
/// apply and undo. A `verified` entry only lacked its final record: it is
/// completed. Any other unfinished entry is rolled back: files holding the
/// new text (by hash) get their backup back, files still original are left.
fn recover_locked(cfg: &Config) -> Vec<String> {
    let (entries, mut msgs) = journal::list(cfg);
    for mut e in entries.into_iter().filter(|e| !e.state.is_terminal()) {
        let from = e.state;
        if from == JState::Verified {
            e.state = JState::Applied;
            match journal::save(cfg, &e) {
                Ok(()) => msgs.push(format!(
                    "repair {}: completed (it was verified before the crash)",
                    e.id
                )),
                Err(err) => msgs.push(format!("repair {}: cannot complete: {err}", e.id)),
            }
            continue;
        }
        let mut rep = ApplyReport::new();
        let prev = e.error.take();
        e.error = Some(format!(
            "interrupted at state {from:?}; rolled back by recovery{}",
            prev.map(|p| format!(" ({p})")).unwrap_or_default()
        ));
        let r = rollback(cfg, &mut e, None, &mut rep);
        let files: Vec<String> = rep
            .files
            .iter()
            .map(|f| format!("{} {:?}", f.file, f.state))
            .collect();
        msgs.push(match r {
            Ok(()) => format!(
                "repair {}: interrupted at {from:?}, rolled back [{}]",
                e.id,
                files.join(", ")
            ),
            Err(err) => format!(
                "repair {}: interrupted at {from:?}, rollback incomplete: {err}",
                e.id
            ),
        });
    }
    msgs
}

/// Complete or roll back interrupted repairs (takes the lock).
pub fn recover(cfg: &Config) -> Vec<String> {
    match lock(cfg) {
        Ok(_l) => recover_locked(cfg),
        Err(e) => vec![e],
    }
}

/// Every journalled repair, oldest first.
pub fn history(cfg: &Config) -> Vec<JournalEntry> {
    journal::list(cfg).0
}

/// Revert an applied repair: only when every file still holds exactly the
/// bytes the repair wrote; otherwise refuse and show the difference.
/// Journalled as a repair of its own (`kind: undo`).
pub fn undo(cfg: &Config, repair_id: &str, opts: &ApplyOptions) -> ApplyReport {
    let mut rep = ApplyReport::new();
    let _lock = match lock(cfg) {
        Ok(l) => l,
        Err(e) => return rep.fail(Outcome::Failed, e),
    };
    rep.recovered = recover_locked(cfg);
    let target = match journal::load(cfg, repair_id) {
        Ok(t) => t,
        Err(e) => return rep.fail(Outcome::Refused, e),
    };
    if !target.undoable && target.files.is_empty() {
        let what: Vec<String> = target
            .plans
            .iter()
            .flat_map(|p| p.actions.iter().map(Action::describe))
            .collect();
        return rep.fail(
            Outcome::Refused,
            format!(
                "repair {repair_id} only ran actions that cannot be undone ({}) and changed no file",
                what.join(", ")
            ),
        );
    }
    if target.state != JState::Applied {
        return rep.fail(
            Outcome::Refused,
            format!(
                "repair {repair_id} is {:?}, not applied: nothing to undo",
                target.state
            ),
        );
    }
    rep.repair_id = journal::new_id();
    let bdir = journal::backup_dir(cfg, repair_id);
    let mut changes = Vec::new();
    let mut errs = Vec::new();
    let mut diffs = String::new();
    for f in &target.files {
        rep.set_file(&f.file, FileState::Planned, None);
        let r = (|| -> Result<Change, String> {
            let dir = DirEntry::open(&cfg.host(&f.file))?;
            let (cur, meta) = dir.read()?;
            if sha256_hex(&cur) != f.new_sha256 {
                match std::fs::read(bdir.join(&f.written)) {
                    Ok(expected) => diffs.push_str(&unified(&f.file, &expected, &cur)),
                    Err(e) => diffs.push_str(&format!("# {}: no copy of the repair's text: {e}\n", f.file)),
                }
                return Err(format!("{}: changed since repair {repair_id}, refused", f.file));
            }
            let orig = std::fs::read(bdir.join(&f.backup))
                .map_err(|e| format!("{}: backup of repair {repair_id} gone (pruned?): {e}", f.file))?;
            if sha256_hex(&orig) != f.orig_sha256 {
                return Err(format!("{}: backup hash mismatch, refused", f.file));
            }
            Ok(Change {
                file: f.file.clone(),
                dir,
                orig: cur,
                new: orig,
                meta,
            })
        })();
        match r {
            Ok(c) => changes.push(c),
            Err(e) => errs.push(e),
        }
    }
    let mut entry = JournalEntry {
        id: rep.repair_id.clone(),
        kind: Kind::Undo,
        undoes: Some(repair_id.to_string()),
        created_unix: journal::now_unix(),
        pid: std::process::id(),
        state: JState::Intent,
        plans: Vec::new(),
        files: Vec::new(),
        rewrite_users: target.rewrite_users.clone(),
        targets: target.targets.clone(),
        steps: Vec::new(),
        error: None,
        undoable: true,
    };
    if !errs.is_empty() {
        let err = errs.join("; ");
        entry.state = JState::Refused;
        entry.error = Some(err.clone());
        let _ = journal::save(cfg, &entry);
        for f in rep.files.iter_mut() {
            f.state = FileState::Unchanged;
        }
        if !diffs.is_empty() {
            rep.diff = Some(diffs);
        }
        return rep.fail(Outcome::Refused, err);
    }
    run_txn(cfg, entry, changes, opts, rep)
}

/// Journal encoding of byte strings: text when UTF-8, else `{"hex": …}`.
mod bytes_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Hex { hex: String },
    }

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => Repr::Text(t.to_string()).serialize(s),
            Err(_) => Repr::Hex {
                hex: b.iter().map(|x| format!("{x:02x}")).collect(),
            }
            .serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(t.into_bytes()),
            Repr::Hex { hex } => {
                if hex.len() % 2 != 0 {
                    return Err(serde::de::Error::custom("odd hex length"));
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(serde::de::Error::custom))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(start: usize, end: usize, old: &[u8], new: &[u8]) -> Edit {
        Edit {
            file: "/f".into(),
            start,
            end,
            old: old.to_vec(),
            new: new.to_vec(),
        }
    }

    #[test]
    fn splice_checks_old_bytes_and_overlap() {
        let src = b"abcdef";
        assert_eq!(
            splice(src, &[&e(4, 6, b"ef", b"XY"), &e(0, 1, b"a", b"")]).unwrap(),
            b"bcdXY"
        );
        assert!(splice(src, &[&e(0, 2, b"zz", b"")])
            .unwrap_err()
            .contains("changed"));
        assert!(splice(src, &[&e(0, 3, b"abc", b""), &e(2, 4, b"cd", b"")])
            .unwrap_err()
            .contains("overlap"));
        assert!(splice(src, &[&e(2, 2, b"", b"1"), &e(2, 2, b"", b"2")]).is_err());
        assert!(splice(src, &[&e(5, 9, b"f", b"")]).is_err());
        // Adjacent spans are fine.
        assert_eq!(
            splice(src, &[&e(0, 2, b"ab", b"1"), &e(2, 4, b"cd", b"2")]).unwrap(),
            b"12ef"
        );
    }

    #[test]
    fn paths_are_normalised_so_one_file_is_one_group() {
        assert_eq!(normalize("/a//./b/"), "/a/b");
        let mk = |f: &str| Plan {
            finding: String::new(),
            safety: Safety::Safe,
            edits: vec![Edit {
                file: f.into(),
                ..e(0, 1, b"a", b"b")
            }],
            rewrite_users: vec![],
            actions: vec![],
            target: Target::Nginx,
            advice: None,
        };
        assert_eq!(by_file(&[mk("/x/y"), mk("/x//./y")]).len(), 1);
    }

    #[test]
    fn edit_bytes_round_trip_through_json() {
        let ed = e(0, 1, b"caf\xc3\xa9", b"\xff\x00|T|");
        let j = serde_json::to_string(&ed).unwrap();
        assert!(j.contains("\"hex\""));
        assert_eq!(serde_json::from_str::<Edit>(&j).unwrap(), ed);
    }
}
