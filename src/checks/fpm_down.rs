//! `fpm-down`: the PHP-FPM master of a configured version is not running, so
//! every pool socket of that version is missing or refuses connections.

use super::{CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::fpm::{FileState, FpmEvidence, FpmVersion, Master, PidFile};
use crate::model::{pool_endpoint, Server};
use crate::probe::{Endpoint, SocketState};

pub const ID: &str = "fpm-down";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "The PHP-FPM master of a PHP version is not running",
    what: "For every PHP slot in php-fpm mode: reads the master's pid file (`pid =` of \
`/usr/local/phpXY/etc/php-fpm.conf`), checks that `/proc/<pid>` is a php-fpm process (or finds the master by \
its title), connects to every pool socket of that version, and asks systemd when it runs.",
    why: "When the master dies (OOM kill, crash, a failed restart, a host without systemd that never restarts it) \
every site of that version answers 502: `connect() … failed (111: Connection refused)` when the socket file was \
left behind, `(2: No such file or directory)` when it was removed.",
    example: "`/usr/local/php83/var/run/php-fpm.pid` says 4242, `/proc/4242` does not exist, \
`/usr/local/php83/sockets/alice.sock` refuses connections: PHP 8.3 is down for alice.test and bob.test.",
    fix: "Start (or restart) the version's service — `systemctl restart php-fpm83`, or the configured \
`[commands] fpm_restart` — then read `/var/log/php-fpm83.log` for why it stopped (a config error keeps it down).",
    fix_safety: "Needs confirmation: a restart ends requests in flight for every site of that version, and cannot \
be undone. It runs detached, so it finishes even if the panel page is closed.",
};

fn sock_name(ep: &Endpoint) -> String {
    match ep {
        Endpoint::Unix(p) => p.clone(),
        other => other.display(),
    }
}

fn pid_text(v: &FpmVersion) -> String {
    match (&v.pid, &v.master) {
        (PidFile::Missing, _) => format!("no pid file at {}", v.pid_file),
        (PidFile::Unreadable { reason }, _) => format!("pid file unreadable ({reason})"),
        (PidFile::Invalid { text }, _) => format!("{} holds no pid ({text:?})", v.pid_file),
        (PidFile::Pid { pid }, Master::Gone { .. }) => {
            format!(
                "{} says {pid}, but no such process exists (stale pid file)",
                v.pid_file
            )
        }
        (PidFile::Pid { pid }, Master::NotFpm { comm, .. }) => format!(
            "{} says {pid}, which is now `{comm}`, not php-fpm (stale pid file)",
            v.pid_file
        ),
        (PidFile::Pid { pid }, Master::Alive { .. }) => format!("master {pid} is running"),
        (PidFile::Pid { pid }, Master::Unknown { reason }) => {
            format!("{} says {pid}; process not checked: {reason}", v.pid_file)
        }
    }
}

/// Judges one version; `None` when it is healthy.
fn judge(server: &Server, v: &FpmVersion) -> Option<Finding> {
    let mut socks: Vec<(Endpoint, SocketState, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in server.fpm_pools(&v.digits) {
        let Some(ep) = r.pool.listen.as_deref().and_then(pool_endpoint) else {
            continue;
        };
        if !seen.insert(ep.clone()) {
            continue;
        }
        let (st, detail) = match server.probes.get(&ep) {
            Some(p) => (p.state, p.detail.clone()),
            None => (SocketState::NotProbed, String::new()),
        };
        socks.push((ep, st, detail));
    }
    let dead = |s: SocketState| {
        matches!(
            s,
            SocketState::Missing | SocketState::Refused | SocketState::NotSocket
        )
    };
    // Busy, timeout and permission problems still mean a master accepts.
    let alive_sock = |s: SocketState| !dead(s) && s != SocketState::NotProbed;
    let probed: Vec<_> = socks
        .iter()
        .filter(|(_, s, _)| *s != SocketState::NotProbed)
        .collect();
    let any_alive = probed.iter().any(|(_, s, _)| alive_sock(*s));
    let all_dead = !probed.is_empty() && probed.iter().all(|(_, s, _)| dead(*s));
    let by_title = v.master_by_title.is_some();
    let proc_alive = matches!(v.master, Master::Alive { .. }) || by_title;
    let proc_dead = matches!(v.master, Master::Gone { .. } | Master::NotFpm { .. }) && !by_title;
    let procs_known = v.workers_unknown.is_none() || !matches!(v.master, Master::Unknown { .. });
    let systemd_dead = v
        .systemd
        .as_deref()
        .is_some_and(|s| s == "failed" || s == "inactive");

    let dead_socks: Vec<&(Endpoint, SocketState, String)> =
        socks.iter().filter(|(_, s, _)| dead(*s)).collect();
    let mut affected: Vec<String> = Vec::new();
    let mut affected_set = std::collections::HashSet::new();
    for (ep, _, _) in if dead_socks.is_empty() {
        socks.iter().collect::<Vec<_>>()
    } else {
        dead_socks.clone()
    } {
        for d in server.domains_using(ep) {
            if affected_set.insert(d.clone()) {
                affected.push(d);
            }
        }
    }
    let sock_list: Vec<String> = dead_socks
        .iter()
        .map(|(e, s, d)| format!("{} {} ({d})", sock_name(e), s.as_str()))
        .collect();
    let mut f = Finding::new(ID, Severity::Critical, String::new());
    f.file = Some(match v.pid {
        PidFile::Pid { .. } => v.pid_file.clone(),
        _ => v.conf_file.clone(),
    });
    if let PidFile::Pid { pid } = v.pid {
        f.text = Some(pid.to_string());
    }
    if let Some((ep, st, detail)) = dead_socks.first() {
        f.socket = Some(sock_name(ep));
        f.socket_state = Some(st.as_str());
        f.socket_detail = Some(detail.clone()).filter(|d| !d.is_empty());
    }
    f.affected_domains = affected.clone();
    if affected.len() == 1 {
        f.domain = affected.first().cloned();
    }
    let owners: Vec<&str> = affected.iter().filter_map(|d| server.owner_of(d)).collect();
    if !owners.is_empty() && owners.iter().all(|o| *o == owners[0]) {
        f.user = Some(owners[0].to_string());
    }
    let sysd = v
        .systemd
        .as_deref()
        .map(|s| format!("; systemd: php-fpm{} is {s}", v.digits))
        .unwrap_or_default();
    let conf = match &v.conf {
        FileState::Ok => String::new(),
        FileState::Missing => format!("; its master config {} is missing", v.conf_file),
        FileState::Unreadable { reason } => format!("; its master config is unreadable: {reason}"),
    };
    let sites = if affected.is_empty() {
        String::new()
    } else {
        format!(" — 502 for {}", affected.join(", "))
    };
    if all_dead || ((proc_dead || systemd_dead) && !any_alive) {
        f.message = format!(
            "PHP-FPM {} is down: {}{}{}{conf}{sites}",
            v.release,
            pid_text(v),
            if sock_list.is_empty() {
                String::new()
            } else {
                format!("; sockets: {}", sock_list.join(", "))
            },
            sysd
        );
        return Some(f);
    }
    if matches!(v.pid, PidFile::Missing) && procs_known && !proc_alive && !any_alive && probed.is_empty() {
        f.message = format!(
            "PHP-FPM {} is not running: {} and no process is titled `php-fpm: master process ({})`{sysd}{conf}{sites}",
            v.release, pid_text(v), v.conf_file
        );
        return Some(f);
    }
    if !dead_socks.is_empty() && any_alive {
        // The master runs but some pools do not listen: added after the
        // last reload, or rejected by FPM.
        f.severity = Severity::Warning;
        f.message = format!(
            "PHP-FPM {} runs, but some of its pool sockets do not listen: {} — reload php-fpm{} and read {}{sites}",
            v.release,
            sock_list.join(", "),
            v.digits,
            v.log_file
        );
        return Some(f);
    }
    if proc_dead && any_alive {
        f.severity = Severity::Info;
        f.message = format!(
            "PHP-FPM {}: {}, yet its sockets answer (another master serves them)",
            v.release,
            pid_text(v)
        );
        return Some(f);
    }
    if probed.is_empty() && !proc_alive {
        f.severity = Severity::Unknown;
        // Runtime state deliberately not gathered (--no-probe on a copy):
        // it must not turn a clean config scan into an unknown verdict.
        f.secondary = true;
        f.socket = None;
        f.socket_state = None;
        f.message = format!(
            "cannot tell whether PHP-FPM {} runs: sockets not probed, {}",
            v.release,
            match &v.master {
                Master::Unknown { reason } => reason.clone(),
                _ => pid_text(v),
            }
        );
        return Some(f);
    }
    None
}

pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    let Some(ev) = &server.evidence.fpm else {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    };
    if ev.versions.is_empty() {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    }
    let findings: Vec<Finding> = ev.versions.iter().filter_map(|v| judge(server, v)).collect();
    let state = super::state_from(&findings);
    CheckOutput { findings, state }
}

/// A server with PHP 8.3 in slot 1, user alice (pool `alice`, domain
/// a.test) and the given master and socket evidence (fixture builder,
/// shared by the FPM checks).
pub fn fixture_server(pid: PidFile, master: Master, sock: SocketState) -> Server {
    use crate::model::Pool;
    use crate::probe::ProbeResult;
    let sock_path = "/usr/local/php83/sockets/alice.sock";
    let mut s = super::socket_drift::fixture_server(sock_path, &[], crate::model::Layer::Generated);
    s.users[0].pools.push(Pool {
        name: "alice".into(),
        version_digits: "83".into(),
        file: "/usr/local/directadmin/data/users/alice/php/php-fpm83.conf".into(),
        line: 1,
        listen: Some(sock_path.into()),
        listen_owner: Some("alice".into()),
        listen_group: Some("nginx".into()),
        listen_mode: Some("660".into()),
        settings: vec![
            ("user".into(), "alice".into()),
            ("group".into(), "alice".into()),
            ("pm".into(), "dynamic".into()),
            ("pm.max_children".into(), "5".into()),
        ],
    });
    let mut r = ProbeResult::not_probed("");
    r.state = sock;
    r.detail = format!("fixture: {}", sock.as_str());
    r.owner = Some((5001, 981));
    r.mode = Some(0o660);
    s.probes.insert(Endpoint::Unix(sock_path.into()), r);
    s.evidence.fpm = Some(FpmEvidence {
        versions: vec![FpmVersion {
            release: "8.3".into(),
            digits: "83".into(),
            conf_file: "/usr/local/php83/etc/php-fpm.conf".into(),
            conf: FileState::Ok,
            global: vec![],
            pools: vec![],
            pid_file: "/usr/local/php83/var/run/php-fpm.pid".into(),
            pid,
            master,
            master_by_title: None,
            workers_unknown: None,
            workers: vec![],
            systemd: None,
            log_file: "/var/log/php-fpm83.log".into(),
            log_sources: vec![],
            max_children: vec![],
        }],
        ..Default::default()
    });
    s
}

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "stale pid file of a dead master, socket refuses",
            server: fixture_server(
                PidFile::Pid { pid: 4242 },
                Master::Gone { pid: 4242 },
                SocketState::Refused,
            ),
            triggers: true,
        },
        super::Fixture {
            name: "socket file removed, no pid file",
            server: fixture_server(
                PidFile::Missing,
                Master::Unknown {
                    reason: "no pid".into(),
                },
                SocketState::Missing,
            ),
            triggers: true,
        },
        super::Fixture {
            name: "live master, socket listening",
            server: fixture_server(
                PidFile::Pid { pid: 4242 },
                Master::Alive {
                    pid: 4242,
                    cmdline: "php-fpm: master process (/usr/local/php83/etc/php-fpm.conf)".into(),
                },
                SocketState::Listening,
            ),
            triggers: false,
        },
        super::Fixture {
            name: "offline copy (no /proc) whose socket answers",
            server: fixture_server(
                PidFile::Pid { pid: 4242 },
                Master::Unknown {
                    reason: "/proc is not available here".into(),
                },
                SocketState::Listening,
            ),
            triggers: false,
        },
        super::Fixture {
            name: "pool exhausted (backlog full) is not down",
            server: fixture_server(
                PidFile::Pid { pid: 4242 },
                Master::Alive {
                    pid: 4242,
                    cmdline: "php-fpm: master process".into(),
                },
                SocketState::Busy,
            ),
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_finding_names_pid_socket_and_domains() {
        let s = fixture_server(
            PidFile::Pid { pid: 4242 },
            Master::Gone { pid: 4242 },
            SocketState::Refused,
        );
        let out = check(
            &s,
            &super::super::Context {
                drift: &super::super::socket_drift::run(&s),
            },
        );
        let f = &out.findings[0];
        assert_eq!(f.severity, Severity::Critical);
        assert_eq!(f.socket.as_deref(), Some("/usr/local/php83/sockets/alice.sock"));
        assert_eq!(f.socket_state, Some("refused"));
        assert_eq!(f.domain.as_deref(), Some("a.test"));
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert!(f.message.contains("stale pid file"), "{}", f.message);
    }

    #[test]
    fn nothing_probed_and_no_proc_is_unknown() {
        let s = fixture_server(
            PidFile::Pid { pid: 1 },
            Master::Unknown {
                reason: "/proc is not available".into(),
            },
            SocketState::NotProbed,
        );
        let out = check(
            &s,
            &super::super::Context {
                drift: &super::super::socket_drift::run(&s),
            },
        );
        assert_eq!(out.state, CheckState::Unknown);
    }
}
