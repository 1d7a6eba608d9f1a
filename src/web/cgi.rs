//! The CGI face: DirectAdmin runs `admin/index.html` (a `#!/bin/sh`
//! wrapper that execs `fpm-doctor cgi --level admin --page index.html`)
//! with the request in environment variables. This module only turns that
//! environment into a [`Request`] and the [`Response`] into what DA expects:
//! an HTML fragment (normal pages; DA adds the skin, discards stderr and the
//! exit code, so every error is printed) or a whole HTTP response (`.raw`).

use super::{handle, parse_pairs, Method, Request, Response};
use crate::access::Level;
use crate::config::Config;
use std::io::Read;

/// DA may hand values over HTML-entity encoded (`&amp;`): undo that before
/// parsing the query. Unknown entities are left as they are.
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[..rest.len().min(12)].find(';');
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ if name.starts_with("#x") || name.starts_with("#X") => {
                    u32::from_str_radix(&name[2..], 16).ok().and_then(char::from_u32)
                }
                _ if name.starts_with('#') => name[1..].parse::<u32>().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Largest POST body read from stdin (the forms here are tiny).
const MAX_BODY: u64 = 1 << 20;

/// The request DA's environment describes. `env` is `std::env::var` in
/// production, a map in tests.
pub fn request(
    level: Level,
    page: &str,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Request {
    let var = |k: &str| env(k).map(|v| decode_entities(&v)).unwrap_or_default();
    let method = Method::parse(&var("REQUEST_METHOD"));
    let mut body = env("POST").unwrap_or_default();
    // Some DA versions pass large bodies on stdin instead ([U]). Read it only
    // when told so, never on a bare empty POST: an open stdin would hang the page.
    let len = env("CONTENT_LENGTH").and_then(|l| l.trim().parse::<u64>().ok());
    if method == Method::Post && (body == "stdin=true" || (body.is_empty() && len.is_some_and(|l| l > 0))) {
        let mut b = String::new();
        let _ = stdin
            .take(len.unwrap_or(MAX_BODY).min(MAX_BODY))
            .read_to_string(&mut b);
        body = b;
    }
    Request {
        level,
        username: var("USERNAME"),
        method,
        page: page.to_string(),
        query: parse_pairs(&var("QUERY_STRING")),
        form: if method == Method::Post {
            parse_pairs(&decode_entities(&body))
        } else {
            vec![]
        },
        session: var("SESSION_ID"),
    }
}

/// What the page prints.
pub fn output(r: &Response, raw: bool) -> String {
    if !raw {
        // DA adds the headers and the skin; the status shows in the fragment.
        return r.body.clone();
    }
    let mut s = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        r.reason(),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        // Our own constant headers; never a value from the request.
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(&r.body);
    s
}

/// An error before any handler ran, in the form the page needs.
pub fn error_output(message: &str, raw: bool) -> String {
    let r = if raw {
        Response::json(500, &serde_json::json!({"error": message}))
    } else {
        let esc = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        Response {
            status: 500,
            content_type: "text/html; charset=utf-8",
            headers: vec![],
            body: format!(
                "<div class=\"fpmd\"><p class=\"fpmd-error\">FPM Doctor cannot run: {esc}</p></div>\n"
            ),
        }
    };
    output(&r, raw)
}

/// `fpm-doctor cgi`: one page request from DA's environment.
pub fn run(cfg: Result<Config, String>, level: Level, page: &str, raw: bool, trusted: bool) -> String {
    // USERNAME is believed only from DA's page runner (the plugin user
    // through the setuid binary) or root; `privilege::startup` has already
    // refused other uids and cleared the environment to an allow-list.
    if !trusted {
        return error_output(
            "this page must be run by DirectAdmin as the fpm_doctor user (plugin.conf *_run_as) or by root; \
the session is not trusted here",
            raw,
        );
    }
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => return error_output(&e, raw),
    };
    let env = |k: &str| std::env::var(k).ok();
    let req = request(level, page, &env, &mut std::io::stdin());
    output(&handle(&cfg, &req), raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_decode_and_unknown_ones_stay() {
        assert_eq!(decode_entities("a=1&amp;b=2"), "a=1&b=2");
        assert_eq!(decode_entities("&lt;x&gt;&#39;&#x41;"), "<x>'A");
        assert_eq!(decode_entities("a&b&nbsp;&"), "a&b&nbsp;&");
    }

    #[test]
    fn request_from_environment() {
        let env = |k: &str| {
            match k {
                "REQUEST_METHOD" => Some("POST"),
                "QUERY_STRING" => Some("domain=a.test&amp;page=2"),
                "POST" => Some("csrf=x&amp;plan=1&amp;plan=2"),
                "USERNAME" => Some("alice"),
                "SESSION_ID" => Some("S"),
                _ => None,
            }
            .map(String::from)
        };
        let r = request(Level::User, "repair.html", &env, &mut std::io::empty());
        assert_eq!(r.q("domain"), Some("a.test"));
        assert_eq!(r.q("page"), Some("2"));
        assert_eq!(r.form.iter().filter(|(k, _)| k == "plan").count(), 2);
        assert_eq!(r.method, Method::Post);
    }

    #[test]
    fn a_body_on_stdin_is_read_only_when_announced() {
        let env = |len: Option<&'static str>| {
            move |k: &str| match k {
                "REQUEST_METHOD" => Some("POST".to_string()),
                "CONTENT_LENGTH" => len.map(String::from),
                _ => None,
            }
        };
        let mut input: &[u8] = b"csrf=t&id=x";
        let r = request(Level::User, "history.html", &env(Some("11")), &mut input);
        assert_eq!(r.f("id"), Some("x"));
        // No length: stdin is not touched (it might never close).
        let mut input: &[u8] = b"csrf=t&id=x";
        let r = request(Level::User, "history.html", &env(None), &mut input);
        assert!(r.form.is_empty());
    }
}
