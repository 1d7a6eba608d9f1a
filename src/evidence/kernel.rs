//! The kernel's log of OOM kills: `dmesg` (live root only), `journalctl -k`
//! (when installed), `/var/log/kern.log`, `/var/log/messages`. A source that
//! exists but cannot be read, or a journal that returns nothing, is evidence
//! of nothing: the check reports it as a secondary *unknown*.

use super::logread::{self, LogLine, Source, SourceState};
use crate::readers::Fs;
use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

/// One process the kernel's OOM killer killed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OomKill {
    /// Unix time, when the line carries one (or boot time is known).
    pub time: Option<i64>,
    pub pid: Option<u32>,
    /// The process name the kernel gives (`php-fpm83`, `mysqld`).
    pub process: String,
    /// The cgroup the victim ran in (`task_memcg=`), when printed.
    pub memcg: Option<String>,
    pub line: LogLine,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelLog {
    pub sources: Vec<Source>,
    pub kills: Vec<OomKill>,
    /// Unix time of the boot, for `[12345.678]` timestamps.
    pub boot_time: Option<i64>,
}

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("valid regex"))
}

/// The wall-clock time at the start of a line: journalctl `short-unix`
/// (`1732475444.123456 host kernel: …`), rsyslog ISO 8601
/// (`2026-11-24T20:10:44.123456+01:00 host kernel: …`) or classic syslog
/// (`Nov 24 20:10:44 host kernel: …`, no year or zone: `year` and UTC assumed).
pub fn wall_time(line: &str, year: i64) -> Option<i64> {
    static UNIX: OnceLock<Regex> = OnceLock::new();
    static ISO: OnceLock<Regex> = OnceLock::new();
    static SYSLOG: OnceLock<Regex> = OnceLock::new();
    if let Some(c) = re(&UNIX, r"^(\d{9,11})\.\d+ ").captures(line) {
        return c[1].parse().ok();
    }
    if let Some(c) = re(
        &ISO,
        r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|([+-])(\d{2}):?(\d{2}))",
    )
    .captures(line)
    {
        let n = |i: usize| c.get(i).map(|m| m.as_str()).unwrap_or("0");
        let local = logread::unix_of(
            n(1).parse().ok()?,
            n(2).parse().ok()?,
            n(3).parse().ok()?,
            n(4).parse().ok()?,
            n(5).parse().ok()?,
            n(6).parse().ok()?,
        );
        let off = if &c[7] == "Z" {
            0
        } else {
            (n(9).parse::<i64>().ok()? * 3600 + n(10).parse::<i64>().ok()? * 60)
                * if n(8) == "-" { -1 } else { 1 }
        };
        return Some(local - off);
    }
    let c = re(&SYSLOG, r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ").captures(line)?;
    Some(logread::unix_of(
        year,
        logread::month_number(&c[1])?,
        c[2].parse().ok()?,
        c[3].parse().ok()?,
        c[4].parse().ok()?,
        c[5].parse().ok()?,
    ))
}

/// `[12345.678901]`: seconds since boot.
pub fn monotonic(line: &str) -> Option<f64> {
    static MONO: OnceLock<Regex> = OnceLock::new();
    re(&MONO, r"\[ *(\d+\.\d+)\]").captures(line)?[1].parse().ok()
}

/// The time of a kernel line: its wall clock, else boot time + its monotonic stamp.
pub fn line_time(line: &str, boot_time: Option<i64>, year: i64) -> Option<i64> {
    wall_time(line, year).or_else(|| Some(boot_time? + monotonic(line)? as i64))
}

/// Parses the two shapes current kernels print for one kill:
/// `Out of memory: Killed process 1234 (php-fpm83) total-vm:…` (also
/// `Memory cgroup out of memory: …`, and the older `Killed process …` /
/// `Kill process … or sacrifice child`) and
/// `oom-kill:constraint=…,task_memcg=…,task=php-fpm8.2,pid=1234,uid=…`.
pub fn parse_kill(line: &LogLine, boot_time: Option<i64>, year: i64) -> Option<OomKill> {
    static KILLED: OnceLock<Regex> = OnceLock::new();
    static SUMMARY: OnceLock<Regex> = OnceLock::new();
    let t = &line.text;
    let time = line_time(t, boot_time, year);
    if let Some(c) = re(&KILLED, r"Kill(?:ed)? process (\d+) \(([^)]*)\)").captures(t) {
        return Some(OomKill {
            time,
            pid: c[1].parse().ok(),
            process: c[2].to_string(),
            memcg: None,
            line: line.clone(),
        });
    }
    let c = re(&SUMMARY, r"oom-kill:(\S*)").captures(t)?;
    let fields = &c[1];
    let get = |k: &str| {
        fields
            .split(',')
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    Some(OomKill {
        time,
        pid: get("pid").and_then(|p| p.parse().ok()),
        process: get("task")?,
        memcg: get("task_memcg"),
        line: line.clone(),
    })
}

/// One kill per pid: the summary line and the `Killed process` line of the
/// same kill are merged (the latter quoted, the cgroup kept).
pub fn merge(kills: Vec<OomKill>) -> Vec<OomKill> {
    let mut out: Vec<OomKill> = Vec::new();
    for k in kills {
        let same = out.iter_mut().find(|o| {
            o.pid.is_some()
                && o.pid == k.pid
                && o.process == k.process
                && match (o.time, k.time) {
                    (Some(a), Some(b)) => (a - b).abs() <= 5,
                    _ => true,
                }
        });
        match same {
            Some(o) => {
                if o.memcg.is_none() {
                    o.memcg = k.memcg.clone();
                }
                if k.line.text.contains("process") && !o.line.text.contains("process") {
                    o.line = k.line;
                }
            }
            None => out.push(k),
        }
    }
    out
}

/// `btime` from `/proc/stat`.
pub fn boot_time(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// What to read and run.
pub struct KernelSources<'a> {
    pub files: Vec<&'a str>,
    pub proc_stat: &'a str,
    /// (name, argv) of commands whose output is a kernel log.
    pub commands: Vec<(String, Vec<String>)>,
    pub timeout: std::time::Duration,
    pub now: i64,
}

pub fn collect(fs: &Fs, src: &KernelSources, limits: logread::Limits) -> KernelLog {
    let mut out = KernelLog {
        boot_time: fs
            .read(src.proc_stat)
            .ok()
            .flatten()
            .and_then(|b| boot_time(&String::from_utf8_lossy(&b))),
        ..Default::default()
    };
    let year = logread::format_time(src.now)[..4].parse().unwrap_or(1970);
    let bt = out.boot_time;
    let time_of = move |l: &str| line_time(l, bt, year);
    let mut kills = Vec::new();
    for (name, argv) in &src.commands {
        match super::run_capture(argv, src.timeout, limits.max_bytes) {
            Ok(text) => {
                let mut n = 0;
                for (i, l) in text.lines().enumerate() {
                    if l.is_empty() {
                        continue;
                    }
                    n += 1;
                    if let (Some(s), Some(t)) = (limits.since, time_of(l)) {
                        if t < s {
                            continue;
                        }
                    }
                    let line = LogLine {
                        file: name.clone(),
                        offset: i as u64,
                        text: l.to_string(),
                    };
                    kills.extend(parse_kill(&line, bt, year));
                }
                out.sources.push(Source {
                    file: name.clone(),
                    state: if n == 0 {
                        SourceState::Empty
                    } else {
                        SourceState::Ok { lines: n }
                    },
                });
            }
            Err(reason) => out.sources.push(Source {
                file: name.clone(),
                state: SourceState::Unreadable { reason },
            }),
        }
    }
    for f in &src.files {
        let (lines, sources) = logread::read_recent(fs, f, limits, &time_of);
        out.sources.extend(sources);
        for l in &lines {
            kills.extend(parse_kill(l, bt, year));
        }
    }
    out.kills = merge(kills);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str) -> LogLine {
        LogLine {
            file: "dmesg".into(),
            offset: 0,
            text: t.into(),
        }
    }

    // Lines in the formats current kernels (5.x/6.x) print, captured from
    // real OOM kills; pids, hosts and cgroups changed.
    const DMESG_KILLED: &str = "[1234567.890123] Out of memory: Killed process 48211 (php-fpm83) total-vm:812344kB, anon-rss:612008kB, file-rss:0kB, shmem-rss:2048kB, UID:1001 pgtables:1404kB oom_score_adj:0";
    const DMESG_SUMMARY: &str = "[1234567.889001] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/php-fpm83.service,task=php-fpm83,pid=48211,uid=1001";
    const JOURNAL_MYSQL: &str = "1732475444.123456 server kernel: Out of memory: Killed process 912 (mysqld) total-vm:2412344kB, anon-rss:1612008kB, file-rss:0kB, shmem-rss:0kB, UID:27 pgtables:4404kB oom_score_adj:0";
    const KERNLOG_ISO: &str = "2026-11-24T20:10:44.123456+01:00 server kernel: [1234567.890123] Memory cgroup out of memory: Killed process 5150 (php-fpm8.2) total-vm:300000kB, anon-rss:200000kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:600kB oom_score_adj:0";
    const KERNLOG_SYSLOG: &str = "Nov 24 20:10:44 server kernel: [1234567.889001] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/system.slice/php-fpm82.service,task_memcg=/system.slice/php-fpm82.service,task=php-fpm8.2,pid=5150,uid=33";

    #[test]
    fn parses_both_kill_lines_and_merges_them() {
        let boot = 1_700_000_000;
        let a = parse_kill(&line(DMESG_SUMMARY), Some(boot), 2026).unwrap();
        let b = parse_kill(&line(DMESG_KILLED), Some(boot), 2026).unwrap();
        assert_eq!(a.process, "php-fpm83");
        assert_eq!(a.pid, Some(48211));
        assert_eq!(a.memcg.as_deref(), Some("/system.slice/php-fpm83.service"));
        assert_eq!(b.time, Some(boot + 1_234_567));
        let m = merge(vec![a, b]);
        assert_eq!(m.len(), 1);
        assert!(m[0].line.text.contains("Killed process 48211"));
        assert!(m[0].memcg.is_some());
    }

    #[test]
    fn wall_clock_prefixes_win_over_monotonic() {
        let k = parse_kill(&line(KERNLOG_ISO), Some(0), 2026).unwrap();
        assert_eq!(k.time, Some(logread::unix_of(2026, 11, 24, 19, 10, 44)));
        assert_eq!(k.process, "php-fpm8.2");
        let k = parse_kill(&line(KERNLOG_SYSLOG), None, 2026).unwrap();
        assert_eq!(k.time, Some(logread::unix_of(2026, 11, 24, 20, 10, 44)));
        assert_eq!(k.process, "php-fpm8.2");
        let k = parse_kill(&line(JOURNAL_MYSQL), None, 2026).unwrap();
        assert_eq!(k.time, Some(1_732_475_444));
        assert_eq!(k.process, "mysqld");
    }

    #[test]
    fn older_kernel_and_non_kill_lines() {
        let k = parse_kill(
            &line("[  812.123456] Out of memory: Kill process 777 (php-fpm) score 901 or sacrifice child"),
            Some(100),
            2026,
        )
        .unwrap();
        assert_eq!(
            (k.pid, k.process.as_str(), k.time),
            (Some(777), "php-fpm", Some(912))
        );
        for t in [
            "[  812.0] php-fpm83 invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0",
            "[  812.0] oom_reaper: reaped process 777 (php-fpm), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
            "random",
        ] {
            assert!(parse_kill(&line(t), None, 2026).is_none(), "{t}");
        }
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1_700_000_000));
    }
}
