//! Human rendering of a scan report for a terminal (colour only on a TTY).
//! Values from configs and logs are stripped of control characters, so a
//! crafted file name or log line cannot drive the terminal.

use crate::checks::{Finding, Severity};
use crate::scan::Report;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Replaces control characters (ESC, CR, BEL, …) with `?`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// A diff keeps its newlines and tabs; every other control character goes.
pub fn sanitize_diff(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn sev(&self, s: Severity) -> String {
        match s {
            Severity::Critical => self.paint("1;31", "CRITICAL"),
            Severity::Warning => self.paint("1;33", "WARNING"),
            Severity::Unknown => self.paint("1;35", "UNKNOWN"),
            Severity::Info => self.paint("36", "INFO"),
        }
    }
}

fn finding(out: &mut String, st: &Style, f: &Finding, indent: &str) {
    let place = match (&f.file, f.line) {
        (Some(file), Some(l)) => format!("{}:{l}", sanitize(file)),
        (Some(file), None) => sanitize(file),
        _ => String::new(),
    };
    let layer = f.layer.map(|l| format!(" [{l}]")).unwrap_or_default();
    let _ = writeln!(out, "{indent}{} {}{layer} {place}", st.sev(f.severity), f.check);
    if let Some(t) = &f.text {
        let _ = writeln!(out, "{indent}    {}", st.paint("1", &sanitize(t.trim())));
    }
    if let (Some(sock), Some(state)) = (&f.socket, f.socket_state) {
        let detail = f
            .socket_detail
            .as_deref()
            .map(|d| format!(" ({})", sanitize(d)))
            .unwrap_or_default();
        let _ = writeln!(out, "{indent}    socket {}: {state}{detail}", sanitize(sock));
    }
    if let Some(e) = &f.expected_socket {
        let _ = writeln!(out, "{indent}    expected {}", sanitize(e));
    }
    let _ = writeln!(out, "{indent}    {}", sanitize(&f.message));
    // Faces strip `private` for non-admins (checks::strip_private); the CLI runs as root.
    if let Some(p) = &f.private {
        let _ = writeln!(out, "{indent}    query (admin only): {}", sanitize(p));
    }
    let how = if f.layer == Some("overlay") {
        "copied by CustomBuild to"
    } else {
        "inlined by DirectAdmin into"
    };
    for c in &f.generated_copies {
        let _ = writeln!(out, "{indent}    {how} {}:{}", sanitize(&c.file), c.line);
    }
    if f.affected_domains.len() > 1 {
        let shown: Vec<String> = f.affected_domains.iter().take(5).map(|d| sanitize(d)).collect();
        let more = f.affected_domains.len().saturating_sub(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{indent}    breaks {} domains: {}{more}",
            f.affected_domains.len(),
            shown.join(", ")
        );
    }
}

/// Renders the report grouped by user and domain; healthy domains are counted,
/// not listed, unless `verbose`.
pub fn human(r: &Report, color: bool, verbose: bool) -> String {
    let st = Style { on: color };
    let mut out = String::new();
    let count = |s: &str| r.domains.iter().filter(|d| d.status == s).count();
    let verdict = match r.verdict {
        "ok" => st.paint("1;32", "OK"),
        "warning" => st.sev(Severity::Warning),
        "critical" => st.sev(Severity::Critical),
        _ => st.sev(Severity::Unknown),
    };
    let _ = writeln!(
        out,
        "FPM Doctor: {verdict} — {} users, {} domains: {} ok, {} drift, {} unknown, {} not applicable{}",
        r.users,
        r.domains.len(),
        count("ok"),
        count("drift"),
        count("unknown"),
        count("not_applicable"),
        if r.probed { "" } else { " (sockets not probed)" }
    );
    let slots: Vec<String> = r
        .php
        .iter()
        .map(|s| {
            if s.release == "no" {
                format!("slot {}: no", s.slot)
            } else {
                format!("slot {}: {} {}", s.slot, sanitize(&s.release), sanitize(&s.mode))
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "webserver: {}   PHP {}",
        sanitize(r.webserver.as_deref().unwrap_or("?")),
        if slots.is_empty() {
            "unknown".to_string()
        } else {
            slots.join(", ")
        }
    );
    if !r.checks.is_empty() {
        let states: Vec<String> = r
            .checks
            .iter()
            .map(|c| {
                let st = match c.state {
                    crate::checks::CheckState::Ok => "ok",
                    crate::checks::CheckState::Finding => "FINDING",
                    crate::checks::CheckState::Unknown => "unknown",
                    crate::checks::CheckState::NotApplicable => "n/a",
                };
                format!("{} {st}", c.id)
            })
            .collect();
        let _ = writeln!(out, "checks: {}", states.join(", "));
    }
    if let Some(p) = &r.primary_cause {
        let _ = writeln!(
            out,
            "{} {}{} — {}",
            st.paint("1", "Most likely cause:"),
            p.check,
            p.domain
                .as_deref()
                .map(|d| format!(" on {}", sanitize(d)))
                .unwrap_or_default(),
            sanitize(&p.reason)
        );
        if let Some(l) = &p.evidence.log_line {
            let _ = writeln!(out, "  log: {}", sanitize(l));
        }
    }
    // Findings by user then domain.
    let mut by_user: BTreeMap<String, BTreeMap<String, Vec<&Finding>>> = BTreeMap::new();
    for f in &r.findings {
        by_user
            .entry(f.user.clone().unwrap_or_else(|| "(server)".into()))
            .or_default()
            .entry(f.domain.clone().unwrap_or_default())
            .or_default()
            .push(f);
    }
    let mut users: Vec<String> = r.domains.iter().map(|d| d.user.clone()).collect();
    users.extend(by_user.keys().cloned());
    users.sort();
    users.dedup();
    for u in users {
        let rows: Vec<_> = r.domains.iter().filter(|d| d.user == u).collect();
        let empty = BTreeMap::new();
        let fs = by_user.get(&u).unwrap_or(&empty);
        let bad: Vec<_> = rows
            .iter()
            .filter(|d| d.status != "ok" || fs.contains_key(&d.domain))
            .collect();
        if bad.is_empty() && fs.is_empty() && !verbose {
            continue;
        }
        let title = if u == "(server)" {
            "server-wide".to_string()
        } else {
            sanitize(&u)
        };
        let _ = writeln!(out, "\n{}", st.paint("1", &title));
        for d in &rows {
            let listed = bad.iter().any(|b| b.domain == d.domain);
            if !listed && !verbose {
                continue;
            }
            let status = match d.status {
                "ok" => st.paint("32", "ok"),
                "drift" => st.paint("1;31", "DRIFT"),
                "unknown" => st.paint("1;35", "UNKNOWN"),
                other => other.to_string(),
            };
            let _ = writeln!(
                out,
                "  {}  {status}  (PHP slot {}{}, expects {})",
                sanitize(&d.domain),
                d.php_slot,
                d.php_release
                    .as_deref()
                    .map(|r| format!(" = {}", sanitize(r)))
                    .unwrap_or_default(),
                sanitize(d.expected_socket.as_deref().unwrap_or("no FPM socket"))
            );
            for f in fs.get(&d.domain).into_iter().flatten() {
                finding(&mut out, &st, f, "    ");
            }
            for f in r
                .findings
                .iter()
                .filter(|f| f.domain.is_none() && f.affected_domains.contains(&d.domain))
            {
                let _ = writeln!(
                    out,
                    "    {} {} in a server-wide layer: {}:{} (see above)",
                    st.sev(f.severity),
                    f.check,
                    sanitize(f.file.as_deref().unwrap_or("")),
                    f.line.unwrap_or(0)
                );
            }
        }
        for (dom, list) in fs {
            if rows.iter().any(|d| &d.domain == dom) {
                continue;
            }
            if !dom.is_empty() {
                let _ = writeln!(out, "  {}", sanitize(dom));
            }
            for f in list {
                finding(&mut out, &st, f, "    ");
            }
        }
        let ok = rows
            .iter()
            .filter(|d| d.status == "ok" && !fs.contains_key(&d.domain))
            .count();
        if ok > 0 && !verbose {
            let _ = writeln!(out, "  … {ok} more domain(s) ok");
        }
    }
    out
}
