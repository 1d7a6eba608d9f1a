//! View models and askama templates (`templates/`). Everything from a log
//! or a config reaches the HTML through askama's autoescaping; nothing here
//! marks such a value `safe`.

use super::snapshot::{SFinding, SFpm, Snap, Status};
use crate::access::{Caller, Level};
use crate::apply::{ApplyReport, JournalEntry};
use crate::repair::Planned;
use askama::Template;

pub const CSS: &str = include_str!("../../images/style.css");

/// What every fragment shows around its content.
pub struct Base {
    pub level: &'static str,
    pub username: String,
    pub css: &'static str,
}

impl Base {
    pub fn new(level: Level, username: &str) -> Base {
        Base {
            level: level.as_str(),
            username: crate::report::sanitize(username),
            css: CSS,
        }
    }
}

fn render<T: Template>(t: &T) -> String {
    t.render().unwrap_or_else(|e| {
        format!(
            "<p class=\"fpmd-error\">template error: {}</p>",
            html_escape(&e.to_string())
        )
    })
}

/// For the one place that builds HTML by hand (a template's own failure).
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn human_age(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

/// One finding as shown in tables.
pub struct FindingView {
    pub severity: String,
    pub check: String,
    pub place: String,
    pub text: String,
    pub layer: String,
    pub socket: String,
    pub socket_state: String,
    pub expected: String,
    pub message: String,
    pub log_line: String,
    pub advice: String,
}

fn state_words(s: &str) -> &'static str {
    match s {
        "missing" => "does not exist",
        "not_socket" => "is not a socket",
        "refused" => "does not answer (nothing listens on it)",
        "permission_denied" => "may not be opened by the web server",
        "timeout" => "does not answer in time",
        "busy" => "is overloaded (every PHP worker busy)",
        "not_fastcgi" => "is not PHP-FPM",
        "listening" => "answers",
        _ => "was not checked",
    }
}

/// Plain-language advice for a finding.
fn advice(f: &SFinding) -> String {
    let d = f.domain.as_deref().unwrap_or("this site");
    match (f.check.as_str(), &f.socket, &f.socket_state) {
        ("socket-drift", Some(sock), Some(st)) => {
            let mut a = format!(
                "PHP requests for {d} are sent to {sock}, which {}.",
                state_words(st)
            );
            if let Some(e) = &f.expected_socket {
                a.push_str(&format!(" They should go to {e}."));
            }
            match f.layer.as_deref() {
                Some("custom") => a.push_str(
                    " The line is in this domain's custom NGINX/Apache configuration; the repair changes only that line and keeps a backup you can undo.",
                ),
                Some("panel") => a.push_str(" The domain's PHP version setting names a PHP version the server no longer runs; the repair selects a running one."),
                Some("template") | Some("overlay") | Some("global") => a.push_str(
                    " The line is in a server-wide file that serves many accounts: only the server administrator can fix it.",
                ),
                Some("generated") => a.push_str(" DirectAdmin generated this file; rewriting the configuration fixes it."),
                _ => {}
            }
            a
        }
        ("log-triage", _, _) => format!(
            "The web server's error log shows {} failed PHP request(s) for {d}{}.",
            f.count.map(|c| c.to_string()).unwrap_or_else(|| "some".into()),
            f.socket
                .as_deref()
                .map(|s| format!(" to {s}"))
                .unwrap_or_default()
        ),
        _ => f.message.clone(),
    }
}

fn finding_view(f: &SFinding) -> FindingView {
    let place = match (&f.file, f.line) {
        (Some(file), Some(l)) => format!("{file}:{l}"),
        (Some(file), None) => file.clone(),
        _ => String::new(),
    };
    FindingView {
        severity: f.severity.clone(),
        check: f.check.clone(),
        place,
        text: f.text.clone().unwrap_or_default().trim().to_string(),
        layer: f.layer.clone().unwrap_or_default(),
        socket: f.socket.clone().unwrap_or_default(),
        socket_state: f.socket_state.clone().unwrap_or_default(),
        expected: f.expected_socket.clone().unwrap_or_default(),
        message: f.message.clone(),
        log_line: f.log_line.clone().unwrap_or_default(),
        advice: advice(f),
    }
}

/// Findings that concern domain `d` (its own, or a shared layer breaking it).
fn findings_for<'a>(snap: &'a Snap, d: &str) -> Vec<&'a SFinding> {
    snap.findings
        .iter()
        .filter(|f| f.severity != "info")
        .filter(|f| f.domain.as_deref() == Some(d) || f.affected_domains.iter().any(|x| x == d))
        .collect()
}

pub struct Row {
    pub domain: String,
    /// The main domain to open (a subdomain entry links to its parent).
    pub link: String,
    pub user: String,
    pub php: String,
    pub status: String,
    pub expected: String,
    pub findings: Vec<FindingView>,
}

fn row(snap: &Snap, d: &super::snapshot::SDomain) -> Row {
    Row {
        domain: d.domain.clone(),
        link: d.parent.clone().unwrap_or_else(|| d.domain.clone()),
        user: d.user.clone(),
        php: d
            .php_release
            .clone()
            .unwrap_or_else(|| format!("slot {}", d.php_slot)),
        status: d.status.clone(),
        expected: d.expected_socket.clone().unwrap_or_default(),
        findings: findings_for(snap, &d.domain)
            .into_iter()
            .map(finding_view)
            .collect(),
    }
}

pub struct Counts {
    pub total: usize,
    pub ok: usize,
    pub drift: usize,
    pub unknown: usize,
    pub other: usize,
}

pub struct Cause {
    pub check: String,
    pub domain: String,
    pub reason: String,
    pub evidence: FindingView,
}

pub struct Hook {
    pub time: String,
    pub verdict: String,
    pub drifted: usize,
    pub repaired: String,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexT<'a> {
    b: &'a Base,
    admin: bool,
    has_snap: bool,
    running: bool,
    refresh: bool,
    age: String,
    scan_error: String,
    verdict: String,
    webserver: String,
    fpm: Vec<SFpm>,
    checks: Vec<super::snapshot::SCheck>,
    counts: Counts,
    cause: Option<Cause>,
    hook: Option<Hook>,
    server_wide: Vec<FindingView>,
    rows: Vec<Row>,
    page: usize,
    pages: usize,
    prev: Option<usize>,
    next: Option<usize>,
    csrf: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub fn index(
    b: &Base,
    caller: &Caller,
    snap: Option<(Snap, u64)>,
    status: &Status,
    last_hook: Option<serde_json::Value>,
    page: usize,
    size: usize,
    csrf: Option<String>,
) -> String {
    let has_snap = snap.is_some();
    let (snap, age) = snap.unwrap_or_default();
    let count = |s: &str| snap.domains.iter().filter(|d| d.status == s).count();
    let counts = Counts {
        total: snap.domains.len(),
        ok: count("ok"),
        drift: count("drift"),
        unknown: count("unknown"),
        other: snap.domains.len() - count("ok") - count("drift") - count("unknown"),
    };
    let mut affected: Vec<&super::snapshot::SDomain> = snap
        .domains
        .iter()
        .filter(|d| d.status == "drift" || d.status == "unknown")
        .collect();
    affected.sort_by_key(|d| (d.status != "drift", d.user.clone(), d.domain.clone()));
    let pages = affected.len().div_ceil(size).max(1);
    let page = page.min(pages);
    let rows = affected
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|d| row(&snap, d))
        .collect();
    let server_wide = snap
        .findings
        .iter()
        .filter(|f| f.user.is_none() && f.severity != "info")
        .map(finding_view)
        .collect();
    let cause = snap.primary_cause.as_ref().map(|c| Cause {
        check: c.check.clone(),
        domain: c.domain.clone().unwrap_or_default(),
        reason: c.reason.clone(),
        evidence: finding_view(&c.evidence),
    });
    let hook = last_hook.map(|v| Hook {
        time: v["time"].as_str().unwrap_or("?").to_string(),
        verdict: v["verdict"].as_str().unwrap_or("?").to_string(),
        drifted: v["drifted_domains"].as_array().map(|a| a.len()).unwrap_or(0),
        repaired: v["repaired"]["repair_id"].as_str().unwrap_or("").to_string(),
    });
    render(&IndexT {
        b,
        admin: caller.is_admin(),
        has_snap,
        running: status.running,
        refresh: status.running,
        age: if has_snap { human_age(age) } else { String::new() },
        scan_error: status.error.clone().unwrap_or_default(),
        verdict: snap.verdict.clone(),
        webserver: snap.webserver.clone().unwrap_or_else(|| "?".into()),
        fpm: snap.fpm.clone(),
        checks: snap.checks.clone(),
        counts,
        cause,
        hook,
        server_wide,
        rows,
        page,
        pages,
        prev: (page > 1).then(|| page - 1),
        next: (page < pages).then(|| page + 1),
        csrf,
    })
}

pub struct UserRow {
    pub domain: String,
    pub link: String,
    pub php: String,
    pub socket: String,
    pub live: String,
    pub status: String,
    pub findings: Vec<FindingView>,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserT<'a> {
    b: &'a Base,
    rows: Vec<UserRow>,
}

/// The socket the site uses now and its live state: a drifted site's
/// handler socket (from its finding), else the expected one.
fn live_state(snap: &Snap, d: &super::snapshot::SDomain) -> (String, String) {
    let expected = d.expected_socket.clone().unwrap_or_default();
    if !snap.probed {
        return (expected, "not checked".into());
    }
    match d.status.as_str() {
        "ok" => (expected, "answers".into()),
        _ => findings_for(snap, &d.domain)
            .iter()
            .find_map(|f| {
                Some((
                    f.socket.clone()?,
                    state_words(f.socket_state.as_deref()?).to_string(),
                ))
            })
            .unwrap_or((expected, "unknown".into())),
    }
}

pub fn user_index(b: &Base, snap: &Snap) -> String {
    let rows = snap
        .domains
        .iter()
        .map(|d| {
            let (socket, live) = live_state(snap, d);
            UserRow {
                domain: d.domain.clone(),
                link: d.parent.clone().unwrap_or_else(|| d.domain.clone()),
                php: d
                    .php_release
                    .clone()
                    .unwrap_or_else(|| format!("slot {}", d.php_slot)),
                socket,
                live,
                status: d.status.clone(),
                findings: findings_for(snap, &d.domain)
                    .into_iter()
                    .map(finding_view)
                    .collect(),
            }
        })
        .collect();
    render(&UserT { b, rows })
}

#[derive(Template)]
#[template(path = "domain.html")]
struct DomainT<'a> {
    b: &'a Base,
    domain: &'a str,
    user: &'a str,
    checks: Vec<super::snapshot::SCheck>,
    rows: Vec<Row>,
    basis: String,
    any_finding: bool,
}

/// Each check's state for one domain (and its subdomains): a finding about
/// it, an unknown, not applicable to the server, or ok.
fn domain_check_states(snap: &Snap, d: &str) -> Vec<super::snapshot::SCheck> {
    let about = |f: &super::snapshot::SFinding| {
        let hit = |x: &str| x == d || x.ends_with(&format!(".{d}"));
        f.domain.as_deref().is_some_and(hit) || f.affected_domains.iter().any(|x| hit(x))
    };
    snap.checks
        .iter()
        .map(|c| {
            let mine = snap.findings.iter().filter(|f| f.check == c.id && about(f));
            let state = if c.state == "not_applicable" {
                "not_applicable"
            } else if mine
                .clone()
                .any(|f| f.severity == "warning" || f.severity == "critical")
            {
                "finding"
            } else if c.state == "unknown" || mine.clone().any(|f| f.severity == "unknown") {
                "unknown"
            } else {
                "ok"
            };
            super::snapshot::SCheck {
                id: c.id.clone(),
                state: state.into(),
            }
        })
        .collect()
}

pub fn domain(b: &Base, d: &str, user: &str, snap: &Snap) -> String {
    let mine: Vec<&super::snapshot::SDomain> = snap
        .domains
        .iter()
        .filter(|x| x.domain == d || x.parent.as_deref() == Some(d))
        .collect();
    let rows: Vec<Row> = mine.iter().map(|x| row(snap, x)).collect();
    // Healthy is the domains' own verdict; old log lines stay listed as evidence.
    let any_finding = rows.is_empty()
        || rows
            .iter()
            .any(|r| r.status != "ok" && r.status != "not_applicable");
    render(&DomainT {
        b,
        domain: d,
        user,
        checks: domain_check_states(snap, d),
        basis: mine.first().map(|x| x.expected_basis.clone()).unwrap_or_default(),
        rows,
        any_finding,
    })
}

pub struct PlanView {
    pub id: String,
    pub safety: String,
    pub finding: String,
    pub advice: String,
    pub rewrite_users: String,
    pub allowed: bool,
    pub checked: bool,
}

pub struct DiffLine {
    pub class: &'static str,
    pub text: String,
}

#[derive(Template)]
#[template(path = "repair.html")]
struct RepairT<'a> {
    b: &'a Base,
    domain: &'a str,
    all: bool,
    plans: Vec<PlanView>,
    diff: Vec<DiffLine>,
    csrf: Option<String>,
    any_allowed: bool,
}

pub fn repair_preview(
    b: &Base,
    domain: Option<&str>,
    planned: &[Planned],
    allowed: &[bool],
    diff: &str,
    csrf: Option<String>,
) -> String {
    let plans: Vec<PlanView> = planned
        .iter()
        .zip(allowed)
        .map(|(p, &ok)| PlanView {
            id: p.id(),
            safety: format!("{:?}", p.plan.safety).to_lowercase(),
            finding: p.plan.finding.clone(),
            advice: p.plan.advice.clone().unwrap_or_default(),
            rewrite_users: p.plan.rewrite_users.join(", "),
            allowed: ok,
            // Pre-selected: every safe fix; a domain page also its confirm ones.
            checked: ok && (p.plan.safety == crate::apply::Safety::Safe || domain.is_some()),
        })
        .collect();
    let diff = crate::report::sanitize_diff(diff)
        .lines()
        .map(|l| DiffLine {
            class: if l.starts_with("+++") || l.starts_with("---") {
                "h"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else if l.starts_with("@@") {
                "h"
            } else {
                ""
            },
            text: l.to_string(),
        })
        .collect();
    let any_allowed = plans.iter().any(|p| p.allowed);
    render(&RepairT {
        b,
        domain: domain.unwrap_or(""),
        all: domain.is_none(),
        plans,
        diff,
        csrf,
        any_allowed,
    })
}

pub struct FileView {
    pub file: String,
    pub state: String,
    pub note: String,
}

#[derive(Template)]
#[template(path = "applied.html")]
struct AppliedT<'a> {
    b: &'a Base,
    id: String,
    outcome: String,
    ok: bool,
    files: Vec<FileView>,
    steps: Vec<String>,
    error: String,
    diff: String,
    back: &'a str,
}

pub fn applied(b: &Base, r: &ApplyReport, back: Option<&str>) -> String {
    let outcome = format!("{:?}", r.outcome);
    render(&AppliedT {
        b,
        id: r.repair_id.clone(),
        ok: r.outcome == crate::apply::Outcome::Ok,
        outcome,
        files: r
            .files
            .iter()
            .map(|f| FileView {
                file: f.file.clone(),
                state: format!("{:?}", f.state),
                note: f.note.clone().unwrap_or_default(),
            })
            .collect(),
        steps: r
            .steps
            .iter()
            .map(|s| {
                let state = if s.skipped {
                    "skipped"
                } else if s.ok {
                    "ok"
                } else {
                    "failed"
                };
                let mut line = format!("{}: {state}", s.step);
                if !s.command.is_empty() {
                    line.push_str(&format!(" — {}", shell_words::join(&s.command)));
                }
                if !s.note.is_empty() {
                    line.push_str(&format!(" — {}", s.note));
                }
                if !s.ok && !s.stderr_tail.trim().is_empty() {
                    line.push_str(&format!(" — {}", s.stderr_tail.trim()));
                }
                line
            })
            .collect(),
        error: r.error.clone().unwrap_or_default(),
        diff: r.diff.clone().unwrap_or_default(),
        back: back.unwrap_or(""),
    })
}

pub struct HistView {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub when: String,
    pub files: Vec<String>,
    pub findings: Vec<String>,
    pub undoes: String,
    pub can_undo: bool,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryT<'a> {
    b: &'a Base,
    entries: Vec<HistView>,
    csrf: Option<String>,
}

pub fn history(b: &Base, h: &[JournalEntry], csrf: Option<String>) -> String {
    use crate::apply::{JState, Kind};
    // An apply already undone by a later entry has nothing left to undo.
    let undone: Vec<&str> = h.iter().filter_map(|e| e.undoes.as_deref()).collect();
    let entries = h
        .iter()
        .map(|e| HistView {
            id: e.id.clone(),
            kind: format!("{:?}", e.kind).to_lowercase(),
            state: format!("{:?}", e.state),
            when: crate::hooks::rfc3339(e.created_unix),
            files: e.files.iter().map(|f| f.file.clone()).collect(),
            findings: e.plans.iter().map(|p| p.finding.clone()).collect(),
            undoes: e.undoes.clone().unwrap_or_default(),
            can_undo: e.kind == Kind::Apply && e.state == JState::Applied && !undone.contains(&e.id.as_str()),
        })
        .collect();
    render(&HistoryT { b, entries, csrf })
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessageT<'a> {
    b: &'a Base,
    status: u16,
    title: &'static str,
    message: &'a str,
}

pub fn message(b: &Base, status: u16, message: &str) -> String {
    let title = match status {
        400 => "Not understood",
        403 => "Not allowed",
        404 => "Not found",
        405 => "Not allowed",
        409 => "Changed meanwhile",
        _ => "Something went wrong",
    };
    render(&MessageT {
        b,
        status,
        title,
        message,
    })
}

#[derive(Template)]
#[template(path = "rescan.html")]
struct RescanT<'a> {
    b: &'a Base,
}

pub fn rescan_started(b: &Base) -> String {
    render(&RescanT { b })
}
