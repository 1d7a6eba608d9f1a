//! `oom-kill`: the kernel's OOM killer killed PHP-FPM processes. A worker
//! killed mid-request makes nginx log `recv() failed (104: Connection reset
//! by peer)` or `upstream prematurely closed connection`: a 502.

use super::{CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::kernel::OomKill;
use crate::evidence::logread::{format_time, SourceState};
use crate::evidence::nginx_log::Class;
use crate::model::Server;
use std::collections::BTreeMap;

pub const ID: &str = "oom-kill";

/// A kill this recent (seconds) explains failures happening now.
const RECENT_SECS: i64 = 15 * 60;

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "PHP-FPM processes killed by the kernel's OOM killer",
    what: "Reads the kernel log — `dmesg` (live root only), `journalctl -k` (when installed), `/var/log/kern.log`, \
`/var/log/messages`, whichever exist — for `Out of memory: Killed process 1234 (php-fpm83)` and \
`oom-kill:…,task=php-fpm8.2,pid=…` lines, converts `[12345.678]` stamps with the boot time, and counts the kills \
of PHP-FPM processes in the window. Kills of other processes (mysqld) are not blamed on PHP.",
    why: "A worker killed mid-request leaves nginx with a reset connection: a 502 with `recv() failed (104)` or \
`upstream prematurely closed connection`. A killed master leaves a socket nobody answers.",
    example: "`Out of memory: Killed process 48211 (php-fpm83) total-vm:812344kB, anon-rss:612008kB` × 3 in the \
last hour.",
    fix: "Lower the memory PHP can take: `pm.max_children` × `memory_limit` must fit in RAM beside MySQL and the \
rest; find the script that eats memory (PHP-FPM slowlog, access log at the kill's time); add RAM or swap.",
    fix_safety: "No automatic fix: the right numbers depend on the workload.",
};

/// PHP-FPM as the kernel names it (comm, at most 15 bytes): `php-fpm`,
/// `php-fpm83`, `php-fpm8.2`; or a kill inside a php-fpm service cgroup.
pub fn is_php_fpm(k: &OomKill) -> bool {
    k.process.starts_with("php-fpm") || k.memcg.as_deref().is_some_and(|m| m.contains("php-fpm"))
}

/// `83` from `php-fpm83` / `php-fpm8.3` / a `php-fpm83.service` cgroup.
fn version_digits(k: &OomKill) -> Option<String> {
    let from = |s: &str| {
        let i = s.find("php-fpm")? + "php-fpm".len();
        let d: String = s[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .filter(|c| *c != '.')
            .collect();
        (d.len() >= 2).then_some(d)
    };
    from(&k.process).or_else(|| k.memcg.as_deref().and_then(from))
}

/// Domains whose PHP failed with a reset / premature close in the window,
/// on a socket of that PHP version (any version when unknown).
fn reset_domains(server: &Server, digits: Option<&str>) -> Vec<String> {
    let Some(logs) = &server.evidence.nginx else {
        return vec![];
    };
    let mut out: Vec<String> = logs
        .errors
        .iter()
        .filter(|e| e.class == Class::Reset && e.time >= server.evidence.since)
        .filter(|e| {
            digits.is_none_or(|d| {
                e.upstream
                    .as_deref()
                    .is_none_or(|u| !u.contains("/php") || u.contains(&format!("/php{d}/")))
            })
        })
        .filter_map(|e| e.domain.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    let Some(k) = &server.evidence.kernel else {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    };
    let mut findings = Vec::new();
    let mut readable = false;
    for s in &k.sources {
        let reason = match &s.state {
            SourceState::Unreadable { reason } => Some(reason.clone()),
            // A journal that answers nothing is not a clean kernel.
            SourceState::Empty if !s.file.starts_with('/') => Some("returned no kernel messages".into()),
            SourceState::Missing => None,
            _ => {
                readable = true;
                None
            }
        };
        if let Some(r) = reason {
            let mut f = Finding::new(ID, Severity::Unknown, format!("kernel log {}: {r}", s.file));
            f.file = Some(s.file.clone());
            f.secondary = true;
            findings.push(f);
        }
    }
    let mut groups: BTreeMap<String, Vec<&OomKill>> = BTreeMap::new();
    for kill in k.kills.iter().filter(|x| is_php_fpm(x)) {
        groups.entry(kill.process.clone()).or_default().push(kill);
    }
    for (process, kills) in groups {
        let in_window: Vec<&&OomKill> = kills
            .iter()
            .filter(|x| x.time.is_none_or(|t| t >= server.evidence.since))
            .collect();
        let last = kills
            .iter()
            .max_by_key(|x| x.time.unwrap_or(i64::MAX))
            .expect("non-empty");
        let last_t = last.time;
        let severity = if in_window.is_empty() {
            Severity::Info
        } else if last_t.is_none_or(|t| server.evidence.now - t <= RECENT_SECS) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let digits = version_digits(last);
        let mut f = Finding::new(
            ID,
            severity,
            format!(
                "the kernel's OOM killer killed {} {process} process(es){}{}: workers killed mid-request give 502s (reset / premature close).",
                kills.len(),
                if in_window.is_empty() {
                    " before the window"
                } else {
                    " in the window"
                },
                if last_t.is_none() {
                    " (time unknown: no boot time)"
                } else {
                    ""
                }
            ),
        );
        f.file = Some(last.line.file.clone());
        f.log_line = Some(last.line.text.clone());
        f.count = Some(kills.len());
        f.first_seen = kills.iter().filter_map(|x| x.time).min().map(format_time);
        f.last_seen = last_t.map(format_time);
        f.affected_domains = if in_window.is_empty() {
            vec![]
        } else {
            reset_domains(server, digits.as_deref())
        };
        if f.affected_domains.len() == 1 {
            f.domain = f.affected_domains.first().cloned();
            f.user = f
                .domain
                .as_deref()
                .and_then(|d| server.owner_of(d))
                .map(str::to_string);
        }
        f.socket_detail = last.memcg.clone();
        f.secondary = true;
        findings.push(f);
    }
    let state = if findings.iter().any(|f| f.severity >= Severity::Warning) {
        CheckState::Finding
    } else if !readable || findings.iter().any(|f| f.severity == Severity::Unknown) {
        if !readable && !findings.iter().any(|f| f.severity == Severity::Unknown) {
            let mut f = Finding::new(
                ID,
                Severity::Unknown,
                "no kernel log could be read (no dmesg, journal, kern.log or messages): OOM kills cannot be ruled out"
                    .into(),
            );
            f.secondary = true;
            findings.push(f);
        }
        CheckState::Unknown
    } else {
        CheckState::Ok
    };
    CheckOutput { findings, state }
}

/// A server whose kernel log holds `lines` (captured real-format lines;
/// `now` = 2026-11-24 20:15 UTC, window 24 h, booted 1 000 000 s before).
pub fn fixture(lines: &[&str]) -> Server {
    use crate::evidence::kernel::{merge, parse_kill, KernelLog};
    use crate::evidence::logread::{unix_of, LogLine, Source};
    let now = unix_of(2026, 11, 24, 20, 15, 0);
    let boot = now - 1_000_000;
    let kills = lines
        .iter()
        .filter_map(|t| {
            parse_kill(
                &LogLine {
                    file: "dmesg".into(),
                    offset: 0,
                    text: t.to_string(),
                },
                Some(boot),
                2026,
            )
        })
        .collect();
    let mut s = Server::default();
    s.evidence.now = now;
    s.evidence.since = now - 86_400;
    s.evidence.kernel = Some(KernelLog {
        sources: vec![Source {
            file: "dmesg".into(),
            state: SourceState::Ok { lines: lines.len() },
        }],
        kills: merge(kills),
        boot_time: Some(boot),
    });
    s
}

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "php-fpm83 killed ten minutes ago",
            server: fixture(&[
                "[999400.101010] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/php-fpm83.service,task=php-fpm83,pid=48211,uid=1001",
                "[999400.102020] Out of memory: Killed process 48211 (php-fpm83) total-vm:812344kB, anon-rss:612008kB, file-rss:0kB, shmem-rss:2048kB, UID:1001 pgtables:1404kB oom_score_adj:0",
            ]),
            triggers: true,
        },
        super::Fixture {
            name: "mysqld killed: not PHP",
            server: fixture(&["[999400.102020] Out of memory: Killed process 912 (mysqld) total-vm:2412344kB, anon-rss:1612008kB, file-rss:0kB, shmem-rss:0kB, UID:27 pgtables:4404kB oom_score_adj:0"]),
            triggers: false,
        },
        super::Fixture {
            name: "php-fpm8.2 killed two days ago (before the window)",
            server: fixture(&["[827000.000001] Out of memory: Killed process 5150 (php-fpm8.2) total-vm:300000kB, anon-rss:200000kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:600kB oom_score_adj:0"]),
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &Server) -> CheckOutput {
        let drift = super::super::socket_drift::run(s);
        check(s, &super::super::Context { drift: &drift })
    }

    #[test]
    fn recent_php_kill_is_critical_and_merged() {
        let out = run(&fixtures().remove(0).server);
        assert_eq!(out.state, CheckState::Finding);
        let f = &out.findings[0];
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.count, Some(1), "summary + Killed line are one kill");
        assert!(f.log_line.as_deref().unwrap().contains("Killed process 48211"));
        assert!(f.secondary);
    }

    #[test]
    fn old_kill_is_info_and_mysqld_is_ignored() {
        let out = run(&fixtures().remove(2).server);
        assert_eq!(out.findings[0].severity, Severity::Info);
        assert_eq!(out.state, CheckState::Ok);
        let out = run(&fixtures().remove(1).server);
        assert!(out.findings.is_empty());
        assert_eq!(out.state, CheckState::Ok);
    }

    #[test]
    fn unreadable_or_empty_journal_is_a_secondary_unknown() {
        let mut s = fixture(&[]);
        s.evidence.kernel.as_mut().unwrap().sources = vec![
            crate::evidence::logread::Source {
                file: "dmesg".into(),
                state: SourceState::Unreadable {
                    reason: "dmesg: read kernel buffer failed: Operation not permitted".into(),
                },
            },
            crate::evidence::logread::Source {
                file: "journalctl -k".into(),
                state: SourceState::Empty,
            },
            crate::evidence::logread::Source {
                file: "/var/log/kern.log".into(),
                state: SourceState::Missing,
            },
        ];
        let out = run(&s);
        assert_eq!(out.state, CheckState::Unknown);
        assert_eq!(out.findings.len(), 2);
        assert!(out
            .findings
            .iter()
            .all(|f| f.secondary && f.severity == Severity::Unknown));
        assert_eq!(
            super::super::verdict(&out.findings),
            "ok",
            "secondary unknowns never override"
        );
    }

    #[test]
    fn links_to_domains_with_resets_on_that_version() {
        let mut s = fixtures().remove(0).server;
        let t = super::super::log_triage::fixture_server("2026/11/24 20:10:44 [error] 9#9: *5 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 1.2.3.4, server: a.test, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/usr/local/php83/sockets/alice.sock:\", host: \"a.test\"");
        s.evidence.nginx = t.evidence.nginx;
        let f = &run(&s).findings[0];
        assert_eq!(f.affected_domains, vec!["a.test"]);
        assert_eq!(f.domain.as_deref(), Some("a.test"));
    }
}
