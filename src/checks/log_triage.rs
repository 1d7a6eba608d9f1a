//! `log-triage`: what the nginx error logs say about upstream failures in the
//! window, grouped by domain, upstream and kind, each group labelled with the
//! HTTP status it really produced and linked to the check that explains it.

use super::{CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::logread::{format_time, SourceState};
use crate::evidence::nginx_log::{status_of, Class, ErrorEvent};
use crate::model::Server;
use std::collections::BTreeMap;

pub const ID: &str = "log-triage";

/// A 502 this recent (seconds) means the site is failing now.
const RECENT_SECS: i64 = 15 * 60;

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "What the nginx error logs say about PHP upstream failures",
    what: "Reads the global and per-domain nginx error logs backwards over the window (following `.1`/`.gz` \
rotation, with a byte cap), classifies every upstream failure — errno 2, 111, 13, 11, 110, 104 or a premature \
close, \"Primary script unknown\" — and groups them by domain, upstream and kind with count, first and last \
seen. Each group is labelled with the HTTP status the access log shows for the same requests.",
    why: "The error log names the cause of each 502 in nginx's own words; an expert starts there. Only real \
502s feed the 502 verdict: errno 110 is a 504, \"Primary script unknown\" a 404.",
    example: "`connect() to unix:/usr/local/php82/sockets/alice.sock failed (2: No such file or directory)` × 41 \
on alice.test, 41 × 502 → explained by socket-drift.",
    fix: "Follow the linked check (socket-drift, fpm-down, socket-permission, pool-exhausted, fastcgi-timeout, \
oom-kill).",
    fix_safety: "No fix of its own: it points at the check that has one.",
};

/// The check that explains a class of failure on an upstream.
fn explained_by(
    server: &Server,
    drift: &[Finding],
    class: Class,
    upstream: Option<&str>,
    http: bool,
) -> Option<&'static str> {
    let sock = upstream.and_then(|u| u.strip_prefix("unix:"));
    // A dead socket that *is* the one the panel expects is not drift: its
    // PHP-FPM is down.
    let drifted = sock.is_some_and(|s| {
        drift.iter().any(|f| {
            f.check == super::socket_drift::ID
                && f.socket.as_deref() == Some(s)
                && f.expected_socket.as_deref() != Some(s)
        })
    });
    // An `http://` upstream is Apache behind nginx, not PHP-FPM.
    let apache = http || upstream.is_some_and(|u| is_proxy_target(server, u));
    match class {
        Class::Refused | Class::Timeout | Class::OtherConnect if apache => Some(super::apache_upstream::ID),
        Class::Missing | Class::Refused if drifted => Some(super::socket_drift::ID),
        Class::Missing | Class::Refused | Class::OtherConnect | Class::ConnectTimeout => Some("fpm-down"),
        Class::PermissionDenied => Some("socket-permission"),
        Class::BacklogFull => Some("pool-exhausted"),
        Class::Timeout => Some("fastcgi-timeout"),
        Class::Reset => Some("oom-kill"),
        Class::ScriptUnknown => None,
    }
}

/// Is `host:port` the `proxy_pass` target of some vhost?
fn is_proxy_target(server: &Server, upstream: &str) -> bool {
    server
        .users
        .iter()
        .flat_map(|u| u.domains.iter().flat_map(|d| d.vhosts.iter()))
        .any(|v| {
            v.proxy_targets
                .iter()
                .any(|p| crate::evidence::upstream::target_of(p).as_deref() == Some(upstream))
        })
}

struct Group<'a> {
    events: Vec<&'a ErrorEvent>,
    statuses: BTreeMap<u16, usize>,
}

fn endpoint_key(e: &crate::probe::Endpoint) -> String {
    match e {
        crate::probe::Endpoint::Unix(p) => format!("unix:{p}"),
        other => other.display(),
    }
}

/// Registry entry point.
pub fn check(server: &Server, ctx: &super::Context) -> CheckOutput {
    run(server, &ctx.drift.findings)
}

/// A server whose per-domain log shows `text` recently (fixture builder).
pub fn fixture_server(text: &str) -> Server {
    use crate::evidence::logread::{LogLine, Source};
    use crate::evidence::nginx_log::{parse_error, NginxLogs};
    let l = LogLine {
        file: "/var/log/nginx/domains/a.test.error.log".into(),
        offset: 0,
        text: text.into(),
    };
    let errors = parse_error(&l, Some("a.test"), 0).into_iter().collect();
    let mut s = Server::default();
    s.evidence.since = 0;
    s.evidence.now = crate::evidence::logread::unix_of(2026, 11, 24, 20, 15, 0);
    s.evidence.nginx = Some(NginxLogs {
        errors,
        access: vec![],
        sources: vec![Source {
            file: l.file.clone(),
            state: SourceState::Ok { lines: 1 },
        }],
        utc_offset: 0,
        hits: Default::default(),
    });
    s
}

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "errno 2 on a PHP socket",
            server: fixture_server("2026/11/24 20:10:44 [error] 9#9: *5 connect() to unix:/usr/local/php82/sockets/alice.sock failed (2: No such file or directory) while connecting to upstream, client: 1.2.3.4, server: a.test, request: \"GET /index.php HTTP/1.1\""),
            triggers: true,
        },
        super::Fixture {
            name: "a missing static file (also errno 2, not an upstream)",
            server: fixture_server("2026/11/24 20:10:44 [error] 9#9: *5 open() \"/home/a/public_html/favicon.ico\" failed (2: No such file or directory), client: 1.2.3.4, server: a.test"),
            triggers: false,
        },
        super::Fixture {
            name: "Primary script unknown (a 404, not a 502)",
            server: fixture_server("2026/11/24 20:10:44 [error] 9#9: *8 FastCGI sent in stderr: \"Primary script unknown\" while reading response header from upstream, client: 1.2.3.4, server: a.test, request: \"GET /x.php HTTP/1.1\""),
            triggers: false,
        },
    ]
}

/// Groups the failures; `drift` are the socket-drift findings (to link errno 2/111 to them).
pub fn run(server: &Server, drift: &[Finding]) -> CheckOutput {
    let Some(logs) = &server.evidence.nginx else {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    };
    let mut findings = Vec::new();
    let mut unknown = false;
    for s in &logs.sources {
        if let SourceState::Unreadable { reason } = &s.state {
            unknown = true;
            let mut f = Finding::new(ID, Severity::Unknown, format!("cannot read the log: {reason}"));
            f.file = Some(s.file.clone());
            f.secondary = true;
            findings.push(f);
        }
    }
    let global_missing = logs
        .sources
        .iter()
        .all(|s| matches!(s.state, SourceState::Missing | SourceState::Unreadable { .. }));
    let mut groups: BTreeMap<(Option<String>, Option<String>, Class), Group> = BTreeMap::new();
    for e in logs.errors.iter().filter(|e| e.time >= server.evidence.since) {
        let g = groups
            .entry((e.domain.clone(), e.upstream.clone(), e.class))
            .or_insert_with(|| Group {
                events: vec![],
                statuses: BTreeMap::new(),
            });
        g.events.push(e);
        let (status, _) = status_of(e, &logs.access);
        *g.statuses.entry(status).or_default() += 1;
    }
    // Upstreams the configs use now, and which of them answer: a connect
    // failure to an upstream nothing uses any more, or that answers now, is history.
    let referenced: std::collections::HashSet<String> = server.endpoints().iter().map(endpoint_key).collect();
    let connect_class = |c: Class| {
        matches!(
            c,
            Class::Missing
                | Class::Refused
                | Class::PermissionDenied
                | Class::BacklogFull
                | Class::OtherConnect
        )
    };
    for ((domain, upstream, class), g) in groups {
        let first = g.events.iter().map(|e| e.time).min().unwrap_or(0);
        let last_ev = g.events.iter().max_by_key(|e| e.time).expect("non-empty group");
        let n502 = g.statuses.get(&502).copied().unwrap_or(0);
        let n5xx: usize = g
            .statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum();
        // 502s in the last minutes are an outage now; older ones are history.
        let recent = server.evidence.now - last_ev.time <= RECENT_SECS;
        let resolved = connect_class(class)
            && upstream.as_deref().is_some_and(|u| {
                let ep = crate::probe::Endpoint::parse_nginx(u);
                let live = ep
                    .as_ref()
                    .and_then(|e| server.probes.get(e))
                    .is_some_and(|r| r.state.is_live());
                let unused = !referenced.is_empty()
                    && ep
                        .as_ref()
                        .is_some_and(|e| !referenced.contains(&endpoint_key(e)));
                live || unused
            });
        let severity = if resolved {
            Severity::Info
        } else if n502 > 0 && recent {
            Severity::Critical
        } else if n5xx > 0 {
            Severity::Warning
        } else {
            Severity::Info
        };
        let http = g.events.iter().any(|e| e.line.text.contains("upstream: \"http"));
        let by = explained_by(server, drift, class, upstream.as_deref(), http);
        let statuses: Vec<String> = g.statuses.iter().map(|(s, n)| format!("{n} × {s}")).collect();
        let mut f = Finding::new(
            ID,
            severity,
            format!(
                "{} failure(s) {} to {}: {}{}",
                g.events.len(),
                class.as_str(),
                upstream.as_deref().unwrap_or("an upstream"),
                statuses.join(", "),
                if resolved {
                    " (resolved since: no handler uses that upstream now, or it answers)".to_string()
                } else {
                    by.map(|c| format!(" → see {c}")).unwrap_or_default()
                }
            ),
        );
        f.user = domain
            .as_deref()
            .and_then(|d| server.owner_of(d))
            .map(str::to_string);
        f.domain = domain.clone();
        f.file = Some(last_ev.line.file.clone());
        f.socket = upstream
            .as_ref()
            .map(|u| u.strip_prefix("unix:").unwrap_or(u).to_string());
        f.log_line = Some(last_ev.line.text.clone());
        f.count = Some(g.events.len());
        f.first_seen = Some(format_time(first));
        f.last_seen = Some(format_time(last_ev.time));
        f.statuses = g.statuses;
        f.explained_by = by;
        f.secondary = true;
        findings.push(f);
    }
    let state = if findings.iter().any(|f| f.severity >= Severity::Warning) {
        CheckState::Finding
    } else if unknown || global_missing {
        CheckState::Unknown
    } else {
        CheckState::Ok
    };
    if global_missing && !unknown {
        let mut f = Finding::new(
            ID,
            Severity::Unknown,
            "no nginx error log could be read: the logs say nothing".into(),
        );
        f.file = logs.sources.first().map(|s| s.file.clone());
        f.secondary = true;
        findings.push(f);
    }
    CheckOutput { findings, state }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::logread::{LogLine, Source};
    use crate::evidence::nginx_log::{parse_error, AccessEvent, NginxLogs};
    use crate::evidence::Evidence;

    fn ev(text: &str, domain: &str) -> ErrorEvent {
        let l = LogLine {
            file: format!("/var/log/nginx/domains/{domain}.error.log"),
            offset: 0,
            text: text.into(),
        };
        parse_error(&l, Some(domain), 0).unwrap()
    }

    fn server(errors: Vec<ErrorEvent>, access: Vec<AccessEvent>) -> Server {
        Server {
            evidence: Evidence {
                since: 0,
                now: crate::evidence::logread::unix_of(2026, 11, 24, 20, 15, 0),
                nginx: Some(NginxLogs {
                    errors,
                    access,
                    sources: vec![Source {
                        file: "/var/log/nginx/error.log".into(),
                        state: SourceState::Ok { lines: 3 },
                    }],
                    utc_offset: 0,
                    hits: Default::default(),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const MISSING: &str = "2026/11/24 20:10:44 [error] 9#9: *5 connect() to unix:/usr/local/php82/sockets/alice.sock failed (2: No such file or directory) while connecting to upstream, client: 1.2.3.4, server: a.test, request: \"GET /index.php HTTP/1.1\", upstream: \"fastcgi://unix:/usr/local/php82/sockets/alice.sock:\", host: \"a.test\"";
    const TIMEOUT: &str = "2026/11/24 20:11:00 [error] 9#9: *7 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 1.2.3.4, server: a.test, request: \"GET /slow.php HTTP/1.1\", upstream: \"fastcgi://unix:/s.sock:\", host: \"a.test\"";
    const UNKNOWN_SCRIPT: &str = "2026/11/24 20:12:00 [error] 9#9: *8 FastCGI sent in stderr: \"Primary script unknown\" while reading response header from upstream, client: 1.2.3.4, server: a.test, request: \"GET /nope.php HTTP/1.1\", upstream: \"fastcgi://unix:/s.sock:\", host: \"a.test\"";

    #[test]
    fn groups_count_and_label_with_access_status() {
        let e1 = ev(MISSING, "a.test");
        let mut e2 = e1.clone();
        e2.time += 60;
        let acc = vec![AccessEvent {
            time: e1.time,
            domain: "a.test".into(),
            request: "GET /index.php HTTP/1.1".into(),
            status: 502,
        }];
        let out = run(&server(vec![e1, e2], acc), &[]);
        assert_eq!(out.state, CheckState::Finding);
        let f = &out.findings[0];
        assert_eq!(f.count, Some(2));
        assert_eq!(
            f.statuses.get(&502),
            Some(&2),
            "one from the access log, one by default"
        );
        assert_eq!(f.severity, Severity::Critical, "the last one is recent");
        assert_eq!(f.explained_by, Some("fpm-down"));
        assert_eq!(f.last_seen.as_deref(), Some("2026-11-24 20:11:44"));
    }

    #[test]
    fn timeouts_are_504_and_script_unknown_404_not_502() {
        let out = run(
            &server(vec![ev(TIMEOUT, "a.test"), ev(UNKNOWN_SCRIPT, "a.test")], vec![]),
            &[],
        );
        let t = out
            .findings
            .iter()
            .find(|f| f.explained_by == Some("fastcgi-timeout"))
            .unwrap();
        assert_eq!(t.statuses.get(&504), Some(&1));
        assert_eq!(t.severity, Severity::Warning);
        let u = out
            .findings
            .iter()
            .find(|f| f.statuses.contains_key(&404))
            .unwrap();
        assert_eq!(u.severity, Severity::Info);
        assert!(out.findings.iter().all(|f| !f.statuses.contains_key(&502)));
    }

    #[test]
    fn links_missing_socket_to_drift_when_drift_names_it() {
        let mut drift = Finding::new(super::super::socket_drift::ID, Severity::Critical, String::new());
        drift.socket = Some("/usr/local/php82/sockets/alice.sock".into());
        let out = run(&server(vec![ev(MISSING, "a.test")], vec![]), &[drift]);
        assert_eq!(out.findings[0].explained_by, Some("socket-drift"));
    }

    #[test]
    fn dead_expected_socket_is_fpm_down_not_drift() {
        let mut drift = Finding::new(super::super::socket_drift::ID, Severity::Critical, String::new());
        drift.socket = Some("/usr/local/php82/sockets/alice.sock".into());
        drift.expected_socket = drift.socket.clone();
        let out = run(&server(vec![ev(MISSING, "a.test")], vec![]), &[drift]);
        assert_eq!(out.findings[0].explained_by, Some("fpm-down"));
    }

    #[test]
    fn clean_logs_are_ok_and_unreadable_is_unknown() {
        let out = run(&server(vec![], vec![]), &[]);
        assert_eq!(out.state, CheckState::Ok);
        assert!(out.findings.is_empty());
        let mut s = server(vec![], vec![]);
        s.evidence.nginx.as_mut().unwrap().sources[0].state = SourceState::Unreadable {
            reason: "EACCES".into(),
        };
        let out = run(&s, &[]);
        assert_eq!(out.state, CheckState::Unknown);
        let s = Server::default();
        assert_eq!(run(&s, &[]).state, CheckState::NotApplicable);
    }

    #[test]
    fn failures_to_an_upstream_that_answers_now_are_history() {
        let mut s = server(vec![ev(MISSING, "a.test")], vec![]);
        s.probes.insert(
            crate::probe::Endpoint::Unix("/usr/local/php82/sockets/alice.sock".into()),
            crate::probe::ProbeResult {
                state: crate::probe::SocketState::Listening,
                detail: String::new(),
                owner: None,
                mode: None,
                fcgi: None,
            },
        );
        let out = run(&s, &[]);
        assert_eq!(out.findings[0].severity, Severity::Info);
        assert!(out.findings[0].message.contains("resolved"));
        assert_eq!(out.state, CheckState::Ok);
    }

    #[test]
    fn refused_http_upstream_is_apache_not_fpm() {
        let line = "2026/11/24 20:10:44 [error] 9#9: *5 connect() to 127.0.0.1:8080 failed (111: Connection refused) while connecting to upstream, client: 1.2.3.4, server: a.test, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8080/\", host: \"a.test\"";
        let out = run(&server(vec![ev(line, "a.test")], vec![]), &[]);
        assert_eq!(out.findings[0].explained_by, Some("apache-upstream"));
        let fcgi = "2026/11/24 20:10:44 [error] 9#9: *5 connect() to 127.0.0.1:9000 failed (111: Connection refused) while connecting to upstream, client: 1.2.3.4, server: a.test, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://127.0.0.1:9000\", host: \"a.test\"";
        let out = run(&server(vec![ev(fcgi, "a.test")], vec![]), &[]);
        assert_eq!(out.findings[0].explained_by, Some("fpm-down"));
    }

    #[test]
    fn old_502s_are_a_warning_not_an_outage() {
        let mut s = server(vec![ev(MISSING, "a.test")], vec![]);
        s.evidence.now += 86_000;
        assert_eq!(run(&s, &[]).findings[0].severity, Severity::Warning);
    }

    #[test]
    fn events_before_the_window_are_ignored() {
        let mut s = server(vec![ev(MISSING, "a.test")], vec![]);
        s.evidence.since = i64::MAX;
        assert!(run(&s, &[]).findings.is_empty());
    }
}
