//! MySQL / MariaDB state for `mysql-stall`: the processlist, connection
//! counts and InnoDB lock waits, read through the `mariadb`/`mysql` client.
//! DA's credentials go only into a 0600 `--defaults-extra-file` inside a
//! private (0700) temp dir: never on a command line (`ps` shows it) or in
//! the environment (`/proc/<pid>/environ`).

use super::cmd;
use crate::config::Config;
use crate::readers::{kv, Fs};
use serde::Serialize;
use std::io::Write;
use std::time::Duration;

/// One row of the processlist.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub id: u64,
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    pub command: String,
    pub time: u64,
    pub state: String,
    /// Query text, first 200 characters. Admin-only: checks put it in
    /// `Finding::private`, never in a message.
    pub info: Option<String>,
    /// Age of the thread's open InnoDB transaction, seconds.
    pub trx_secs: Option<u64>,
}

/// Thread `waiting` waits for a lock held by thread `blocking`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockWait {
    pub waiting: u64,
    pub blocking: u64,
    pub wait_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MysqlState {
    /// How it was read (client, socket), for evidence.
    pub source: String,
    pub version: Option<String>,
    pub processes: Vec<Process>,
    pub threads_connected: Option<u64>,
    pub max_connections: Option<u64>,
    /// `None` when no lock-wait table could be read (`lock_waits_unknown` says why).
    pub lock_waits: Option<Vec<LockWait>>,
    pub lock_waits_unknown: Option<String>,
    /// `host:port` when the connection is TCP to an IP (an upstream the firewall can ban).
    pub tcp: Option<String>,
    /// The thresholds in force (the check is pure).
    pub long_query_secs: u64,
    pub connections_warn_pct: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MysqlEvidence {
    /// Deliberately not queried (no credentials file, client off): why.
    Off {
        reason: String,
    },
    Unreadable {
        source: String,
        reason: String,
    },
    Ok(MysqlState),
}

/// DA's `mysql.conf`.
#[derive(Debug, Clone, PartialEq)]
pub struct Creds {
    pub user: String,
    pub passwd: String,
    pub host: Option<String>,
    pub port: Option<String>,
    pub socket: Option<String>,
}

pub fn parse_creds(src: &[u8]) -> Result<Creds, String> {
    let l = kv::parse(src);
    let get = |k: &str| {
        kv::get(&l, k)
            .map(|x| x.value.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Ok(Creds {
        user: get("user").ok_or("no user= line")?,
        passwd: kv::get(&l, "passwd")
            .map(|x| x.value.clone())
            .ok_or("no passwd= line")?,
        host: get("host"),
        port: get("port"),
        socket: get("socket"),
    })
}

/// One option-file value, quoted so `#`, spaces and backslashes survive.
fn quote(v: &str) -> Result<String, String> {
    if v.contains(['\n', '\r', '\0']) {
        return Err("a credential contains a line break".into());
    }
    let q = if !v.contains('"') {
        '"'
    } else if !v.contains('\'') {
        '\''
    } else {
        return Err("a credential contains both quote characters".into());
    };
    Ok(format!("{q}{}{q}", v.replace('\\', "\\\\")))
}

/// The `[client]` section of the defaults file.
pub fn defaults_text(c: &Creds, socket: Option<&str>) -> Result<String, String> {
    let mut s = format!(
        "[client]\nuser={}\npassword={}\n",
        quote(&c.user)?,
        quote(&c.passwd)?
    );
    if let Some(sock) = socket {
        s.push_str(&format!("socket={}\n", quote(sock)?));
    } else {
        if let Some(h) = &c.host {
            s.push_str(&format!("host={}\n", quote(h)?));
        }
        if let Some(p) = &c.port {
            s.push_str(&format!("port={}\n", quote(p)?));
        }
    }
    Ok(s)
}

/// A connection: the client and the credentials file's text.
pub struct Conn {
    tcp: Option<String>,
    client: String,
    defaults: String,
    timeout: Duration,
    pub source: String,
}

/// How to reach the server, or why not (`Ok(None)`: deliberately off).
pub fn connect(cfg: &Config) -> Result<Option<Conn>, (String, String)> {
    let m = &cfg.mysql;
    let default = cmd::find_in_path(&["mariadb", "mysql"]).unwrap_or_default();
    let Some(client) = crate::config::resolve_cmd(cfg.is_live_root(), &m.client, &default) else {
        return Ok(None);
    };
    let fs = Fs::new(cfg);
    let creds = match fs.read(&m.credentials) {
        Ok(Some(b)) => {
            parse_creds(&b).map_err(|e| (m.credentials.clone(), format!("{}: {e}", m.credentials)))?
        }
        Ok(None) => return Ok(None),
        Err(e) => return Err((m.credentials.clone(), e)),
    };
    let socket = m
        .socket
        .as_deref()
        .map(|s| cfg.host(s).to_string_lossy().into_owned())
        .or(creds.socket.clone());
    let defaults = defaults_text(&creds, socket.as_deref()).map_err(|e| (m.credentials.clone(), e))?;
    let source = format!(
        "{client} as {} via {}",
        creds.user,
        socket
            .clone()
            .or(creds.host.clone())
            .unwrap_or_else(|| "the client's default socket".into())
    );
    let tcp = match (&socket, &creds.host) {
        (None, Some(h)) if h.parse::<std::net::IpAddr>().is_ok() => {
            Some(format!("{h}:{}", creds.port.as_deref().unwrap_or("3306")))
        }
        _ => None,
    };
    Ok(Some(Conn {
        tcp,
        client,
        defaults,
        timeout: Duration::from_secs(m.timeout_secs.max(1)),
        source,
    }))
}

impl Conn {
    /// Runs `sql` in batch mode; rows split on tabs, batch escapes undone.
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let dir = tempfile::Builder::new()
            .prefix("fpm-doctor-mysql")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let file = dir.path().join("client.cnf");
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("temp dir: {e}"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map_err(|e| format!("defaults file: {e}"))?;
            f.write_all(self.defaults.as_bytes())
                .map_err(|e| format!("defaults file: {e}"))?;
        }
        let mut argv = cmd::argv(&self.client, &[])?;
        // --defaults-extra-file must come first.
        argv.insert(1, format!("--defaults-extra-file={}", file.display()));
        argv.extend(
            ["--batch", "--skip-column-names", "--connect-timeout=5", "-e", sql]
                .iter()
                .map(|s| s.to_string()),
        );
        let out = cmd::capture(&argv, self.timeout)?;
        if !out.ok {
            return Err(format!(
                "{}: {}",
                self.source,
                out.stderr.trim().lines().last().unwrap_or("failed")
            ));
        }
        Ok(out.stdout.lines().map(split_row).collect())
    }
}

/// One `--batch` row: tab-separated, `\t` `\n` `\\` `\0` escaped.
pub fn split_row(line: &str) -> Vec<String> {
    line.split('\t')
        .map(|f| {
            let mut out = String::new();
            let mut it = f.chars();
            while let Some(c) = it.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match it.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('0') => out.push('\0'),
                    Some(o) => out.push(o),
                    None => out.push('\\'),
                }
            }
            out
        })
        .collect()
}

const MAIN_SQL: &str = "SELECT 'V', VERSION(); \
SHOW GLOBAL STATUS LIKE 'Threads_connected'; \
SHOW GLOBAL VARIABLES LIKE 'max_connections'; \
SELECT 'T', TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE \
(TABLE_SCHEMA='information_schema' AND TABLE_NAME='INNODB_LOCK_WAITS') OR \
(TABLE_SCHEMA='performance_schema' AND TABLE_NAME='data_lock_waits'); \
SELECT 'P', ID, USER, HOST, IFNULL(DB,''), COMMAND, TIME, IFNULL(STATE,''), IFNULL(LEFT(INFO,200),'') \
FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID();";

/// Lock waits as thread ids: MariaDB's INNODB_LOCK_WAITS or MySQL 8's
/// performance_schema.data_lock_waits, both joined to INNODB_TRX.
fn lock_sql(table: &str) -> String {
    let (req, blk) = if table.starts_with("performance_schema") {
        (
            "REQUESTING_ENGINE_TRANSACTION_ID",
            "BLOCKING_ENGINE_TRANSACTION_ID",
        )
    } else {
        ("requesting_trx_id", "blocking_trx_id")
    };
    format!(
        "SELECT 'L', r.trx_mysql_thread_id, b.trx_mysql_thread_id, \
IFNULL(TIMESTAMPDIFF(SECOND, r.trx_wait_started, NOW()), 0) FROM {table} w \
JOIN information_schema.INNODB_TRX r ON r.trx_id = w.{req} \
JOIN information_schema.INNODB_TRX b ON b.trx_id = w.{blk}; \
SELECT 'X', trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, trx_started, NOW()) FROM information_schema.INNODB_TRX;"
    )
}

/// Turns the rows of both queries into a state (pure, tested on captured output).
pub fn parse_state(main: &[Vec<String>], locks: Option<Result<Vec<Vec<String>>, String>>) -> MysqlState {
    let mut s = MysqlState::default();
    let num = |v: Option<&String>| v.and_then(|x| x.trim().parse::<u64>().ok());
    for r in main {
        match r.first().map(String::as_str) {
            Some("V") => s.version = r.get(1).cloned(),
            Some("P") if r.len() >= 9 => s.processes.push(Process {
                id: num(r.get(1)).unwrap_or(0),
                user: r[2].clone(),
                host: r[3].clone(),
                db: Some(r[4].clone()).filter(|d| !d.is_empty()),
                command: r[5].clone(),
                time: num(r.get(6)).unwrap_or(0),
                state: r[7].clone(),
                info: Some(r[8..].join("\t")).filter(|i| !i.is_empty()),
                trx_secs: None,
            }),
            Some(k) if k.eq_ignore_ascii_case("Threads_connected") => s.threads_connected = num(r.get(1)),
            Some(k) if k.eq_ignore_ascii_case("max_connections") => s.max_connections = num(r.get(1)),
            _ => {}
        }
    }
    match locks {
        None => s.lock_waits_unknown = Some("no lock-wait table (INNODB_LOCK_WAITS, data_lock_waits)".into()),
        Some(Err(e)) => s.lock_waits_unknown = Some(e),
        Some(Ok(rows)) => {
            let mut waits = Vec::new();
            for r in &rows {
                match r.first().map(String::as_str) {
                    Some("L") => {
                        if let (Some(w), Some(b)) = (num(r.get(1)), num(r.get(2))) {
                            waits.push(LockWait {
                                waiting: w,
                                blocking: b,
                                wait_secs: num(r.get(3)).unwrap_or(0),
                            });
                        }
                    }
                    Some("X") => {
                        if let (Some(id), Some(age)) = (num(r.get(1)), num(r.get(2))) {
                            if let Some(p) = s.processes.iter_mut().find(|p| p.id == id) {
                                p.trx_secs = Some(age);
                            }
                        }
                    }
                    _ => {}
                }
            }
            s.lock_waits = Some(waits);
        }
    }
    s
}

/// Reads the server's state; `None` never (always says why when off).
pub fn collect(cfg: &Config) -> MysqlEvidence {
    let conn = match connect(cfg) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return MysqlEvidence::Off {
                reason: "no MySQL client configured or no credentials file".into(),
            }
        }
        Err((source, reason)) => return MysqlEvidence::Unreadable { source, reason },
    };
    let main = match conn.query(MAIN_SQL) {
        Ok(r) => r,
        Err(reason) => {
            return MysqlEvidence::Unreadable {
                source: conn.source.clone(),
                reason,
            }
        }
    };
    let table = main
        .iter()
        .filter(|r| r.first().map(String::as_str) == Some("T") && r.len() >= 3)
        .map(|r| format!("{}.{}", r[1], r[2]))
        // MariaDB's own table first.
        .min_by_key(|t| !t.starts_with("information_schema"));
    let locks = table.map(|t| conn.query(&lock_sql(&t)));
    let mut s = parse_state(&main, locks);
    s.source = conn.source.clone();
    s.tcp = conn.tcp.clone();
    s.long_query_secs = cfg.mysql.long_query_secs;
    s.connections_warn_pct = cfg.mysql.connections_warn_pct;
    MysqlEvidence::Ok(s)
}

/// `KILL <thread>` if the thread still belongs to `db_user` (ids are not
/// reused soon, but a repair may run long after the scan).
pub fn kill(cfg: &Config, thread: u64, db_user: &str) -> Result<String, String> {
    let conn = connect(cfg)
        .map_err(|(_, r)| r)?
        .ok_or("no MySQL client or credentials configured")?;
    let rows = conn.query(&format!(
        "SELECT 'U', USER FROM information_schema.PROCESSLIST WHERE ID = {thread};"
    ))?;
    match rows.iter().find(|r| r.first().map(String::as_str) == Some("U")) {
        None => return Ok(format!("thread {thread} is gone already")),
        Some(r) if r.get(1).map(String::as_str) != Some(db_user) => {
            return Err(format!(
                "thread {thread} now belongs to {}, not {db_user}: not killed",
                r.get(1).map(String::as_str).unwrap_or("?")
            ))
        }
        Some(_) => {}
    }
    conn.query(&format!("KILL {thread};"))?;
    Ok(format!("killed thread {thread} ({db_user})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_and_defaults_file_quote_safely() {
        let c = parse_creds(b"user=da_admin\npasswd=a#b\\c\"d\nhost=localhost\n").unwrap();
        assert_eq!(c.passwd, "a#b\\c\"d");
        let t = defaults_text(&c, Some("/tmp/s.sock")).unwrap();
        assert!(t.contains("password='a#b\\\\c\"d'\n"), "{t}");
        assert!(t.contains("socket=\"/tmp/s.sock\""));
        assert!(!t.contains("host="), "a socket wins over host");
        assert!(defaults_text(
            &Creds {
                passwd: "x\ny".into(),
                ..c.clone()
            },
            None
        )
        .is_err());
        assert!(parse_creds(b"passwd=x\n").is_err());
    }

    #[test]
    fn batch_rows_unescape_and_parse() {
        assert_eq!(split_row("a\\tb\tc\\\\d\\ne"), vec!["a\tb", "c\\d\ne"]);
        let main: Vec<Vec<String>> = [
            "V\t10.11.6-MariaDB",
            "Threads_connected\t3",
            "max_connections\t151",
            "T\tinformation_schema\tINNODB_LOCK_WAITS",
            "P\t11\talice_wp\tlocalhost\talice_wp\tSleep\t40\t\t",
            "P\t12\talice_wp\tlocalhost:5000\talice_wp\tQuery\t35\tUpdating\tUPDATE posts SET a=1",
        ]
        .iter()
        .map(|l| split_row(l))
        .collect();
        let locks = vec![split_row("L\t12\t11\t35"), split_row("X\t11\t41")];
        let s = parse_state(&main, Some(Ok(locks)));
        assert_eq!(s.threads_connected, Some(3));
        assert_eq!(s.max_connections, Some(151));
        assert_eq!(s.processes.len(), 2);
        assert_eq!(s.processes[0].trx_secs, Some(41));
        assert_eq!(s.processes[1].info.as_deref(), Some("UPDATE posts SET a=1"));
        assert_eq!(
            s.lock_waits,
            Some(vec![LockWait {
                waiting: 12,
                blocking: 11,
                wait_secs: 35
            }])
        );
        let s = parse_state(&main, None);
        assert!(s.lock_waits.is_none() && s.lock_waits_unknown.is_some());
    }
}
