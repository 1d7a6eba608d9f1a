//! Checks: pure functions from the [`Server`](crate::model::Server) model to
//! findings. No IO here. Each check lives in its own file with its
//! documentation (What / Why / Example / Fix / Fix safety) and fixtures.

pub mod socket_drift;

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
    /// Every domain this text breaks (a server-wide layer breaks many).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub affected_domains: Vec<String>,
    /// Byte span of `text` in `file` (for repairs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<(usize, usize)>,
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

/// Every check, in the order an expert looks.
pub const DOCS: &[&CheckDoc] = &[&socket_drift::DOC, &UNKNOWN_DOC];

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
}

pub fn analyse(server: &Server) -> Analysis {
    let drift = socket_drift::run(server);
    let mut findings = drift.findings;
    for u in &server.unknowns {
        let mut f = Finding::new("unknown", Severity::Unknown, u.reason.clone());
        f.user = u.user.clone();
        f.domain = u.domain.clone();
        f.file = Some(u.file.clone());
        f.line = u.line;
        findings.push(f);
    }
    Analysis {
        findings,
        domains: drift.domains,
    }
}

/// `ok|warning|critical|unknown`: a definite problem outranks an unknown.
pub fn verdict(findings: &[Finding]) -> &'static str {
    let worst = findings
        .iter()
        .map(|f| f.severity)
        .filter(|s| *s != Severity::Info)
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
