//! Checks: pure functions from the [`Server`](crate::model::Server) model to
//! findings. No IO here. Each check lives in its own file with its
//! documentation (What / Why / Example / Fix / Fix safety) and fixtures.

pub mod apache_upstream;
pub mod disk_full;
pub mod fastcgi_timeout;
pub mod fpm_down;
pub mod log_triage;
pub mod loopback_banned;
pub mod mysql_stall;
pub mod oom_kill;
pub mod pool_exhausted;
pub mod socket_drift;
pub mod socket_permission;
pub mod xdebug;

use crate::model::Server;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Unknown,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Unknown => "unknown",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A place in a config file quoted as evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub file: String,
    pub line: u32,
    pub text: String,
}

/// One finding. Field names are the JSON contract (`schema: 1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    pub user: Option<String>,
    pub domain: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub text: Option<String>,
    pub layer: Option<&'static str>,
    pub socket: Option<String>,
    pub socket_state: Option<&'static str>,
    pub expected_socket: Option<String>,
    pub message: String,
    /// What the probe saw (errno text, mode/owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_detail: Option<String>,
    /// Copies of the same text in files DA generates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generated_copies: Vec<Evidence>,
    /// A log line quoted as evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_line: Option<String>,
    /// How many times the evidence was seen in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// HTTP statuses the failures produced (from the access log), e.g. {"502": 12}.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub statuses: std::collections::BTreeMap<u16, usize>,
    /// Evidence from a secondary source (logs, kernel journal): its
    /// `unknown` never overrides a definite result in the verdict.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub secondary: bool,
    /// The check that explains this evidence (log-triage links to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained_by: Option<&'static str>,
    /// Every domain this text breaks (a server-wide layer breaks many).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected_domains: Vec<String>,
    /// Byte span of `text` in `file` (for repairs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<(usize, usize)>,
    /// Admin-only detail (a query's text): faces show it to admins only,
    /// see [`strip_private`]. Never repeated in `message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private: Option<String>,
    /// The MySQL threads a `mysql-stall` finding is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlThreads>,
    /// The ban a `loopback-banned` finding is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban: Option<BanRef>,
}

/// MySQL threads of a finding: `thread` is the one a repair would kill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MysqlThreads {
    pub thread: u64,
    pub db_user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    pub command: String,
    /// Seconds the thread has been in its state (TIME), or waited for the lock.
    pub seconds: u64,
    /// Threads waiting for a lock `thread` holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocking: Vec<u64>,
    /// The thread holding the lock `thread` waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<u64>,
}

/// A ban: which list, which address, which jail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BanRef {
    pub family: crate::evidence::firewall::Family,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jail: Option<String>,
    pub temporary: bool,
}

/// Removes admin-only details (query texts) for a non-admin caller.
pub fn strip_private(findings: &mut [Finding]) {
    for f in findings {
        f.private = None;
    }
}

impl Finding {
    pub fn new(check: &'static str, severity: Severity, message: String) -> Finding {
        Finding {
            check,
            severity,
            user: None,
            domain: None,
            file: None,
            line: None,
            text: None,
            layer: None,
            socket: None,
            socket_state: None,
            expected_socket: None,
            message,
            socket_detail: None,
            generated_copies: vec![],
            affected_domains: vec![],
            span: None,
            log_line: None,
            count: None,
            first_seen: None,
            last_seen: None,
            statuses: Default::default(),
            explained_by: None,
            secondary: false,
            private: None,
            mysql: None,
            ban: None,
        }
    }
}

/// Documentation of a check, shown by `fpm-doctor explain <id>`.
pub struct CheckDoc {
    pub id: &'static str,
    pub title: &'static str,
    pub what: &'static str,
    pub why: &'static str,
    pub example: &'static str,
    pub fix: &'static str,
    pub fix_safety: &'static str,
}

/// What every check may look at besides the model: results computed once.
pub struct Context<'a> {
    pub drift: &'a socket_drift::Output,
}

/// A model a check is tested on: it must (`triggers`) or must not produce a
/// finding of at least warning severity from that check.
pub struct Fixture {
    pub name: &'static str,
    pub server: Server,
    pub triggers: bool,
}

/// One check: its documentation, its pure function, its fixtures.
pub struct Check {
    pub doc: &'static CheckDoc,
    pub run: fn(&Server, &Context) -> CheckOutput,
    /// At least one fixture that triggers and one look-alike that must not
    /// (enforced by a test over the registry).
    pub fixtures: fn() -> Vec<Fixture>,
}

/// Every check, in the order an expert looks.
pub const REGISTRY: &[Check] = &[
    Check {
        doc: &log_triage::DOC,
        run: log_triage::check,
        fixtures: log_triage::fixtures,
    },
    Check {
        doc: &fpm_down::DOC,
        run: fpm_down::check,
        fixtures: fpm_down::fixtures,
    },
    Check {
        doc: &socket_drift::DOC,
        run: socket_drift::check,
        fixtures: socket_drift::fixtures,
    },
    Check {
        doc: &socket_permission::DOC,
        run: socket_permission::check,
        fixtures: socket_permission::fixtures,
    },
    Check {
        doc: &pool_exhausted::DOC,
        run: pool_exhausted::check,
        fixtures: pool_exhausted::fixtures,
    },
    Check {
        doc: &fastcgi_timeout::DOC,
        run: fastcgi_timeout::check,
        fixtures: fastcgi_timeout::fixtures,
    },
    Check {
        doc: &oom_kill::DOC,
        run: oom_kill::check,
        fixtures: oom_kill::fixtures,
    },
    Check {
        doc: &disk_full::DOC,
        run: disk_full::check,
        fixtures: disk_full::fixtures,
    },
    Check {
        doc: &xdebug::DOC,
        run: xdebug::check,
        fixtures: xdebug::fixtures,
    },
    Check {
        doc: &apache_upstream::DOC,
        run: apache_upstream::check,
        fixtures: apache_upstream::fixtures,
    },
    Check {
        doc: &loopback_banned::DOC,
        run: loopback_banned::check,
        fixtures: loopback_banned::fixtures,
    },
    Check {
        doc: &mysql_stall::DOC,
        run: mysql_stall::check,
        fixtures: mysql_stall::fixtures,
    },
];

/// Documentation of every check, plus `unknown`.
pub fn docs() -> Vec<&'static CheckDoc> {
    REGISTRY
        .iter()
        .map(|c| c.doc)
        .chain(std::iter::once(&UNKNOWN_DOC))
        .collect()
}

/// Refuses an id that names no check (`--check` on scan and repair).
pub fn validate_ids(ids: &[String]) -> Result<(), String> {
    let known = check_ids();
    match ids.iter().find(|c| !known.contains(&c.as_str())) {
        Some(bad) => Err(format!("no check named {bad} (known: {})", known.join(", "))),
        None => Ok(()),
    }
}

/// Ids a scan can be limited to with `--check`.
pub fn check_ids() -> Vec<&'static str> {
    REGISTRY.iter().map(|c| c.doc.id).collect()
}

/// The state of one check for the server (or the scope scanned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Ok,
    Finding,
    Unknown,
    NotApplicable,
}

/// What one check produced.
#[derive(Debug, Clone)]
pub struct CheckOutput {
    pub findings: Vec<Finding>,
    pub state: CheckState,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub id: &'static str,
    pub state: CheckState,
}

/// The most likely cause of the 502s: the check and the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct PrimaryCause {
    pub check: &'static str,
    pub domain: Option<String>,
    pub user: Option<String>,
    /// Why this one: how many real 502s it explains, or that it is the worst finding.
    pub reason: String,
    pub evidence: Finding,
}

/// The state a list of findings amounts to.
pub fn state_from(findings: &[Finding]) -> CheckState {
    if findings.iter().any(|f| f.severity >= Severity::Warning) {
        CheckState::Finding
    } else if findings.iter().any(|f| f.severity == Severity::Unknown) {
        CheckState::Unknown
    } else {
        CheckState::Ok
    }
}

/// Picks the cause behind the most real 502s in the logs, confirmed by the
/// check that explains it where possible; without logs, the worst finding.
fn primary_cause(findings: &[Finding]) -> Option<PrimaryCause> {
    let n502 = |f: &Finding| f.statuses.get(&502).copied().unwrap_or(0);
    let top = findings
        .iter()
        .filter(|f| f.check == log_triage::ID && n502(f) > 0)
        .max_by_key(|f| n502(f));
    if let Some(t) = top {
        let by = t.explained_by.unwrap_or(log_triage::ID);
        let confirmed = findings.iter().find(|f| {
            f.check == by
                && f.severity >= Severity::Warning
                && (f.domain == t.domain
                    || f.affected_domains.iter().any(|d| Some(d) == t.domain.as_ref())
                    || (f.socket.is_some() && f.socket == t.socket))
        });
        let reason = format!(
            "{} real 502(s) in the logs{}",
            n502(t),
            if confirmed.is_some() {
                format!(", confirmed by {by}")
            } else {
                format!(", pointing at {by} (not confirmed by a finding)")
            }
        );
        let mut evidence = confirmed.cloned().unwrap_or_else(|| t.clone());
        if evidence.log_line.is_none() {
            evidence.log_line = t.log_line.clone();
            evidence.count = t.count;
            evidence.last_seen = t.last_seen.clone();
        }
        return Some(PrimaryCause {
            check: by,
            domain: t.domain.clone(),
            user: t.user.clone(),
            reason,
            evidence,
        });
    }
    let worst = findings
        .iter()
        .filter(|f| f.check != "unknown" && f.severity >= Severity::Warning)
        .max_by_key(|f| f.severity)?;
    Some(PrimaryCause {
        check: worst.check,
        domain: worst.domain.clone(),
        user: worst.user.clone(),
        reason: "no 502 in the logs of the window; the most severe finding".into(),
        evidence: worst.clone(),
    })
}

pub const UNKNOWN_DOC: CheckDoc = CheckDoc {
    id: "unknown",
    title: "Evidence that could not be read",
    what: "A file or socket that the scan needed could not be read or parsed.",
    why: "A check that cannot see its evidence cannot call a domain healthy; silence would hide the cause of a 502.",
    example: "`cannot read /usr/local/directadmin/data/users/alice/nginx.conf: Permission denied`",
    fix: "Run the scan as root, or repair the file named in the finding (`nginx -t` shows parse errors).",
    fix_safety: "No automatic fix.",
};

/// Findings of every check plus the per-domain table.
pub struct Analysis {
    pub findings: Vec<Finding>,
    pub domains: Vec<socket_drift::DomainStatus>,
    pub checks: Vec<CheckStatus>,
    pub primary_cause: Option<PrimaryCause>,
}

pub fn analyse(server: &Server) -> Analysis {
    analyse_only(server, None)
}

/// Runs the checks (all, or the ids in `only`).
pub fn analyse_only(server: &Server, only: Option<&[String]>) -> Analysis {
    let wanted = |id: &str| only.is_none_or(|o| o.iter().any(|x| x == id));
    let drift = socket_drift::run(server);
    let ctx = Context { drift: &drift };
    let mut checks = Vec::new();
    let mut findings = Vec::new();
    for c in REGISTRY.iter().filter(|c| wanted(c.doc.id)) {
        let out = (c.run)(server, &ctx);
        checks.push(CheckStatus {
            id: c.doc.id,
            state: out.state,
        });
        findings.extend(out.findings);
    }
    for u in &server.unknowns {
        let mut f = Finding::new("unknown", Severity::Unknown, u.reason.clone());
        f.user = u.user.clone();
        f.domain = u.domain.clone();
        f.file = Some(u.file.clone());
        f.line = u.line;
        findings.push(f);
    }
    let primary_cause = primary_cause(&findings);
    Analysis {
        findings,
        domains: drift.domains,
        checks,
        primary_cause,
    }
}

/// `ok|warning|critical|unknown`: a definite problem outranks an unknown,
/// and an unknown from a secondary source (logs, kernel journal) counts not at all.
pub fn verdict(findings: &[Finding]) -> &'static str {
    let worst = findings
        .iter()
        .filter(|f| f.severity != Severity::Info && !(f.secondary && f.severity == Severity::Unknown))
        .map(|f| f.severity)
        .max();
    match worst {
        None => "ok",
        Some(Severity::Critical) => "critical",
        Some(Severity::Warning) => "warning",
        Some(_) => "unknown",
    }
}

/// Nagios-style exit code for a verdict.
pub fn exit_code(verdict: &str) -> i32 {
    match verdict {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    /// gixy's rule: a check without a fixture that must trigger it and a
    /// look-alike that must not is not done.
    #[test]
    fn every_check_has_positive_and_negative_fixtures_that_hold() {
        for c in REGISTRY {
            let fx = (c.fixtures)();
            assert!(
                fx.iter().any(|f| f.triggers),
                "{} has no fixture that triggers it",
                c.doc.id
            );
            assert!(
                fx.iter().any(|f| !f.triggers),
                "{} has no look-alike fixture",
                c.doc.id
            );
            for f in fx {
                let a = analyse_only(&f.server, Some(&[c.doc.id.to_string()]));
                let hit = a
                    .findings
                    .iter()
                    .any(|x| x.check == c.doc.id && x.severity >= Severity::Warning);
                assert_eq!(
                    hit, f.triggers,
                    "{} fixture {:?}: {:#?}",
                    c.doc.id, f.name, a.findings
                );
            }
        }
    }

    #[test]
    fn every_check_is_documented_in_all_sections() {
        for d in docs() {
            for (name, text) in [
                ("what", d.what),
                ("why", d.why),
                ("example", d.example),
                ("fix", d.fix),
                ("fix safety", d.fix_safety),
            ] {
                assert!(!text.trim().is_empty(), "{} lacks {name}", d.id);
            }
        }
    }
}
