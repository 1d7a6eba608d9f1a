//! PHP-FPM evidence per configured version: the master config (`pid`,
//! `error_log`, its own pools such as webapps), the pid file, the master
//! process in procfs, its workers' RSS and PSS, `MemAvailable`, systemd's
//! view, and the FPM log's `max_children` warnings. IO only; no judgement.

use super::logread::{self, LogLine, Source};
use crate::config::{Config, Paths};
use crate::model::{Pool, Server};
use crate::readers::{fpm, join, Fs};
use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    Ok,
    Missing,
    Unreadable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PidFile {
    Missing,
    Unreadable {
        reason: String,
    },
    /// The file holds no pid.
    Invalid {
        text: String,
    },
    Pid {
        pid: u32,
    },
}

/// What procfs says about the pid of the pid file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Master {
    /// `/proc/<pid>` is a php-fpm process.
    Alive { pid: u32, cmdline: String },
    /// No such process: the pid file is stale.
    Gone { pid: u32 },
    /// The pid was reused by another program: stale too.
    NotFpm { pid: u32, comm: String },
    /// No pid to look at, or procfs unavailable.
    Unknown { reason: String },
}

/// One FPM worker (`php-fpm: pool alice`) and its memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Worker {
    pub pid: u32,
    pub pool: String,
    pub rss_kb: Option<u64>,
    pub pss_kb: Option<u64>,
}

/// `WARNING: [pool alice] server reached pm.max_children setting (5), …`
/// (dynamic) or `… server reached max_children setting (5) …` (ondemand).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaxChildren {
    /// Unix time (UTC, with the offset learned from nginx's access logs).
    pub time: i64,
    pub pool: String,
    pub limit: Option<u32>,
    pub line: LogLine,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FpmVersion {
    pub release: String,
    /// `83`.
    pub digits: String,
    pub conf_file: String,
    pub conf: FileState,
    /// `[global]` keys of the master config.
    pub global: Vec<(String, String)>,
    /// Pools defined in the master config itself (webapps).
    pub pools: Vec<Pool>,
    pub pid_file: String,
    pub pid: PidFile,
    pub master: Master,
    /// A live process titled `php-fpm: master process (<conf_file>)`, found
    /// without the pid file.
    pub master_by_title: Option<u32>,
    /// `Some(reason)` when workers could not be listed or measured.
    pub workers_unknown: Option<String>,
    pub workers: Vec<Worker>,
    /// `systemctl is-active php-fpmXY`, when systemd runs (live root only).
    pub systemd: Option<String>,
    pub log_file: String,
    pub log_sources: Vec<Source>,
    pub max_children: Vec<MaxChildren>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemInfo {
    pub total_kb: u64,
    pub available_kb: u64,
}

/// The sizing settings (from the config) the pool-exhausted check applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sizing {
    pub reserve_mb: u64,
    pub reserve_percent: u64,
    pub busy_hits: usize,
}

impl Default for Sizing {
    fn default() -> Self {
        let d = crate::config::FpmSettings::default();
        Sizing {
            reserve_mb: d.reserve_mb,
            reserve_percent: d.reserve_percent,
            busy_hits: d.busy_hits,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FpmEvidence {
    pub versions: Vec<FpmVersion>,
    pub sizing: Sizing,
    pub meminfo: Option<MemInfo>,
    /// Why `meminfo` is missing.
    pub meminfo_unknown: Option<String>,
}

impl FpmEvidence {
    pub fn version(&self, digits: &str) -> Option<&FpmVersion> {
        self.versions.iter().find(|v| v.digits == digits)
    }
}

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("valid regex"))
}

/// `[24-Nov-2026 20:10:44]` (optionally with microseconds) at the start of
/// an FPM log line, as naive unix time.
pub fn fpm_time(line: &str) -> Option<i64> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let c = re(
        &RE,
        r"^\[(\d{2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2})(?:\.\d+)?\]",
    )
    .captures(line)?;
    Some(logread::unix_of(
        c[3].parse().ok()?,
        logread::month_number(&c[2])?,
        c[1].parse().ok()?,
        c[4].parse().ok()?,
        c[5].parse().ok()?,
        c[6].parse().ok()?,
    ))
}

/// Parses a max_children warning (both wordings).
pub fn parse_max_children(line: &LogLine, utc_offset: i64) -> Option<MaxChildren> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let c = re(
        &RE,
        r"WARNING: \[pool ([^\]]+)\] server reached (?:pm\.)?max_children setting(?: \((\d+)\))?",
    )
    .captures(&line.text)?;
    Some(MaxChildren {
        time: fpm_time(&line.text)? - utc_offset,
        pool: c[1].to_string(),
        limit: c.get(2).and_then(|m| m.as_str().parse().ok()),
        line: line.clone(),
    })
}

/// One process as procfs shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    comm: String,
    /// NULs as spaces, trimmed (FPM pads its process title).
    cmdline: String,
}

fn read_text(fs: &Fs, path: &str) -> Result<Option<String>, String> {
    fs.read(path)
        .map(|o| o.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn read_proc(fs: &Fs, proc_dir: &str, pid: u32) -> Option<Proc> {
    let dir = join(proc_dir, &pid.to_string());
    let status = read_text(fs, &join(&dir, "status")).ok()??;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let cmd = fs.read(&join(&dir, "cmdline")).ok().flatten().unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmd)
        .replace('\0', " ")
        .trim()
        .to_string();
    Some(Proc {
        pid,
        ppid: field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0),
        comm: field("Name:").unwrap_or_default(),
        cmdline,
    })
}

fn is_fpm(p: &Proc) -> bool {
    p.comm.starts_with("php-fpm") || p.cmdline.starts_with("php-fpm")
}

/// Every process (or why procfs cannot be read).
fn processes(fs: &Fs, proc_dir: &str) -> Result<Vec<Proc>, String> {
    if !fs.is_dir(proc_dir) {
        return Err(format!(
            "{proc_dir} is not available here (an offline copy has no processes)"
        ));
    }
    let names = fs.list_dir(proc_dir)?;
    Ok(names
        .iter()
        .filter_map(|n| n.parse::<u32>().ok())
        .filter_map(|pid| read_proc(fs, proc_dir, pid))
        .collect())
}

/// `Rss:` and `Pss:` of `smaps_rollup`, in kB.
pub fn parse_rollup(text: &str) -> (Option<u64>, Option<u64>) {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.split_whitespace().next()?.parse::<u64>().ok())
    };
    (get("Rss:"), get("Pss:"))
}

pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(MemInfo {
        total_kb: get("MemTotal:")?,
        available_kb: get("MemAvailable:")?,
    })
}

fn global<'a>(g: &'a [(String, String)], key: &str) -> Option<&'a str> {
    g.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn systemd_state(cfg: &Config, fs: &Fs, digits: &str) -> Option<String> {
    // Only the live machine's systemd can answer for the live machine.
    if !cfg.is_live_root() || !fs.is_dir(&cfg.paths.systemd_dir) {
        return None;
    }
    let argv = vec![
        "systemctl".to_string(),
        "is-active".to_string(),
        format!("php-fpm{digits}"),
    ];
    let r = crate::apply::commands::run("systemd", &argv, std::time::Duration::from_secs(5));
    let out = r.stdout_tail.trim().to_string();
    Some(if out.is_empty() {
        format!("unknown ({})", r.summary())
    } else {
        out
    })
}

fn version(
    cfg: &Config,
    fs: &Fs,
    release: &str,
    procs: &Result<Vec<Proc>, String>,
    limits: logread::Limits,
    utc_offset: i64,
) -> FpmVersion {
    let paths: &Paths = &cfg.paths;
    let digits = release.replace('.', "");
    let conf_file = Paths::for_release(&paths.fpm_conf, release);
    let (conf, parsed) = match fs.read(&conf_file) {
        Ok(Some(src)) => (FileState::Ok, fpm::parse(&conf_file, &digits, &src)),
        Ok(None) => (FileState::Missing, fpm::FpmConf::default()),
        Err(reason) => (FileState::Unreadable { reason }, fpm::FpmConf::default()),
    };
    let prefix = paths.php_prefix_for(release);
    // FPM resolves relative `pid`/`error_log` against its prefix's var/.
    let abs = |v: &str| {
        if v.starts_with('/') {
            v.to_string()
        } else {
            join(&join(&prefix, "var"), v)
        }
    };
    let pid_file = global(&parsed.global, "pid")
        .map(abs)
        .unwrap_or_else(|| Paths::for_release(&paths.fpm_pid, release));
    let log_file = global(&parsed.global, "error_log")
        .filter(|v| *v != "syslog")
        .map(abs)
        .unwrap_or_else(|| Paths::for_release(&paths.fpm_log, release));
    let pid = match read_text(fs, &pid_file) {
        Ok(None) => PidFile::Missing,
        Err(reason) => PidFile::Unreadable { reason },
        Ok(Some(t)) => match t.trim().parse::<u32>() {
            Ok(p) if p > 0 => PidFile::Pid { pid: p },
            _ => PidFile::Invalid {
                text: t.chars().take(40).collect(),
            },
        },
    };
    let master = match (&pid, procs) {
        (PidFile::Pid { pid }, Ok(list)) => match list.iter().find(|p| p.pid == *pid) {
            None => Master::Gone { pid: *pid },
            Some(p) if is_fpm(p) => Master::Alive {
                pid: *pid,
                cmdline: p.cmdline.clone(),
            },
            Some(p) => Master::NotFpm {
                pid: *pid,
                comm: p.comm.clone(),
            },
        },
        (PidFile::Pid { .. }, Err(reason)) => Master::Unknown {
            reason: reason.clone(),
        },
        _ => Master::Unknown {
            reason: format!("no pid in {pid_file}"),
        },
    };
    let title = format!("master process ({conf_file})");
    let master_by_title = procs
        .as_ref()
        .ok()
        .and_then(|l| l.iter().find(|p| is_fpm(p) && p.cmdline.contains(&title)))
        .map(|p| p.pid);
    let master_pid = match &master {
        Master::Alive { pid, .. } => Some(*pid),
        _ => master_by_title,
    };
    let (workers, workers_unknown) = match procs {
        Err(reason) => (vec![], Some(reason.clone())),
        Ok(list) => {
            let mut ws = Vec::new();
            let mut denied = None;
            for p in list.iter().filter(|p| Some(p.ppid) == master_pid) {
                let Some(pool) = p.cmdline.strip_prefix("php-fpm: pool ") else {
                    continue;
                };
                let path = join(&join(&paths.proc_dir, &p.pid.to_string()), "smaps_rollup");
                let (rss, pss) = match read_text(fs, &path) {
                    Ok(Some(t)) => parse_rollup(&t),
                    Ok(None) => (None, None),
                    Err(e) => {
                        denied.get_or_insert(e);
                        (None, None)
                    }
                };
                ws.push(Worker {
                    pid: p.pid,
                    pool: pool.trim().to_string(),
                    rss_kb: rss,
                    pss_kb: pss,
                });
            }
            (ws, denied)
        }
    };
    let time_of = move |l: &str| fpm_time(l).map(|t| t - utc_offset);
    let (lines, log_sources) = logread::read_recent(fs, &log_file, limits, &time_of);
    let max_children = lines
        .iter()
        .filter_map(|l| parse_max_children(l, utc_offset))
        .filter(|e| limits.since.is_none_or(|s| e.time >= s))
        .collect();
    FpmVersion {
        release: release.to_string(),
        digits: digits.clone(),
        conf_file,
        conf,
        global: parsed.global,
        pools: parsed.pools,
        pid_file,
        pid,
        master,
        master_by_title,
        workers_unknown,
        workers,
        systemd: systemd_state(cfg, fs, &digits),
        log_file,
        log_sources,
        max_children,
    }
}

/// Collects FPM evidence for every configured php-fpm release.
pub fn collect(cfg: &Config, server: &Server, limits: logread::Limits, utc_offset: i64) -> FpmEvidence {
    let fs = Fs::new(cfg);
    let mut releases: Vec<String> = Vec::new();
    for s in server.php.iter().filter(|s| s.is_fpm()) {
        if !releases.contains(&s.release) {
            releases.push(s.release.clone());
        }
    }
    let procs = processes(&fs, &cfg.paths.proc_dir);
    let versions = releases
        .iter()
        .map(|r| version(cfg, &fs, r, &procs, limits, utc_offset))
        .collect();
    let meminfo_path = join(&cfg.paths.proc_dir, "meminfo");
    let (meminfo, meminfo_unknown) = match read_text(&fs, &meminfo_path) {
        Ok(Some(t)) => match parse_meminfo(&t) {
            Some(m) => (Some(m), None),
            None => (None, Some(format!("{meminfo_path} has no MemTotal/MemAvailable"))),
        },
        Ok(None) => (
            None,
            Some(format!(
                "{meminfo_path} does not exist (an offline copy has no procfs)"
            )),
        ),
        Err(e) => (None, Some(e)),
    };
    FpmEvidence {
        versions,
        sizing: Sizing {
            reserve_mb: cfg.fpm.reserve_mb,
            reserve_percent: cfg.fpm.reserve_percent,
            busy_hits: cfg.fpm.busy_hits,
        },
        meminfo,
        meminfo_unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str) -> LogLine {
        LogLine {
            file: "/var/log/php-fpm83.log".into(),
            offset: 0,
            text: t.into(),
        }
    }

    #[test]
    fn parses_both_max_children_wordings() {
        let e = parse_max_children(
            &line("[24-Nov-2026 20:10:44] WARNING: [pool alice] server reached pm.max_children setting (5), consider raising it"),
            3600,
        )
        .unwrap();
        assert_eq!(e.pool, "alice");
        assert_eq!(e.limit, Some(5));
        assert_eq!(e.time, logread::unix_of(2026, 11, 24, 19, 10, 44));
        let e = parse_max_children(
            &line("[24-Nov-2026 20:10:44.123456] WARNING: [pool bob] server reached max_children setting (10), consider raising it"),
            0,
        )
        .unwrap();
        assert_eq!((e.pool.as_str(), e.limit), ("bob", Some(10)));
        for t in [
            "[24-Nov-2026 20:10:44] NOTICE: fpm is running, pid 42",
            "[24-Nov-2026 20:10:44] WARNING: [pool alice] child 7 exited on signal 9 (SIGKILL)",
            "WARNING: [pool alice] server reached pm.max_children setting (5)",
            "",
        ] {
            assert!(parse_max_children(&line(t), 0).is_none(), "{t}");
        }
    }

    #[test]
    fn parses_rollup_and_meminfo() {
        let r = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:               30000 kB\nPss:               12000 kB\nPss_Anon: 1 kB\n";
        assert_eq!(parse_rollup(r), (Some(30000), Some(12000)));
        let m = parse_meminfo("MemTotal:  8000000 kB\nMemFree: 1 kB\nMemAvailable:    4000000 kB\n").unwrap();
        assert_eq!((m.total_kb, m.available_kb), (8_000_000, 4_000_000));
        assert!(parse_meminfo("MemTotal: 1 kB\n").is_none());
    }
}
