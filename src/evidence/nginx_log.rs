//! nginx's error and access logs: the upstream failures behind 502s and the
//! status each request really got. Global `/var/log/nginx/error.log` and DA's
//! per-domain `/var/log/nginx/domains/<d>.error.log` and `<d>.log`.

use super::logread::{self, LogLine, Source};
use crate::readers::{join, Fs};
use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

/// What kind of upstream failure a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// errno 2: the socket file does not exist.
    Missing,
    /// errno 111: a socket file with nothing listening, or a closed port.
    Refused,
    /// errno 13: the worker may not open the socket.
    PermissionDenied,
    /// errno 11: the listen backlog is full (pool exhausted).
    BacklogFull,
    /// errno 110: PHP did not answer within fastcgi_read_timeout.
    Timeout,
    /// errno 110 on connect(): the upstream never accepted (a TCP backend
    /// down or filtered), not a slow script.
    ConnectTimeout,
    /// errno 104 or a premature close: the worker died mid-request.
    Reset,
    /// "Primary script unknown": a 404 from PHP-FPM, not a 502.
    ScriptUnknown,
    /// Another connect() errno.
    OtherConnect,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Missing => "missing (errno 2)",
            Class::Refused => "refused (errno 111)",
            Class::PermissionDenied => "permission denied (errno 13)",
            Class::BacklogFull => "backlog full (errno 11)",
            Class::Timeout => "timed out (errno 110)",
            Class::ConnectTimeout => "connect timed out (errno 110)",
            Class::Reset => "reset / closed by PHP (errno 104)",
            Class::ScriptUnknown => "primary script unknown",
            Class::OtherConnect => "connect failed",
        }
    }

    /// The status nginx gives the client for this failure when the access
    /// log does not say.
    pub fn default_status(self) -> u16 {
        match self {
            Class::Timeout | Class::ConnectTimeout => 504,
            Class::ScriptUnknown => 404,
            _ => 502,
        }
    }
}

/// One upstream failure from an error log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorEvent {
    /// Unix time (the log's local time converted with the offset learned from access logs).
    pub time: i64,
    pub class: Class,
    pub errno: Option<u32>,
    /// `unix:/path` or `host:port`, without nginx's `fastcgi://` and trailing `:`.
    pub upstream: Option<String>,
    pub server: Option<String>,
    pub host: Option<String>,
    pub request: Option<String>,
    /// The domain whose log it came from, or the `server:` field.
    pub domain: Option<String>,
    pub line: LogLine,
}

/// One access log entry that matters for labelling (any status).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessEvent {
    pub time: i64,
    pub domain: String,
    pub request: String,
    pub status: u16,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NginxLogs {
    pub errors: Vec<ErrorEvent>,
    pub access: Vec<AccessEvent>,
    pub sources: Vec<Source>,
    /// Requests per domain in the window (any status): how busy a site is.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hits: std::collections::BTreeMap<String, usize>,
    /// Seconds east of UTC, learned from access log lines (nginx writes the
    /// error log in local time without a zone).
    pub utc_offset: i64,
}

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("valid regex"))
}

/// `2026/11/24 20:10:44` at the start of an error log line, as naive unix time.
pub fn error_time(line: &str) -> Option<i64> {
    let b = line.as_bytes();
    if b.len() < 19 || b[4] != b'/' || b[7] != b'/' || b[10] != b' ' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| line.get(r)?.parse::<u32>().ok();
    Some(logread::unix_of(
        n(0..4)? as i64,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    ))
}

/// `[24/Nov/2026:20:10:44 +0100]` in an access log line: (UTC unix time, offset seconds).
pub fn access_time(line: &str) -> Option<(i64, i64)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let c = re(
        &RE,
        r"\[(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\]",
    )
    .captures(line)?;
    let g = |i: usize| c.get(i).map(|m| m.as_str()).unwrap_or("");
    let local = logread::unix_of(
        g(3).parse().ok()?,
        logread::month_number(g(2))?,
        g(1).parse().ok()?,
        g(4).parse().ok()?,
        g(5).parse().ok()?,
        g(6).parse().ok()?,
    );
    let off = (g(8).parse::<i64>().ok()? * 3600 + g(9).parse::<i64>().ok()? * 60)
        * if g(7) == "-" { -1 } else { 1 };
    Some((local - off, off))
}

fn field(line: &str, name: &str) -> Option<String> {
    let i = line.find(&format!(", {name}: "))? + name.len() + 4;
    let rest = &line[i..];
    if let Some(q) = rest.strip_prefix('"') {
        q.find('"').map(|e| q[..e].to_string())
    } else {
        Some(rest.split(',').next().unwrap_or("").trim().to_string())
    }
}

fn clean_upstream(u: &str) -> String {
    let u = u
        .strip_prefix("fastcgi://")
        .or_else(|| u.strip_prefix("http://"))
        .unwrap_or(u);
    u.strip_suffix(':').unwrap_or(u).to_string()
}

/// Parses one error log line into an upstream failure, if it is one.
pub fn parse_error(line: &LogLine, domain: Option<&str>, utc_offset: i64) -> Option<ErrorEvent> {
    static CONNECT: OnceLock<Regex> = OnceLock::new();
    let text = &line.text;
    let time = error_time(text)? - utc_offset;
    let (class, errno, upstream) = if let Some(c) = re(
        &CONNECT,
        r"connect\(\) to (\S+) failed \((\d+): [^)]*\) while connecting to upstream",
    )
    .captures(text)
    {
        let errno: u32 = c[2].parse().ok()?;
        let class = match errno {
            2 => Class::Missing,
            111 => Class::Refused,
            13 => Class::PermissionDenied,
            11 => Class::BacklogFull,
            110 => Class::ConnectTimeout,
            _ => Class::OtherConnect,
        };
        (class, Some(errno), Some(c[1].to_string()))
    } else if text.contains("upstream timed out (110") {
        (
            Class::Timeout,
            Some(110),
            field(text, "upstream").map(|u| clean_upstream(&u)),
        )
    } else if text.contains("(104: Connection reset by peer)") || text.contains("upstream prematurely closed")
    {
        (
            Class::Reset,
            Some(104),
            field(text, "upstream").map(|u| clean_upstream(&u)),
        )
    } else if text.contains("Primary script unknown") {
        (
            Class::ScriptUnknown,
            None,
            field(text, "upstream").map(|u| clean_upstream(&u)),
        )
    } else {
        return None;
    };
    let server = field(text, "server");
    Some(ErrorEvent {
        time,
        class,
        errno,
        upstream: upstream.map(|u| clean_upstream(&u)),
        host: field(text, "host"),
        request: field(text, "request"),
        domain: domain.map(str::to_string).or_else(|| server.clone()),
        server,
        line: line.clone(),
    })
}

/// Parses a combined-format access line: (time, request, status).
pub fn parse_access(text: &str) -> Option<(i64, i64, String, u16)> {
    let (t, off) = access_time(text)?;
    let q1 = text.find("] \"")? + 3;
    let rest = &text[q1..];
    let q2 = rest.find('"')?;
    let request = rest[..q2].to_string();
    let status = rest[q2 + 1..].split_whitespace().next()?.parse().ok()?;
    Some((t, off, request, status))
}

/// Where nginx logs live.
pub struct LogPaths<'a> {
    pub error_log: &'a str,
    pub domain_dir: &'a str,
}

/// Reads the global error log and the per-domain error and access logs of
/// `domains` within the window.
pub fn collect(fs: &Fs, paths: &LogPaths, domains: &[String], limits: logread::Limits) -> NginxLogs {
    let mut out = NginxLogs::default();
    // Access logs first: they carry the zone offset the error logs lack.
    let access_time_of = |l: &str| access_time(l).map(|(t, _)| t);
    let mut offset: Option<i64> = None;
    for d in domains {
        let (lines, sources) = logread::read_recent(
            fs,
            &join(paths.domain_dir, &format!("{d}.log")),
            limits,
            &access_time_of,
        );
        out.sources.extend(
            sources
                .into_iter()
                .filter(|s| s.state != logread::SourceState::Missing),
        );
        for l in lines {
            if let Some((time, off, request, status)) = parse_access(&l.text) {
                offset.get_or_insert(off);
                *out.hits.entry(d.clone()).or_default() += 1;
                if status >= 400 {
                    out.access.push(AccessEvent {
                        time,
                        domain: d.clone(),
                        request,
                        status,
                    });
                }
            }
        }
    }
    out.utc_offset = offset.unwrap_or(0);
    let off = out.utc_offset;
    let err_time_of = move |l: &str| error_time(l).map(|t| t - off);
    let read_errors = |path: String, domain: Option<&str>, required: bool, out: &mut NginxLogs| {
        let (lines, sources) = logread::read_recent(fs, &path, limits, &err_time_of);
        out.sources.extend(
            sources
                .into_iter()
                .filter(|s| required || s.state != logread::SourceState::Missing),
        );
        for l in &lines {
            if let Some(e) = parse_error(l, domain, off) {
                out.errors.push(e);
            }
        }
    };
    read_errors(paths.error_log.to_string(), None, true, &mut out);
    for d in domains {
        read_errors(
            join(paths.domain_dir, &format!("{d}.error.log")),
            Some(d),
            false,
            &mut out,
        );
    }
    out
}

/// The status the client got for an error event: the access log entry of the
/// same domain and request within two seconds, else the class's default.
pub fn status_of(e: &ErrorEvent, access: &[AccessEvent]) -> (u16, bool) {
    let found = access.iter().find(|a| {
        Some(&a.domain) == e.domain.as_ref()
            && Some(&a.request) == e.request.as_ref()
            && (a.time - e.time).abs() <= 2
    });
    match found {
        Some(a) => (a.status, true),
        None => (e.class.default_status(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str) -> LogLine {
        LogLine {
            file: "/var/log/nginx/error.log".into(),
            offset: 0,
            text: t.into(),
        }
    }

    #[test]
    fn classifies_every_upstream_failure() {
        let cases = [
            ("2026/11/24 20:10:44 [error] 9#9: *5 connect() to unix:/usr/local/php82/sockets/alice.sock failed (2: No such file or directory) while connecting to upstream, client: 127.0.0.1, server: alice.test, request: \"GET /index.php HTTP/1.1\", upstream: \"fastcgi://unix:/usr/local/php82/sockets/alice.sock:\", host: \"alice.test\"", Class::Missing, Some("unix:/usr/local/php82/sockets/alice.sock")),
            ("2026/11/24 20:10:44 [error] 9#9: *5 connect() to unix:/s.sock failed (111: Connection refused) while connecting to upstream, client: 1.2.3.4, server: a.test, request: \"GET / HTTP/1.1\"", Class::Refused, Some("unix:/s.sock")),
            ("2026/11/24 20:10:44 [crit] 9#9: *5 connect() to unix:/s.sock failed (13: Permission denied) while connecting to upstream, client: 1.2.3.4", Class::PermissionDenied, Some("unix:/s.sock")),
            ("2026/11/24 20:10:44 [error] 9#9: *5 connect() to unix:/s.sock failed (11: Resource temporarily unavailable) while connecting to upstream, client: 1.2.3.4", Class::BacklogFull, Some("unix:/s.sock")),
            ("2026/11/24 20:10:44 [error] 9#9: *5 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 1.2.3.4, server: a.test, request: \"GET /slow.php HTTP/1.1\", upstream: \"fastcgi://unix:/s.sock:\", host: \"a.test\"", Class::Timeout, Some("unix:/s.sock")),
            ("2026/11/24 20:10:44 [error] 9#9: *5 connect() to 10.0.0.5:9000 failed (110: Connection timed out) while connecting to upstream, client: 1.2.3.4", Class::ConnectTimeout, Some("10.0.0.5:9000")),
            ("2026/11/24 20:10:44 [error] 9#9: *5 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 1.2.3.4, upstream: \"fastcgi://unix:/s.sock:\"", Class::Reset, Some("unix:/s.sock")),
            ("2026/11/24 20:10:44 [error] 9#9: *5 upstream prematurely closed connection while reading response header from upstream, client: 1.2.3.4, upstream: \"fastcgi://127.0.0.1:9000\"", Class::Reset, Some("127.0.0.1:9000")),
            ("2026/11/24 20:10:44 [error] 9#9: *5 FastCGI sent in stderr: \"Primary script unknown\" while reading response header from upstream, client: 1.2.3.4, upstream: \"fastcgi://unix:/s.sock:\"", Class::ScriptUnknown, Some("unix:/s.sock")),
        ];
        for (text, class, up) in cases {
            let e = parse_error(&line(text), None, 0).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(e.class, class, "{text}");
            assert_eq!(e.upstream.as_deref(), up, "{text}");
        }
        let e = parse_error(&line(cases[0].0), None, 3600).unwrap();
        assert_eq!(e.time, logread::unix_of(2026, 11, 24, 19, 10, 44));
        assert_eq!(e.domain.as_deref(), Some("alice.test"));
        assert_eq!(e.request.as_deref(), Some("GET /index.php HTTP/1.1"));
    }

    #[test]
    fn look_alikes_are_not_upstream_failures() {
        for t in [
            "2026/11/24 20:10:44 [error] 9#9: *5 open() \"/var/www/favicon.ico\" failed (2: No such file or directory), client: 1.2.3.4",
            "2026/11/24 20:10:44 [notice] 9#9: signal process started",
            "garbage",
            "",
        ] {
            assert!(parse_error(&line(t), None, 0).is_none(), "{t}");
        }
    }

    #[test]
    fn access_lines_give_status_and_zone() {
        let (t, off, req, st) =
            parse_access("1.2.3.4 - - [24/Nov/2026:21:10:44 +0100] \"GET /index.php HTTP/1.1\" 502 157 \"-\" \"curl/7.88\"").unwrap();
        assert_eq!(t, logread::unix_of(2026, 11, 24, 20, 10, 44));
        assert_eq!(off, 3600);
        assert_eq!(req, "GET /index.php HTTP/1.1");
        assert_eq!(st, 502);
        assert!(parse_access("nonsense").is_none());
    }
}
