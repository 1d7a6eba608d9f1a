//! A small engine for DirectAdmin's template syntax, enough for the sim's
//! built-in templates, `data/templates/custom/*` and `.cust_*` fragments:
//! `|TOKEN|`, `|*if COND|…|*else|…|*endif|` (nestable) and `|?VAR=value|`.
//!
//! A `|…|` pair that is not one of these forms is literal text, because
//! nginx regexes and Apache handlers are full of pipes
//! (`\.(inc|php)$`, `….sock|fcgi://localhost`). Unknown tokens are kept
//! verbatim so that a typo stays visible in the generated file.

use std::collections::BTreeMap;

/// Token values; names are DA-style upper case (`USER`, `PHP1_RELEASE`).
pub type Tokens = BTreeMap<String, String>;

#[derive(Debug)]
enum Node {
    Text(String),
    Token(String),
    Assign(String, String),
    If(Cond, Vec<Node>, Vec<Node>),
}

#[derive(Debug)]
enum Cond {
    /// `NAME="value"` (negated for `!=`).
    Eq(String, String, bool),
    /// Bare `NAME` / `!NAME`: set, non-empty and not "0".
    Truthy(String, bool),
}

enum Stop {
    Else,
    Endif,
    Eof,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn parse_cond(s: &str) -> Option<Cond> {
    let s = s.trim();
    if let Some((name, value)) = s.split_once("!=") {
        let v = value.trim().trim_matches('"');
        return is_name(name.trim()).then(|| Cond::Eq(name.trim().into(), v.into(), true));
    }
    if let Some((name, value)) = s.split_once('=') {
        let v = value.trim().trim_matches('"');
        return is_name(name.trim()).then(|| Cond::Eq(name.trim().into(), v.into(), false));
    }
    let (neg, name) = match s.strip_prefix('!') {
        Some(n) => (true, n.trim()),
        None => (false, s),
    };
    is_name(name).then(|| Cond::Truthy(name.into(), neg))
}

/// What a `|…|` directive is, if anything.
enum Directive {
    Token(String),
    Assign(String, String),
    If(Cond),
    Else,
    Endif,
}

fn directive(inner: &str) -> Option<Directive> {
    if is_name(inner) {
        return Some(Directive::Token(inner.into()));
    }
    if let Some(rest) = inner.strip_prefix("*if ") {
        return parse_cond(rest).map(Directive::If);
    }
    match inner.trim() {
        "*else" => return Some(Directive::Else),
        "*endif" => return Some(Directive::Endif),
        _ => {}
    }
    if let Some(rest) = inner.strip_prefix('?') {
        let (name, value) = rest.split_once('=')?;
        if is_name(name) {
            return Some(Directive::Assign(name.into(), value.trim_matches('"').into()));
        }
    }
    None
}

fn parse(src: &str, pos: &mut usize, out: &mut Vec<Node>) -> Stop {
    let bytes = src.as_bytes();
    let mut text = String::new();
    while *pos < bytes.len() {
        let Some(off) = src[*pos..].find('|') else {
            text.push_str(&src[*pos..]);
            *pos = bytes.len();
            break;
        };
        let start = *pos + off;
        text.push_str(&src[*pos..start]);
        let close = src[start + 1..].find(['|', '\n']).map(|o| start + 1 + o);
        let found = close
            .filter(|&c| bytes[c] == b'|')
            .and_then(|c| directive(&src[start + 1..c]).map(|d| (c, d)));
        let Some((close, d)) = found else {
            // A literal pipe: move one character on.
            text.push('|');
            *pos = start + 1;
            continue;
        };
        *pos = close + 1;
        if !text.is_empty() {
            out.push(Node::Text(std::mem::take(&mut text)));
        }
        match d {
            Directive::Token(n) => out.push(Node::Token(n)),
            Directive::Assign(n, v) => out.push(Node::Assign(n, v)),
            Directive::Else => return Stop::Else,
            Directive::Endif => return Stop::Endif,
            Directive::If(cond) => {
                let mut then = Vec::new();
                let mut other = Vec::new();
                if let Stop::Else = parse(src, pos, &mut then) {
                    parse(src, pos, &mut other);
                }
                out.push(Node::If(cond, then, other));
            }
        }
    }
    if !text.is_empty() {
        out.push(Node::Text(text));
    }
    Stop::Eof
}

fn eval(nodes: &[Node], tokens: &mut Tokens, out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Token(name) => match tokens.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push('|');
                    out.push_str(name);
                    out.push('|');
                }
            },
            Node::Assign(name, value) => {
                tokens.insert(name.clone(), value.clone());
            }
            Node::If(cond, then, other) => {
                let yes = match cond {
                    Cond::Eq(name, v, neg) => {
                        (tokens.get(name).map(String::as_str).unwrap_or("") == v) != *neg
                    }
                    Cond::Truthy(name, neg) => {
                        let v = tokens.get(name).map(String::as_str).unwrap_or("");
                        (!v.is_empty() && v != "0") != *neg
                    }
                };
                eval(if yes { then } else { other }, tokens, out);
            }
        }
    }
}

/// Render `template`. Substituted values are inserted verbatim, never
/// re-scanned, so a `.cust_nginx` inlined through `|CUSTOM|` is rendered
/// once, by the caller, with its own tokens.
pub fn render(template: &str, tokens: &Tokens) -> String {
    let mut nodes = Vec::new();
    let mut pos = 0;
    // A stray `|*else|`/`|*endif|` at top level ends parsing in DA too
    // (the rest would be dropped); keep going so nothing is lost silently.
    loop {
        match parse(template, &mut pos, &mut nodes) {
            Stop::Eof => break,
            Stop::Else | Stop::Endif => continue,
        }
    }
    let mut local = tokens.clone();
    let mut out = String::with_capacity(template.len() + 256);
    eval(&nodes, &mut local, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(pairs: &[(&str, &str)]) -> Tokens {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_and_keeps_literal_pipes() {
        let t = toks(&[("USER", "alice"), ("PHP1_RELEASE", "83")]);
        let src = "fastcgi_pass unix:/usr/local/php|PHP1_RELEASE|/sockets/|USER|.sock;\n\
                   location ~ \\.(inc|php|phtml)$ {}\n\
                   AddHandler \"proxy:unix:/x/|USER|.sock|fcgi://localhost\" .php\n|UNKNOWN_TOK|";
        let out = render(src, &t);
        assert!(out.contains("unix:/usr/local/php83/sockets/alice.sock;"));
        assert!(out.contains("\\.(inc|php|phtml)$"));
        assert!(out.contains("\"proxy:unix:/x/alice.sock|fcgi://localhost\""));
        assert!(out.ends_with("|UNKNOWN_TOK|"));
    }

    #[test]
    fn conditionals_nest_and_assignments_apply() {
        let t = toks(&[("A", "1"), ("B", "x")]);
        let src =
            "|*if A=\"1\"|a|*if B=\"y\"|by|*else|bn|*endif||*else|na|*endif|-|?C=z||C|-|*if !D|nod|*endif|";
        assert_eq!(render(src, &t), "abn-z-nod");
        assert_eq!(render("|*if B!=\"x\"|1|*else|2|*endif|", &t), "2");
    }
}
