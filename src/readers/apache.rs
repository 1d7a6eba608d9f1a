//! Apache configs in `nginx_apache` and `apache` mode: PHP runs through
//! `AddHandler`/`SetHandler "proxy:unix:<socket>|fcgi://localhost"` inside
//! `<VirtualHost>` blocks of `data/users/<u>/httpd.conf` (and `.cust_httpd`).

use crate::model::Location;
use regex::bytes::Regex;
use std::sync::OnceLock;

/// A `proxy:unix:` handler found in an Apache file.
#[derive(Debug, Clone, PartialEq)]
pub struct ApacheHandler {
    pub at: Location,
    /// The socket path as written.
    pub socket: String,
    /// Byte span of the socket path (for edits).
    pub socket_start: usize,
    pub socket_end: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApacheVhost {
    pub server_names: Vec<String>,
    pub https: bool,
    pub line: u32,
    pub handlers: Vec<ApacheHandler>,
}

fn handler_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"proxy:unix:((?:[^|"'\s]|\|[A-Z0-9_]+\|)+)\|fcgi://"#).unwrap())
}

/// Every handler of a file, in order, whatever block it is in.
pub fn handlers(file: &str, src: &[u8]) -> Vec<ApacheHandler> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    for (i, raw) in src.split(|&b| b == b'\n').enumerate() {
        let start = pos;
        pos += raw.len() + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let trimmed_start = line.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if line[trimmed_start..].starts_with(b"#") {
            continue;
        }
        for cap in handler_re().captures_iter(line) {
            let m = cap.get(1).expect("group 1");
            let text_end = line.len() - line.iter().rev().take_while(|b| b.is_ascii_whitespace()).count();
            out.push(ApacheHandler {
                at: Location {
                    file: file.to_string(),
                    line: (i + 1) as u32,
                    text: String::from_utf8_lossy(&line[trimmed_start..text_end.max(trimmed_start)])
                        .into_owned(),
                    start: start + trimmed_start,
                    end: start + text_end.max(trimmed_start),
                },
                socket: String::from_utf8_lossy(m.as_bytes()).into_owned(),
                socket_start: start + m.start(),
                socket_end: start + m.end(),
            });
        }
    }
    out
}

/// `<VirtualHost>` blocks with their names and handlers. Handlers outside
/// any block are returned in a vhost with no names.
pub fn vhosts(file: &str, src: &[u8]) -> Vec<ApacheVhost> {
    let all = handlers(file, src);
    let text = String::from_utf8_lossy(src);
    let mut out: Vec<ApacheVhost> = Vec::new();
    let mut current: Option<ApacheVhost> = None;
    let mut outside = ApacheVhost::default();
    let mut next_handler = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let n = (i + 1) as u32;
        let line = raw.trim();
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("<virtualhost") {
            let https = line.contains(":443") || line.contains(":8081");
            current = Some(ApacheVhost {
                server_names: vec![],
                https,
                line: n,
                handlers: vec![],
            });
        } else if lower.starts_with("</virtualhost") {
            if let Some(v) = current.take() {
                out.push(v);
            }
        } else if let Some(v) = current.as_mut() {
            let mut words = line.split_whitespace();
            match words.next().map(|w| w.to_ascii_lowercase()) {
                Some(k) if k == "servername" || k == "serveralias" => v
                    .server_names
                    .extend(words.map(|w| w.trim_matches('"').to_string())),
                Some(k) if k == "sslengine" => {
                    v.https |= words.next().is_some_and(|w| w.eq_ignore_ascii_case("on"))
                }
                _ => {}
            }
        }
        while next_handler < all.len() && all[next_handler].at.line == n {
            match current.as_mut() {
                Some(v) => v.handlers.push(all[next_handler].clone()),
                None => outside.handlers.push(all[next_handler].clone()),
            }
            next_handler += 1;
        }
    }
    if let Some(v) = current.take() {
        out.push(v);
    }
    if !outside.handlers.is_empty() {
        out.push(outside);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTPD: &str = "<VirtualHost 1.2.3.4:8080 >\n\tServerName www.a.test\n\tServerAlias www.a.test a.test\n\
\t<FilesMatch \"\\.(inc|php|phtml|phpt)$\">\n\t\tAddHandler \"proxy:unix:/usr/local/php82/sockets/alice.sock|fcgi://localhost\" .inc .php .phtml\n\
\t</FilesMatch>\n</VirtualHost>\n<VirtualHost 1.2.3.4:8081 >\n\tServerName a.test\n\tSSLEngine on\n\
\t# AddHandler \"proxy:unix:/old.sock|fcgi://localhost\" .php\n\tSetHandler \"proxy:unix:/usr/local/php83/sockets/alice.sock|fcgi://localhost\"\n</VirtualHost>\n";

    #[test]
    fn finds_vhosts_and_handlers_with_spans() {
        let v = vhosts("/h", HTTPD.as_bytes());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].server_names, vec!["www.a.test", "www.a.test", "a.test"]);
        assert!(!v[0].https);
        assert!(v[1].https);
        let h = &v[0].handlers[0];
        assert_eq!(h.socket, "/usr/local/php82/sockets/alice.sock");
        assert_eq!(h.at.line, 5);
        assert_eq!(&HTTPD[h.socket_start..h.socket_end], h.socket);
        assert!(h.at.text.starts_with("AddHandler"));
        assert_eq!(&HTTPD[h.at.start..h.at.end], h.at.text);
        assert_eq!(v[1].handlers.len(), 1, "commented handler ignored");
    }

    #[test]
    fn cust_snippet_without_vhost() {
        let v = vhosts("/c", b"<FilesMatch \\.php$>\r\nSetHandler \"proxy:unix:/x.sock|fcgi://localhost\"\r\n</FilesMatch>\r\n");
        assert_eq!(v.len(), 1);
        assert!(v[0].server_names.is_empty());
        assert_eq!(
            v[0].handlers[0].at.text,
            "SetHandler \"proxy:unix:/x.sock|fcgi://localhost\""
        );
    }
}
