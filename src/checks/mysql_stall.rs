//! `mysql-stall`: PHP waits on MySQL — a query that runs too long, a
//! transaction holding row locks others wait for, a full connection table.

use super::{CheckDoc, CheckOutput, CheckState, Finding, MysqlThreads, Severity};
use crate::evidence::mysql::{LockWait, MysqlEvidence, MysqlState, Process};
use crate::model::Server;
use std::collections::BTreeMap;

pub const ID: &str = "mysql-stall";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "PHP workers stuck waiting on MySQL",
    what: "Reads the MySQL/MariaDB processlist through the `mariadb`/`mysql` client with DirectAdmin's credentials \
(`/usr/local/directadmin/conf/mysql.conf`, passed only in a private 0600 defaults file), the connection count \
against `max_connections`, and InnoDB lock waits (`information_schema.INNODB_LOCK_WAITS` on MariaDB, \
`performance_schema.data_lock_waits` on MySQL 8). Reports queries running longer than the threshold, which \
thread holds the lock others wait for, and a connection table close to full. Database users named \
`<user>_…` are attributed to the DirectAdmin user; query texts are shown to admins only.",
    why: "A PHP-FPM worker waiting on MySQL is a busy worker: a few stalled queries or one forgotten open \
transaction exhaust the pool, and nginx answers 502/504 for every site of the pool. A full connection table \
makes PHP fail with \"Too many connections\".",
    example: "thread 11 (alice_wp, idle in an open transaction for 300 s) holds a row lock; thread 12 \
(`UPDATE wp_options …`) has waited 290 s for it.",
    fix: "Kill the blocking thread (`KILL <id>`): its transaction rolls back and the waiters proceed. Then find \
why the application left a transaction open or runs the slow query (missing index, cron job). Raise \
`max_connections` only after the stalls are gone.",
    fix_safety: "Needs confirmation and admin rights: killing a thread rolls back its transaction and cannot be \
undone. Only the blocker is killed, never its waiters.",
};

/// Threads of the server itself, not of a client.
fn is_system(p: &Process) -> bool {
    matches!(p.user.as_str(), "system user" | "event_scheduler" | "")
        || matches!(
            p.command.as_str(),
            "Daemon" | "Binlog Dump" | "Slave_IO" | "Slave_SQL" | "Killed"
        )
}

/// DA user of a database user: the `<user>_` prefix naming a known account.
pub fn da_user_of(server: &Server, db_user: &str) -> Option<String> {
    let (prefix, _) = db_user.split_once('_')?;
    server
        .users
        .iter()
        .find(|u| u.name == prefix)
        .map(|u| u.name.clone())
}

fn threads(p: &Process, seconds: u64) -> MysqlThreads {
    MysqlThreads {
        thread: p.id,
        db_user: p.user.clone(),
        db: p.db.clone(),
        command: p.command.clone(),
        seconds,
        blocking: vec![],
        waits_for: None,
    }
}

fn describe(p: &Process) -> String {
    let mut s = format!("thread {} ({}", p.id, p.user);
    if let Some(d) = &p.db {
        s.push_str(&format!(", db {d}"));
    }
    s.push_str(&format!(", {} for {} s", p.command, p.time));
    if let Some(t) = p.trx_secs {
        s.push_str(&format!(", transaction open {t} s"));
    }
    s.push(')');
    s
}

/// Registry entry point.
pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    match &server.evidence.mysql {
        None | Some(MysqlEvidence::Off { .. }) => CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        },
        Some(MysqlEvidence::Unreadable { source, reason }) => {
            let mut f = Finding::new(
                ID,
                Severity::Unknown,
                format!("cannot read MySQL's state: {reason}"),
            );
            f.file = Some(source.clone());
            f.secondary = true;
            CheckOutput {
                findings: vec![f],
                state: CheckState::Unknown,
            }
        }
        Some(MysqlEvidence::Ok(s)) => run(server, s),
    }
}

/// Judges one snapshot.
pub fn run(server: &Server, s: &MysqlState) -> CheckOutput {
    let mut findings = Vec::new();
    let by_id: BTreeMap<u64, &Process> = s.processes.iter().map(|p| (p.id, p)).collect();
    // A user-scoped scan shows only that account's `<user>_` database users.
    let visible = |p: &Process| !server.scoped || da_user_of(server, &p.user).is_some();
    let mut blockers: BTreeMap<u64, Vec<&LockWait>> = BTreeMap::new();
    for w in s.lock_waits.iter().flatten() {
        blockers.entry(w.blocking).or_default().push(w);
    }
    let waits_for: BTreeMap<u64, u64> = s
        .lock_waits
        .iter()
        .flatten()
        .map(|w| (w.waiting, w.blocking))
        .collect();
    for (blocker, waits) in &blockers {
        let b = by_id.get(blocker).copied();
        let ws: Vec<&Process> = waits
            .iter()
            .filter_map(|w| by_id.get(&w.waiting).copied())
            .collect();
        if !b.is_some_and(visible) && !ws.iter().any(|p| visible(p)) {
            continue;
        }
        let longest = waits.iter().map(|w| w.wait_secs).max().unwrap_or(0);
        let sev = if longest >= s.long_query_secs {
            Severity::Critical
        } else {
            Severity::Info
        };
        let waiting: Vec<String> = waits
            .iter()
            .map(|w| format!("thread {} ({} s)", w.waiting, w.wait_secs))
            .collect();
        let who = match b {
            Some(p) if visible(p) => describe(p),
            Some(_) => format!("thread {blocker} (another account)"),
            None => format!("thread {blocker}"),
        };
        let mut f = Finding::new(
            ID,
            sev,
            format!(
                "{who} holds a lock that {} wait(s) for: the PHP requests behind them hang until they time out",
                waiting.join(", ")
            ),
        );
        let owner = b
            .filter(|p| visible(p))
            .and_then(|p| da_user_of(server, &p.user))
            .or_else(|| ws.iter().find_map(|p| da_user_of(server, &p.user)));
        f.user = owner;
        f.file = Some(s.source.clone());
        f.count = Some(waits.len());
        let mut t = match b {
            Some(p) if visible(p) => threads(p, p.time),
            _ => MysqlThreads {
                thread: *blocker,
                db_user: String::new(),
                db: None,
                command: String::new(),
                seconds: 0,
                blocking: vec![],
                waits_for: None,
            },
        };
        t.blocking = waits.iter().map(|w| w.waiting).collect();
        f.mysql = Some(t);
        f.private = b.filter(|p| visible(p)).and_then(|p| p.info.clone());
        findings.push(f);
    }
    for p in &s.processes {
        let running = matches!(p.command.as_str(), "Query" | "Execute");
        if !running || is_system(p) || p.time < s.long_query_secs || !visible(p) {
            continue;
        }
        let blocked = waits_for.get(&p.id).copied();
        let mut f = Finding::new(
            ID,
            Severity::Warning,
            format!(
                "{} has run one query for {} s{}{}",
                describe(p),
                p.time,
                if p.state.is_empty() {
                    String::new()
                } else {
                    format!(" (state: {})", p.state)
                },
                blocked
                    .map(|b| format!("; it waits for a lock held by thread {b}"))
                    .unwrap_or_default()
            ),
        );
        f.user = da_user_of(server, &p.user);
        f.file = Some(s.source.clone());
        let mut t = threads(p, p.time);
        t.waits_for = blocked;
        f.mysql = Some(t);
        f.private = p.info.clone();
        findings.push(f);
    }
    if let (Some(n), Some(max)) = (s.threads_connected, s.max_connections) {
        let pct = (n * 100).checked_div(max).unwrap_or(100);
        if n >= max || pct >= s.connections_warn_pct {
            let mut f = Finding::new(
                ID,
                if n >= max {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                format!(
                    "{n} of max_connections={max} connections in use ({pct} %): new PHP requests fail with \"Too many connections\""
                ),
            );
            f.file = Some(s.source.clone());
            f.count = Some(n as usize);
            findings.push(f);
        }
    }
    if let Some(why) = &s.lock_waits_unknown {
        let mut f = Finding::new(
            ID,
            Severity::Unknown,
            format!("cannot read InnoDB lock waits: {why}"),
        );
        f.file = Some(s.source.clone());
        f.secondary = true;
        findings.push(f);
    }
    let state = super::state_from(&findings);
    CheckOutput { findings, state }
}

/// A server with one DA user `alice` and this MySQL snapshot (fixture builder).
pub fn fixture_server(processes: Vec<Process>, waits: Vec<LockWait>) -> Server {
    let mut s = super::socket_drift::fixture_server(
        "/usr/local/php83/sockets/alice.sock",
        &["/usr/local/php83/sockets/alice.sock"],
        crate::model::Layer::Generated,
    );
    s.evidence.mysql = Some(MysqlEvidence::Ok(MysqlState {
        source: "mariadb as da_admin via /run/mysqld/mysqld.sock".into(),
        version: Some("10.11.6-MariaDB".into()),
        processes,
        threads_connected: Some(3),
        max_connections: Some(151),
        lock_waits: Some(waits),
        lock_waits_unknown: None,
        tcp: None,
        long_query_secs: 30,
        connections_warn_pct: 90,
    }));
    s
}

/// A processlist row (fixture builder).
pub fn process(id: u64, user: &str, command: &str, time: u64, info: Option<&str>) -> Process {
    Process {
        id,
        user: user.into(),
        host: "localhost".into(),
        db: Some(user.into()),
        command: command.into(),
        time,
        state: if command == "Query" {
            "Updating".into()
        } else {
            String::new()
        },
        info: info.map(str::to_string),
        trx_secs: None,
    }
}

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "an open transaction blocks an UPDATE for 290 s",
            server: fixture_server(
                vec![
                    process(11, "alice_wp", "Sleep", 300, None),
                    process(
                        12,
                        "alice_wp",
                        "Query",
                        290,
                        Some("UPDATE wp_options SET option_value='x'"),
                    ),
                ],
                vec![LockWait {
                    waiting: 12,
                    blocking: 11,
                    wait_secs: 290,
                }],
            ),
            triggers: true,
        },
        super::Fixture {
            name: "a query running for 120 s",
            server: fixture_server(
                vec![process(20, "alice_wp", "Query", 120, Some("SELECT SLEEP(500)"))],
                vec![],
            ),
            triggers: true,
        },
        super::Fixture {
            name: "a short idle Sleep connection (a pooled PHP connection)",
            server: fixture_server(vec![process(13, "alice_wp", "Sleep", 3, None)], vec![]),
            triggers: false,
        },
        super::Fixture {
            name: "a replication thread running for days",
            server: fixture_server(
                vec![process(1, "system user", "Slave_SQL", 900_000, None)],
                vec![],
            ),
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_wait_names_both_threads_and_keeps_the_query_private() {
        let s = &fixtures()[0].server;
        let out = check(
            s,
            &super::super::Context {
                drift: &super::super::socket_drift::run(s),
            },
        );
        let lw = out
            .findings
            .iter()
            .find(|f| f.mysql.as_ref().is_some_and(|m| !m.blocking.is_empty()))
            .unwrap();
        assert_eq!(lw.severity, Severity::Critical);
        assert_eq!(lw.user.as_deref(), Some("alice"));
        let m = lw.mysql.as_ref().unwrap();
        assert_eq!((m.thread, m.blocking.clone()), (11, vec![12]));
        let q = out
            .findings
            .iter()
            .find(|f| f.mysql.as_ref().is_some_and(|m| m.thread == 12))
            .unwrap();
        assert_eq!(q.mysql.as_ref().unwrap().waits_for, Some(11));
        assert_eq!(
            q.private.as_deref(),
            Some("UPDATE wp_options SET option_value='x'")
        );
        assert!(!q.message.contains("UPDATE"), "query text only in `private`");
        let mut fs = out.findings.clone();
        super::super::strip_private(&mut fs);
        assert!(fs.iter().all(|f| f.private.is_none()));
    }

    #[test]
    fn a_scoped_scan_sees_only_its_own_database_users() {
        let mut s = fixture_server(
            vec![process(30, "bob_shop", "Query", 500, Some("SELECT 1"))],
            vec![],
        );
        assert_eq!(
            run(
                &s,
                match &s.evidence.mysql {
                    Some(MysqlEvidence::Ok(x)) => x,
                    _ => unreachable!(),
                }
            )
            .findings
            .len(),
            1
        );
        s.scoped = true;
        let st = match &s.evidence.mysql {
            Some(MysqlEvidence::Ok(x)) => x.clone(),
            _ => unreachable!(),
        };
        assert!(run(&s, &st).findings.is_empty(), "bob is not alice");
    }

    #[test]
    fn connection_table_and_unreadable() {
        let mut s = fixture_server(vec![], vec![]);
        if let Some(MysqlEvidence::Ok(x)) = &mut s.evidence.mysql {
            x.threads_connected = Some(151);
        }
        let st = match &s.evidence.mysql {
            Some(MysqlEvidence::Ok(x)) => x.clone(),
            _ => unreachable!(),
        };
        assert_eq!(run(&s, &st).findings[0].severity, Severity::Critical);
        s.evidence.mysql = Some(MysqlEvidence::Unreadable {
            source: "mariadb".into(),
            reason: "ERROR 1045".into(),
        });
        let out = check(
            &s,
            &super::super::Context {
                drift: &super::super::socket_drift::run(&s),
            },
        );
        assert_eq!(out.state, CheckState::Unknown);
        assert!(out.findings[0].secondary);
    }
}
