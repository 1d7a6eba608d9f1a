//! `fastcgi-timeout`: requests nginx gave up on because PHP did not answer
//! within `fastcgi_read_timeout` (errno 110 *while reading* from upstream:
//! a 504), set against the timeout in force for that domain's PHP location
//! and PHP-FPM's own limits.

use super::{CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::logread::{format_time, SourceState};
use crate::evidence::nginx_log::{status_of, Class, ErrorEvent};
use crate::evidence::php::IniState;
use crate::model::{
    Handler, HandlerKind, Layer, Level, Location, ReadTimeout, Server, Target, DEFAULT_READ_TIMEOUT_MS,
};
use crate::probe::Endpoint;
use std::collections::BTreeMap;

pub const ID: &str = "fastcgi-timeout";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "PHP slower than nginx's fastcgi_read_timeout (504)",
    what: "Finds `upstream timed out (110: Connection timed out) while reading response header from upstream` \
in the nginx error logs of the window, and for each domain names the `fastcgi_read_timeout` in force for its PHP \
location (a location's own setting shadows the server's, which shadows http's; nginx's default is 60 s), traced to \
the file that writes it (a `.cust_nginx` line rather than its generated copy). It also reads the pool's \
`request_terminate_timeout` and `max_execution_time` (pool `php_admin_value`/`php_value`, else php.ini) and says \
when they are lower.",
    why: "nginx answers 504 and drops the request while the PHP worker keeps running: slow scripts hold workers, \
the pool fills up and the site starts answering 502. A 110 on *connect* is a different failure (the backend never \
accepted) and is not counted here.",
    example: "`upstream timed out (110: Connection timed out) while reading response header from upstream` × 12 on \
shop.test; fastcgi_read_timeout 30s at shop.test.cust_nginx:3.",
    fix: "Find the slow script (PHP-FPM's slowlog, `request_slowlog_timeout`) and make it faster. As a \
*mitigation*, raise `fastcgi_read_timeout` in the domain's `.cust_nginx` (survives DA's rewrite): inside the PHP \
location when that location comes from the `.cust_nginx`, else at server level (DA inlines `.cust_nginx` at the top \
of the server block); an existing line is edited in place, never duplicated.",
    fix_safety: "`confirm`: a longer timeout hides slowness and lets more workers hang. Manual when the PHP location \
sets its own timeout in a file DA regenerates (a server-level line would be shadowed), or when the domain has no \
`.cust_nginx` yet.",
};

/// A read timeout (not a connect timeout) in the nginx logs.
fn is_read_timeout(e: &ErrorEvent) -> bool {
    e.class == Class::Timeout && !e.line.text.contains("while connecting to upstream")
}

/// The domain's nginx PHP handler that served `upstream` (else its first live one).
pub fn handler_for<'a>(
    server: &'a Server,
    domain: &str,
    upstream: Option<&str>,
) -> Option<(&'a str, &'a Handler)> {
    let sock = upstream.map(|u| u.strip_prefix("unix:").unwrap_or(u));
    for u in &server.users {
        for d in u.domains.iter().filter(|d| d.name == domain) {
            let hs: Vec<&Handler> = d
                .vhosts
                .iter()
                .flat_map(|v| v.handlers.iter())
                // A custom handler DA has not inlined yet serves nothing.
                .filter(|h| {
                    h.kind == HandlerKind::Nginx
                        && !h.shadowed
                        && !(h.layer == Layer::Custom && h.generated_copies.is_empty())
                })
                .collect();
            let same = |h: &&Handler| match (&h.target, sock) {
                (Target::Endpoint(Endpoint::Unix(p)), Some(s)) => p == s,
                (Target::Endpoint(Endpoint::Tcp { host, port }), Some(s)) => format!("{host}:{port}") == s,
                _ => false,
            };
            if let Some(h) = hs.iter().find(|h| same(h)).or(hs.first()) {
                return Some((u.name.as_str(), h));
            }
        }
    }
    None
}

/// Seconds for messages: `2 s`, `1.5 s`.
pub fn secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// PHP's `request_terminate_timeout` syntax (`30`, `30s`, `5m`, `1h`, `1d`) in seconds.
fn fpm_secs(v: &str) -> Option<u64> {
    let v = v.trim();
    let (n, mult) = match v.chars().last()? {
        's' => (&v[..v.len() - 1], 1),
        'm' => (&v[..v.len() - 1], 60),
        'h' => (&v[..v.len() - 1], 3600),
        'd' => (&v[..v.len() - 1], 86400),
        _ => (v, 1),
    };
    n.trim().parse::<u64>().ok().map(|n| n * mult)
}

/// The last `key = value` of an ini text that is not commented out.
pub fn ini_value(text: &str, key: &str) -> Option<(u32, String)> {
    let mut out = None;
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.starts_with(';') || l.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            if k.trim() == key {
                let v = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"')
                    .to_string();
                out = Some((i as u32 + 1, v));
            }
        }
    }
    out
}

/// PHP-side limits for the pool behind `socket`: (what, seconds, where).
fn php_limits(server: &Server, user: &str, socket: Option<&str>) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    let pool = server
        .users
        .iter()
        .filter(|u| u.name == user)
        .flat_map(|u| u.pools.iter())
        .find(|p| socket.is_some() && p.listen.as_deref() == socket);
    let mut digits = None;
    if let Some(p) = pool {
        digits = Some(p.version_digits.clone());
        let get = |k: &str| {
            p.settings
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if let Some(s) = get("request_terminate_timeout")
            .and_then(|v| fpm_secs(&v))
            .filter(|s| *s > 0)
        {
            out.push((
                "request_terminate_timeout".into(),
                s,
                format!("pool [{}] in {}", p.name, p.file),
            ));
        }
        for k in [
            "php_admin_value[max_execution_time]",
            "php_value[max_execution_time]",
        ] {
            if let Some(s) = get(k).and_then(|v| v.trim().parse::<u64>().ok()) {
                if s > 0 {
                    out.push((
                        "max_execution_time".into(),
                        s,
                        format!("{k} in pool [{}] {}", p.name, p.file),
                    ));
                }
                return out;
            }
        }
    }
    // php.ini (and the scan dir, read after it) of the pool's version.
    let slots = server.evidence.php.as_deref().unwrap_or(&[]);
    let sp = slots
        .iter()
        .find(|s| digits.as_deref().is_none_or(|d| s.release.replace('.', "") == d));
    if let Some(sp) = sp {
        let mut found = None;
        for f in &sp.ini {
            if let IniState::Ok { text } = &f.state {
                if let Some((line, v)) = ini_value(text, "max_execution_time") {
                    found = Some((v, format!("{}:{line}", f.path)));
                }
            }
        }
        if let Some((s, at)) = found.and_then(|(v, at)| Some((v.parse::<u64>().ok()?, at))) {
            if s > 0 {
                out.push(("max_execution_time".into(), s, at));
            }
        }
    }
    out
}

fn loc_text(l: &Location) -> String {
    format!("{}:{}", l.file.rsplit('/').next().unwrap_or(&l.file), l.line)
}

/// Registry entry point.
pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    let Some(logs) = &server.evidence.nginx else {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    };
    let mut groups: BTreeMap<(Option<String>, Option<String>), Vec<&ErrorEvent>> = BTreeMap::new();
    for e in logs
        .errors
        .iter()
        .filter(|e| e.time >= server.evidence.since && is_read_timeout(e))
    {
        groups
            .entry((e.domain.clone(), e.upstream.clone()))
            .or_default()
            .push(e);
    }
    let mut findings = Vec::new();
    for ((domain, upstream), events) in groups {
        let last = events.iter().max_by_key(|e| e.time).expect("non-empty");
        let first = events.iter().map(|e| e.time).min().unwrap_or(last.time);
        let found = domain
            .as_deref()
            .and_then(|d| handler_for(server, d, upstream.as_deref()));
        let socket = upstream
            .as_deref()
            .map(|u| u.strip_prefix("unix:").unwrap_or(u).to_string());
        let timeout: Option<&ReadTimeout> = found.and_then(|(_, h)| h.read_timeout.as_ref());
        let ms = timeout.map(|t| t.millis).unwrap_or(DEFAULT_READ_TIMEOUT_MS);
        let where_ = match (found, timeout) {
            (_, Some(t)) => format!(
                "fastcgi_read_timeout {} set at {} level in {} ({})",
                secs(t.millis),
                match t.level {
                    Level::Location => "location",
                    Level::Server => "server",
                    Level::Http => "http",
                },
                loc_text(&t.at),
                t.layer.as_str()
            ),
            (Some(_), None) => format!(
                "no fastcgi_read_timeout is set: nginx's default {} applies",
                secs(ms)
            ),
            (None, None) => format!(
                "the domain's PHP location was not found in the configs: assuming nginx's default {}",
                secs(ms)
            ),
        };
        let mut statuses = BTreeMap::new();
        for e in &events {
            *statuses.entry(status_of(e, &logs.access).0).or_insert(0) += 1;
        }
        let mut limits = String::new();
        if let Some((user, _)) = found {
            for (what, s, at) in php_limits(server, user, socket.as_deref()) {
                // Lower than the timeout now, or than the 300 s a repair proposes.
                if s * 1000 < ms.max(300_000) {
                    let note = if what == "max_execution_time" {
                        " (on Linux it counts CPU time, not time spent waiting)"
                    } else {
                        ""
                    };
                    limits.push_str(&format!(
                        " PHP's {what} is {s} s ({at}){note}: below nginx's timeout or a raised one, PHP stops the script first (a 502, not a 504)."
                    ));
                }
            }
        }
        let mut f = Finding::new(
            ID,
            Severity::Warning,
            format!(
                "{} request(s) to {} got no answer from PHP within {}: {where_}. The slow script is the cause; a longer timeout is only a mitigation.{limits}",
                events.len(),
                upstream.as_deref().unwrap_or("PHP"),
                secs(ms)
            ),
        );
        f.user = found.map(|(u, _)| u.to_string()).or_else(|| {
            domain
                .as_deref()
                .and_then(|d| server.owner_of(d))
                .map(str::to_string)
        });
        f.domain = domain.clone();
        f.socket = socket;
        match timeout {
            Some(t) => {
                f.file = Some(t.at.file.clone());
                f.line = Some(t.at.line);
                f.text = Some(t.at.text.clone());
                f.span = Some((t.at.start, t.at.end));
                f.layer = Some(t.layer.as_str());
                f.generated_copies = t
                    .generated_copy
                    .iter()
                    .map(|l| super::Evidence {
                        file: l.file.clone(),
                        line: l.line,
                        text: l.text.clone(),
                    })
                    .collect();
            }
            None => {
                if let Some((_, h)) = found {
                    f.file = Some(h.source.file.clone());
                    f.line = Some(h.source.line);
                    f.text = Some(h.source.text.clone());
                    f.layer = Some(h.layer.as_str());
                }
            }
        }
        f.log_line = Some(last.line.text.clone());
        f.count = Some(events.len());
        f.first_seen = Some(format_time(first));
        f.last_seen = Some(format_time(last.time));
        f.statuses = statuses;
        findings.push(f);
    }
    let unreadable = logs
        .sources
        .iter()
        .all(|s| matches!(s.state, SourceState::Missing | SourceState::Unreadable { .. }));
    let state = if !findings.is_empty() {
        CheckState::Finding
    } else if unreadable {
        CheckState::Unknown
    } else {
        CheckState::Ok
    };
    CheckOutput { findings, state }
}

/// a.test of user alice served by a generated PHP location whose timeout is
/// `timeout` (fixture builder), with `log` in its error log.
pub fn fixture(log: &str, timeout: Option<(u64, Level, Layer)>) -> Server {
    use crate::model::{Domain, PhpSlot, User, Vhost};
    let mut s = super::log_triage::fixture_server(log);
    s.php = vec![PhpSlot {
        slot: 1,
        release: "8.3".into(),
        mode: "php-fpm".into(),
        prefix: "/usr/local/php83".into(),
    }];
    let gen = "/usr/local/directadmin/data/users/alice/nginx_php.conf";
    let cust = "/usr/local/directadmin/data/users/alice/domains/a.test.cust_nginx";
    let read_timeout = timeout.map(|(secs, level, layer)| {
        let text = format!("fastcgi_read_timeout {secs}s;");
        ReadTimeout {
            millis: secs * 1000,
            level,
            at: Location {
                file: if layer == Layer::Custom { cust } else { gen }.into(),
                line: 1,
                start: 0,
                end: text.len(),
                text,
            },
            layer,
            generated_copy: None,
        }
    });
    let sock = "/usr/local/php83/sockets/alice.sock";
    let h = Handler {
        kind: HandlerKind::Nginx,
        raw_target: format!("unix:{sock}"),
        target: Target::Endpoint(Endpoint::Unix(sock.into())),
        source: Location {
            file: gen.into(),
            line: 8,
            text: format!("fastcgi_pass unix:{sock};"),
            start: 200,
            end: 200 + sock.len() + 19,
        },
        layer: Layer::Generated,
        generated_copies: vec![],
        location: Some("~ \\.php$".into()),
        shadowed: false,
        webapps: false,
        read_timeout,
    };
    s.users.push(User {
        name: "alice".into(),
        creator: None,
        usertype: None,
        pools: vec![],
        stray_vhosts: vec![],
        domains: vec![Domain {
            name: "a.test".into(),
            parent: None,
            php_select: None,
            php_select_at: None,
            nginx_only: false,
            aliases: vec![],
            vhosts: vec![Vhost {
                server_names: vec!["a.test".into()],
                https: false,
                file: "/usr/local/directadmin/data/users/alice/nginx.conf".into(),
                line: 1,
                handlers: vec![h],
                proxies: false,
                proxy_targets: vec![],
            }],
            cust_nginx: Some(crate::model::CustTail::of(cust, b"client_max_body_size 64m;\n")),
        }],
    });
    s
}

const READ_110: &str = "2026/11/24 20:10:44 [error] 9#9: *7 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 1.2.3.4, server: a.test, request: \"GET /slow.php HTTP/1.1\", upstream: \"fastcgi://unix:/usr/local/php83/sockets/alice.sock:\", host: \"a.test\"";

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "read timeout with fastcgi_read_timeout 2s in .cust_nginx",
            server: fixture(READ_110, Some((2, Level::Server, Layer::Custom))),
            triggers: true,
        },
        super::Fixture {
            name: "read timeout with nginx's default",
            server: fixture(READ_110, None),
            triggers: true,
        },
        super::Fixture {
            name: "errno 110 on connect() to a TCP backend (not a read timeout)",
            server: fixture("2026/11/24 20:10:44 [error] 9#9: *5 connect() to 10.0.0.5:9000 failed (110: Connection timed out) while connecting to upstream, client: 1.2.3.4, server: a.test, request: \"GET /index.php HTTP/1.1\", upstream: \"fastcgi://10.0.0.5:9000\", host: \"a.test\"", None),
            triggers: false,
        },
        super::Fixture {
            name: "a proxy_read_timeout-like line for a static file",
            server: fixture("2026/11/24 20:10:44 [error] 9#9: *5 open() \"/home/a/public_html/slow.html\" failed (2: No such file or directory), client: 1.2.3.4, server: a.test", None),
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_effective_timeout_and_its_file() {
        let s = fixture(READ_110, Some((2, Level::Server, Layer::Custom)));
        let out = check(&s, &dummy_ctx());
        let f = &out.findings[0];
        assert_eq!(f.domain.as_deref(), Some("a.test"));
        assert_eq!(f.user.as_deref(), Some("alice"));
        assert_eq!(f.socket.as_deref(), Some("/usr/local/php83/sockets/alice.sock"));
        assert!(f.file.as_deref().unwrap().ends_with(".cust_nginx"));
        assert_eq!(f.layer, Some("custom"));
        assert_eq!(f.statuses.get(&504), Some(&1));
        assert!(f.message.contains("within 2 s"), "{}", f.message);
        let s = fixture(READ_110, None);
        let f = &check(&s, &dummy_ctx()).findings[0];
        assert!(f.message.contains("default 60 s"), "{}", f.message);
    }

    #[test]
    fn mentions_lower_php_limits() {
        let mut s = fixture(READ_110, Some((300, Level::Location, Layer::Custom)));
        s.users[0].pools.push(crate::model::Pool {
            name: "alice".into(),
            version_digits: "83".into(),
            file: "/usr/local/directadmin/data/users/alice/php/php-fpm83.conf".into(),
            line: 1,
            listen: Some("/usr/local/php83/sockets/alice.sock".into()),
            listen_owner: None,
            listen_group: None,
            listen_mode: None,
            settings: vec![("request_terminate_timeout".into(), "30s".into())],
        });
        let f = &check(&s, &dummy_ctx()).findings[0];
        assert!(
            f.message.contains("request_terminate_timeout is 30 s"),
            "{}",
            f.message
        );
    }

    #[test]
    fn time_and_ini_syntax() {
        assert_eq!(fpm_secs("5m"), Some(300));
        assert_eq!(fpm_secs("0"), Some(0));
        assert_eq!(
            ini_value(
                "max_execution_time = 30\n;max_execution_time = 5\n",
                "max_execution_time"
            ),
            Some((1, "30".into()))
        );
        assert_eq!(secs(1500), "1.5 s");
    }

    fn dummy_ctx() -> super::super::Context<'static> {
        static DRIFT: std::sync::OnceLock<super::super::socket_drift::Output> = std::sync::OnceLock::new();
        super::super::Context {
            drift: DRIFT.get_or_init(|| super::super::socket_drift::run(&Server::default())),
        }
    }
}
