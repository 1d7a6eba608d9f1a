//! NGINX side of the readers: expands `/etc/nginx/nginx.conf` and each user's
//! generated `nginx.conf` (includes inlined by the lossless parser), finds the
//! server blocks and their PHP handlers, resolves `fastcgi_pass` through
//! `set` variables and `upstream` blocks, and traces each generated handler
//! back to the surviving layer (`.cust_*`, custom template, CustomBuild
//! overlay) whose text DirectAdmin inlined there.

use super::{da::CustFile, join, Fs};
use crate::model::{
    parse_nginx_time, Handler, HandlerKind, Layer, Level, Location, PhpSlot, ReadTimeout, Target, Unknown,
};
use crate::nginx::{Expanded, Loader, ParsedFile, ProblemKind, Source};
use crate::probe::Endpoint;
use std::collections::HashMap;
use std::sync::Arc;

/// Wraps a source so that the users' generated files are *not* followed from
/// `/etc/nginx` (they are read per user, so a user-scoped scan stays cheap).
struct SkipUsers<'a> {
    inner: &'a Fs<'a>,
    users_prefix: String,
}

impl Source for SkipUsers<'_> {
    fn read(&self, p: &str) -> std::io::Result<Vec<u8>> {
        if p.starts_with(&self.users_prefix) {
            return Ok(Vec::new());
        }
        Source::read(self.inner, p)
    }
    fn glob(&self, p: &str) -> std::io::Result<Vec<String>> {
        if p.starts_with(&self.users_prefix) {
            return Ok(Vec::new());
        }
        Source::glob(self.inner, p)
    }
}

/// A server block before it is matched to a domain.
#[derive(Debug, Clone)]
pub struct RawVhost {
    pub server_names: Vec<String>,
    pub https: bool,
    pub file: String,
    pub line: u32,
    pub proxies: bool,
    pub proxy_targets: Vec<String>,
    pub handlers: Vec<RawHandler>,
}

#[derive(Debug, Clone)]
pub struct RawHandler {
    pub raw_target: String,
    pub target: Target,
    pub at: Location,
    pub location: Option<String>,
    pub shadowed: bool,
    /// The `fastcgi_read_timeout` in force here, as nginx reads it.
    pub read_timeout: Option<RawTimeout>,
}

/// A `fastcgi_read_timeout` directive in force, before attribution.
#[derive(Debug, Clone)]
pub struct RawTimeout {
    pub millis: u64,
    pub level: Level,
    pub at: Location,
}

/// What `/etc/nginx` tells us.
#[derive(Debug, Default)]
pub struct GlobalNginx {
    pub worker_user: Option<String>,
    pub upstreams: HashMap<String, Vec<String>>,
    /// Server blocks outside users' files (hostname, webapps).
    pub vhosts: Vec<RawVhost>,
    /// `fastcgi_read_timeout` at http level: users' server blocks inherit it.
    pub http_read_timeout: Option<RawTimeout>,
    pub unknowns: Vec<Unknown>,
}

fn conf_prefix(nginx_conf: &str) -> String {
    match nginx_conf.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => nginx_conf[..i].to_string(),
        None => ".".into(),
    }
}

fn problems_to_unknowns(exp: &Expanded, user: Option<&str>, out: &mut Vec<Unknown>) {
    for p in &exp.problems {
        let kind = match p.kind {
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::Parse => "parse error",
            ProblemKind::IncludeCycle => "include cycle",
        };
        out.push(Unknown {
            user: user.map(str::to_string),
            domain: None,
            file: p.file.clone(),
            line: Some(p.line),
            reason: format!("{kind}: {}", p.message),
        });
    }
}

/// Reads `/etc/nginx/nginx.conf` and everything it includes except users' files.
pub fn read_global(fs: &Fs) -> GlobalNginx {
    let paths = &fs.cfg.paths;
    let mut g = GlobalNginx::default();
    match fs.read(&paths.nginx_conf) {
        Ok(Some(_)) => {}
        Ok(None) => {
            g.unknowns.push(Unknown {
                user: None,
                domain: None,
                file: paths.nginx_conf.clone(),
                line: None,
                reason: "nginx.conf is missing".into(),
            });
            return g;
        }
        Err(reason) => {
            g.unknowns.push(Unknown {
                user: None,
                domain: None,
                file: paths.nginx_conf.clone(),
                line: None,
                reason,
            });
            return g;
        }
    }
    let src = SkipUsers {
        inner: fs,
        users_prefix: format!("{}/", paths.users_dir.trim_end_matches('/')),
    };
    let mut loader = Loader::new(&src, &conf_prefix(&paths.nginx_conf));
    let exp = loader.expand(&paths.nginx_conf);
    problems_to_unknowns(&exp, None, &mut g.unknowns);
    for it in exp.items.iter() {
        if it.name == "user" && it.parent.is_none() {
            g.worker_user = it.args.first().cloned();
        }
    }
    g.upstreams = upstreams(&exp);
    let timeouts = timeout_children(&exp);
    g.http_read_timeout = exp
        .items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.name == "http" && it.has_block)
        .find_map(|(i, _)| raw_timeout(&exp, &timeouts, i, Level::Http));
    g.vhosts = vhosts(&exp, &g.upstreams, None);
    g
}

/// For each block, its `fastcgi_read_timeout` child (nginx refuses a
/// duplicate in one block, so the first is the one).
fn timeout_children(exp: &Expanded) -> HashMap<usize, usize> {
    let mut out = HashMap::new();
    for (j, it) in exp.items.iter().enumerate() {
        if it.name == "fastcgi_read_timeout" {
            if let Some(p) = it.parent {
                out.entry(p).or_insert(j);
            }
        }
    }
    out
}

fn raw_timeout(
    exp: &Expanded,
    children: &HashMap<usize, usize>,
    block: usize,
    level: Level,
) -> Option<RawTimeout> {
    let j = *children.get(&block)?;
    let millis = parse_nginx_time(exp.items[j].args.first()?)?;
    Some(RawTimeout {
        millis,
        level,
        at: location_of(exp, j),
    })
}

/// The timeout in force at item `i`: the nearest enclosing location,
/// server or http block that sets one, else what http sets outside this
/// expansion (`http_fallback`).
fn timeout_in_force(
    exp: &Expanded,
    children: &HashMap<usize, usize>,
    i: usize,
    http_fallback: Option<&RawTimeout>,
) -> Option<RawTimeout> {
    let mut p = exp.items[i].parent;
    while let Some(a) = p {
        let level = match exp.items[a].name.as_str() {
            "location" => Some(Level::Location),
            "server" => Some(Level::Server),
            "http" => Some(Level::Http),
            _ => None,
        };
        if let Some(t) = level.and_then(|l| raw_timeout(exp, children, a, l)) {
            return Some(t);
        }
        p = exp.items[a].parent;
    }
    http_fallback.cloned()
}

/// Reads one user's generated `nginx.conf` (with its includes).
pub fn read_user(
    fs: &Fs,
    user_dir: &str,
    user: &str,
    global_upstreams: &HashMap<String, Vec<String>>,
    http_timeout: Option<&RawTimeout>,
) -> (Vec<RawVhost>, Vec<Unknown>) {
    let path = join(user_dir, "nginx.conf");
    let mut unknowns = Vec::new();
    match fs.read(&path) {
        Ok(Some(_)) => {}
        Ok(None) => {
            unknowns.push(Unknown {
                user: Some(user.into()),
                domain: None,
                file: path,
                line: None,
                reason: "the user's generated nginx.conf is missing: nginx serves none of their domains"
                    .into(),
            });
            return (vec![], unknowns);
        }
        Err(reason) => {
            unknowns.push(Unknown {
                user: Some(user.into()),
                domain: None,
                file: path,
                line: None,
                reason,
            });
            return (vec![], unknowns);
        }
    }
    let mut loader = Loader::new(fs, &conf_prefix(&fs.cfg.paths.nginx_conf));
    let exp = loader.expand(&path);
    problems_to_unknowns(&exp, Some(user), &mut unknowns);
    let mut ups = global_upstreams.clone();
    ups.extend(upstreams(&exp));
    (vhosts(&exp, &ups, http_timeout), unknowns)
}

fn upstreams(exp: &Expanded) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (i, it) in exp.items.iter().enumerate() {
        if it.name == "upstream" && it.has_block {
            let name = it.args.first().cloned().unwrap_or_default();
            let servers = exp
                .items
                .iter()
                .filter(|s| s.parent == Some(i) && s.name == "server")
                .filter_map(|s| s.args.first().cloned())
                .collect();
            out.insert(name, servers);
        }
    }
    out
}

fn location_of(exp: &Expanded, i: usize) -> Location {
    let it = &exp.items[i];
    let f = &exp.files[it.file];
    Location {
        file: f.path.clone(),
        line: it.line,
        text: f.text_lossy(it.span),
        start: it.span.start,
        end: it.span.end,
    }
}

/// Substitutes `$var` / `${var}` from `set` directives in scope.
fn resolve_vars(exp: &Expanded, i: usize, raw: &str) -> Result<String, String> {
    if !raw.contains('$') {
        return Ok(raw.to_string());
    }
    let mut ancestors = Vec::new();
    let mut p = exp.items[i].parent;
    while let Some(a) = p {
        ancestors.push(a);
        p = exp.items[a].parent;
    }
    let lookup = |var: &str| -> Option<String> {
        (0..i).rev().find_map(|j| {
            let s = &exp.items[j];
            let in_scope = s.parent.is_none() || s.parent.is_some_and(|p| ancestors.contains(&p));
            (s.name == "set" && in_scope && s.args.first().map(|a| a.trim_start_matches('$')) == Some(var))
                .then(|| s.args.get(1).cloned().unwrap_or_default())
        })
    };
    let mut out = String::new();
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(b) = after.strip_prefix('{') {
            let end = b
                .find('}')
                .ok_or_else(|| format!("unterminated variable in {raw}"))?;
            (&b[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match lookup(name) {
            Some(v) if !v.contains('$') => out.push_str(&v),
            _ => {
                return Err(format!(
                    "${name} is not set to a constant in scope (map or runtime variable)"
                ))
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Targets of a `fastcgi_pass` argument: one per upstream server.
fn targets(exp: &Expanded, i: usize, raw: &str, ups: &HashMap<String, Vec<String>>) -> Vec<(String, Target)> {
    let resolved = match resolve_vars(exp, i, raw) {
        Ok(r) => r,
        Err(why) => return vec![(raw.to_string(), Target::Unresolved(why))],
    };
    if let Some(ep) = Endpoint::parse_nginx(&resolved) {
        return vec![(raw.to_string(), Target::Endpoint(ep))];
    }
    match ups.get(&resolved) {
        Some(servers) if !servers.is_empty() => servers
            .iter()
            .map(|s| match Endpoint::parse_nginx(s) {
                Some(ep) => (raw.to_string(), Target::Endpoint(ep)),
                None => (
                    raw.to_string(),
                    Target::Unresolved(format!("upstream {resolved} has server {s}")),
                ),
            })
            .collect(),
        Some(_) => vec![(
            raw.to_string(),
            Target::Unresolved(format!("upstream {resolved} has no server")),
        )],
        None => vec![(
            raw.to_string(),
            Target::Unresolved(format!("no upstream named {resolved}")),
        )],
    }
}

/// Server blocks and their PHP handlers, in file order.
fn vhosts(
    exp: &Expanded,
    ups: &HashMap<String, Vec<String>>,
    http_timeout: Option<&RawTimeout>,
) -> Vec<RawVhost> {
    let n = exp.items.len();
    let timeouts = timeout_children(exp);
    let mut server_of: Vec<Option<usize>> = vec![None; n];
    let mut vhost_of_server: HashMap<usize, usize> = HashMap::new();
    let mut out: Vec<RawVhost> = Vec::new();
    // Parents precede children in `items`, so one pass propagates the server.
    for i in 0..n {
        let it = &exp.items[i];
        let parent_server = it.parent.and_then(|p| {
            if exp.items[p].name == "server" && exp.items[p].has_block && vhost_of_server.contains_key(&p) {
                Some(p)
            } else {
                server_of[p]
            }
        });
        server_of[i] = parent_server;
        if it.name == "server" && it.has_block && parent_server.is_none() {
            let in_upstream = it.parent.is_some_and(|p| exp.items[p].name == "upstream");
            if !in_upstream {
                vhost_of_server.insert(i, out.len());
                out.push(RawVhost {
                    server_names: vec![],
                    https: false,
                    file: exp.files[it.file].path.clone(),
                    line: it.line,
                    proxies: false,
                    proxy_targets: vec![],
                    handlers: vec![],
                });
            }
            continue;
        }
        let Some(s) = parent_server else { continue };
        let v = vhost_of_server[&s];
        match it.name.as_str() {
            "server_name" if it.parent == Some(s) => out[v].server_names.extend(it.args.iter().cloned()),
            "listen" if it.parent == Some(s) => {
                out[v].https |= it
                    .args
                    .iter()
                    .any(|a| a == "ssl" || a.ends_with(":443") || a == "443")
            }
            "ssl" if it.parent == Some(s) => out[v].https |= it.args.first().is_some_and(|a| a == "on"),
            "proxy_pass" => {
                out[v].proxies = true;
                if let Some(t) = it.args.first() {
                    if !out[v].proxy_targets.contains(t) {
                        out[v].proxy_targets.push(t.clone());
                    }
                }
            }
            "fastcgi_pass" => {
                let Some(raw) = it.args.first() else { continue };
                let (location, top_loc) = enclosing_locations(exp, i, s);
                let shadowed = top_loc.is_some_and(|l| is_shadowed(exp, l, s));
                let read_timeout = timeout_in_force(exp, &timeouts, i, http_timeout);
                for (raw_target, target) in targets(exp, i, raw, ups) {
                    out[v].handlers.push(RawHandler {
                        raw_target,
                        target,
                        at: location_of(exp, i),
                        location: location.clone(),
                        shadowed,
                        read_timeout: read_timeout.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// The nearest `location` (its arguments) and the location directly under the server.
fn enclosing_locations(exp: &Expanded, i: usize, server: usize) -> (Option<String>, Option<usize>) {
    let mut nearest = None;
    let mut top = None;
    let mut p = exp.items[i].parent;
    while let Some(a) = p {
        if a == server {
            break;
        }
        if exp.items[a].name == "location" {
            if nearest.is_none() {
                nearest = Some(exp.items[a].args.join(" "));
            }
            top = Some(a);
        }
        p = exp.items[a].parent;
    }
    (nearest, top)
}

/// nginx tries regex locations in order: a later one with the very same
/// modifier and pattern never matches.
fn is_shadowed(exp: &Expanded, loc: usize, server: usize) -> bool {
    let args = &exp.items[loc].args;
    if !matches!(args.first().map(String::as_str), Some("~") | Some("~*")) {
        return false;
    }
    (0..loc).any(|j| {
        let o = &exp.items[j];
        o.name == "location" && o.args == *args && same_parent_server(exp, j, server)
    })
}

fn same_parent_server(exp: &Expanded, j: usize, server: usize) -> bool {
    exp.items[j].parent == Some(server)
}

/// Token values for one user/domain, to compare template text with generated text.
pub struct Tokens<'a> {
    pub user: &'a str,
    pub domain: &'a str,
    pub slots: &'a [PhpSlot],
    pub expected_socket: &'a str,
}

/// Candidate expansions of a template string (DA's `|PHPn_RELEASE|` is
/// written as digits in some templates and dotted in others: try both).
pub fn expand_tokens(s: &str, t: &Tokens) -> Vec<String> {
    if !s.contains('|') {
        return vec![s.to_string()];
    }
    let mut digits = s.replace("|USER|", t.user).replace("|DOMAIN|", t.domain);
    digits = digits.replace("|PHP_FPM_SOCKET_PATH|", t.expected_socket);
    let mut dotted = digits.clone();
    for slot in t.slots {
        let tok = format!("|PHP{}_RELEASE|", slot.slot);
        digits = digits.replace(&tok, &slot.release.replace('.', ""));
        dotted = dotted.replace(&tok, &slot.release);
    }
    if digits == dotted {
        vec![digits]
    } else {
        vec![digits, dotted]
    }
}

/// `fastcgi_pass` directives of a surviving-layer file (a `.cust_nginx`
/// snippet, a custom template or an overlay), parsed once.
#[derive(Debug, Clone)]
pub struct LayerFile {
    pub layer: Layer,
    pub parsed: Arc<ParsedFile>,
    /// (raw argument, directive location, enclosing location args)
    pub handlers: Vec<(String, Location, Option<String>)>,
    /// `fastcgi_read_timeout` directives (to trace a generated copy back here).
    pub timeouts: Vec<Location>,
}

impl LayerFile {
    pub fn parse(layer: Layer, path: &str, src: Vec<u8>) -> LayerFile {
        let parsed = Arc::new(ParsedFile::parse(path, src));
        let mut handlers = Vec::new();
        let mut timeouts = Vec::new();
        parsed.walk(&mut |parents, d| {
            if d.name.value == "fastcgi_read_timeout" {
                timeouts.push(Location {
                    file: path.to_string(),
                    line: d.line,
                    text: parsed.text_lossy(d.span),
                    start: d.span.start,
                    end: d.span.end,
                });
            }
            if d.name.value == "fastcgi_pass" {
                if let Some(arg) = d.args.first() {
                    let loc = parents
                        .iter()
                        .rev()
                        .find(|p| p.name.value == "location")
                        .map(|p| {
                            p.args
                                .iter()
                                .map(|a| a.value.as_str())
                                .collect::<Vec<_>>()
                                .join(" ")
                        });
                    handlers.push((
                        arg.value.clone(),
                        Location {
                            file: path.to_string(),
                            line: d.line,
                            text: parsed.text_lossy(d.span),
                            start: d.span.start,
                            end: d.span.end,
                        },
                        loc,
                    ));
                }
            }
        });
        LayerFile {
            layer,
            parsed,
            handlers,
            timeouts,
        }
    }

    pub fn from_cust(c: &CustFile) -> LayerFile {
        LayerFile::parse(Layer::Custom, &c.path, c.src.clone())
    }

    /// Parse errors as unknowns: a broken layer is not a healthy one.
    pub fn unknowns(&self, user: Option<&str>, domain: Option<&str>) -> Vec<Unknown> {
        self.parsed
            .errors
            .iter()
            .map(|e| Unknown {
                user: user.map(str::to_string),
                domain: domain.map(str::to_string),
                file: self.parsed.path.clone(),
                line: Some(e.line),
                reason: format!("parse error: {}", e.message),
            })
            .collect()
    }

    /// The directive whose text, expanded for this user/domain, equals `raw`.
    pub fn find(&self, raw: &str, tokens: &Tokens) -> Option<&(String, Location, Option<String>)> {
        self.handlers
            .iter()
            .find(|(arg, _, _)| expand_tokens(arg, tokens).iter().any(|e| e == raw))
    }

    /// For a byte copy (a CustomBuild overlay copied over `/etc/nginx`): the
    /// directive at the same span with the same text, so the second of two
    /// identical `fastcgi_pass` lines maps to the second, not the first.
    pub fn find_same_place(&self, at: &Location) -> Option<&(String, Location, Option<String>)> {
        self.handlers
            .iter()
            .find(|(_, loc, _)| loc.start == at.start && loc.end == at.end && loc.text == at.text)
    }
}

/// Builds a model handler from a raw one, tracing it to its source layer.
///
/// `candidates` are the surviving layers that may have produced the text,
/// most specific first; `generated` says whether the file the handler was
/// found in is rewritten by DA (else it is `/etc/nginx`: global).
pub fn attribute(h: &RawHandler, candidates: &[&LayerFile], tokens: &Tokens, file_layer: Layer) -> Handler {
    let webapps = matches!(&h.target, Target::Endpoint(Endpoint::Unix(p)) if p.ends_with("/webapps.sock"));
    for lf in candidates {
        let found = match lf.layer {
            Layer::Overlay => lf
                .find_same_place(&h.at)
                .or_else(|| lf.find(&h.raw_target, tokens)),
            _ => lf.find(&h.raw_target, tokens),
        };
        if let Some((_, loc, _)) = found {
            return Handler {
                kind: HandlerKind::Nginx,
                raw_target: h.raw_target.clone(),
                target: h.target.clone(),
                source: loc.clone(),
                layer: lf.layer,
                generated_copies: vec![h.at.clone()],
                location: h.location.clone(),
                shadowed: h.shadowed,
                webapps,
                read_timeout: None,
            };
        }
    }
    Handler {
        kind: HandlerKind::Nginx,
        raw_target: h.raw_target.clone(),
        target: h.target.clone(),
        source: h.at.clone(),
        layer: file_layer,
        generated_copies: vec![],
        location: h.location.clone(),
        shadowed: h.shadowed,
        webapps,
        read_timeout: None,
    }
}

/// Traces the timeout nginx reads back to the surviving layer that wrote it
/// (same directive text; for an overlay, the same place).
pub fn attribute_timeout(t: &RawTimeout, candidates: &[&LayerFile], file_layer: Layer) -> ReadTimeout {
    for lf in candidates {
        let found = lf.timeouts.iter().find(|l| match lf.layer {
            Layer::Overlay => l.start == t.at.start && l.text == t.at.text,
            _ => l.text == t.at.text,
        });
        if let Some(l) = found {
            return ReadTimeout {
                millis: t.millis,
                level: t.level,
                at: l.clone(),
                layer: lf.layer,
                generated_copy: Some(t.at.clone()),
            };
        }
    }
    ReadTimeout {
        millis: t.millis,
        level: t.level,
        at: t.at.clone(),
        layer: file_layer,
        generated_copy: None,
    }
}

/// Surviving-layer files that are server-wide: custom templates and overlays.
#[derive(Debug, Default)]
pub struct SharedLayers {
    pub templates: Vec<LayerFile>,
    /// Overlay files keyed by their path relative to `/etc/nginx`.
    pub overlays: HashMap<String, LayerFile>,
    pub unknowns: Vec<Unknown>,
}

/// Reads `data/templates/custom/nginx*` and the CustomBuild overlay folders.
pub fn read_shared_layers(fs: &Fs, reverse: bool) -> SharedLayers {
    let paths = &fs.cfg.paths;
    let mut out = SharedLayers::default();
    let read = |path: &str, layer: Layer, out: &mut SharedLayers| -> Option<LayerFile> {
        match fs.read(path) {
            Ok(Some(src)) => {
                let lf = LayerFile::parse(layer, path, src);
                out.unknowns.extend(lf.unknowns(None, None));
                Some(lf)
            }
            Ok(None) => None,
            Err(reason) => {
                out.unknowns.push(Unknown {
                    user: None,
                    domain: None,
                    file: path.into(),
                    line: None,
                    reason,
                });
                None
            }
        }
    };
    match fs.list_dir(&paths.templates_custom_dir) {
        Ok(names) => {
            for n in names
                .iter()
                .filter(|n| n.starts_with("nginx") && n.ends_with(".conf"))
            {
                if let Some(lf) = read(&join(&paths.templates_custom_dir, n), Layer::Template, &mut out) {
                    out.templates.push(lf);
                }
            }
        }
        Err(reason) => out.unknowns.push(Unknown {
            user: None,
            domain: None,
            file: paths.templates_custom_dir.clone(),
            line: None,
            reason,
        }),
    }
    let overlay = if reverse {
        &paths.cb_nginx_reverse_overlay
    } else {
        &paths.cb_nginx_overlay
    };
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            overlay.clone()
        } else {
            join(overlay, &rel)
        };
        let names = match fs.list_dir(&dir) {
            Ok(n) => n,
            Err(reason) => {
                out.unknowns.push(Unknown {
                    user: None,
                    domain: None,
                    file: dir,
                    line: None,
                    reason,
                });
                continue;
            }
        };
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            let p = join(overlay, &r);
            if fs.is_dir(&p) {
                stack.push(r);
            } else if let Some(lf) = read(&p, Layer::Overlay, &mut out) {
                out.overlays.insert(r, lf);
            }
        }
    }
    out
}

impl SharedLayers {
    /// The overlay that CustomBuild copies to `file` (a path under /etc/nginx), if any.
    pub fn overlay_for(&self, etc_nginx: &str, file: &str) -> Option<&LayerFile> {
        let rel = file.strip_prefix(etc_nginx)?.trim_start_matches('/');
        self.overlays.get(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Vec<PhpSlot> {
        vec![PhpSlot {
            slot: 1,
            release: "8.3".into(),
            mode: "php-fpm".into(),
            prefix: "/usr/local/php83".into(),
        }]
    }

    #[test]
    fn tokens_expand_both_ways() {
        let s = slots();
        let t = Tokens {
            user: "alice",
            domain: "a.test",
            slots: &s,
            expected_socket: "/x.sock",
        };
        let e = expand_tokens("unix:/usr/local/php|PHP1_RELEASE|/sockets/|USER|.sock", &t);
        assert_eq!(
            e,
            vec![
                "unix:/usr/local/php83/sockets/alice.sock",
                "unix:/usr/local/php8.3/sockets/alice.sock"
            ]
        );
        assert_eq!(
            expand_tokens("unix:|PHP_FPM_SOCKET_PATH|", &t),
            vec!["unix:/x.sock"]
        );
        assert_eq!(expand_tokens("127.0.0.1:9000", &t), vec!["127.0.0.1:9000"]);
    }

    #[test]
    fn layer_file_finds_directive_with_location() {
        let src = b"|*if HAVE_PHP1_FPM=\"1\"|\nlocation ~ \\.php$ {\n    fastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\n}\n|*endif|\n";
        let lf = LayerFile::parse(Layer::Template, "/t/nginx_server.conf", src.to_vec());
        let s = slots();
        let t = Tokens {
            user: "bob",
            domain: "b.test",
            slots: &s,
            expected_socket: "",
        };
        let (_, loc, l) = lf
            .find("unix:/usr/local/php82/sockets/bob.sock", &t)
            .expect("found");
        assert_eq!(loc.line, 3);
        assert_eq!(
            loc.text,
            "fastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;"
        );
        assert_eq!(l.as_deref(), Some("~ \\.php$"));
        assert!(lf.find("unix:/usr/local/php82/sockets/alice.sock", &t).is_none());
    }

    fn timeouts_of(conf: &str, http: Option<&RawTimeout>) -> Vec<Option<(u64, Level, u32)>> {
        let src = crate::nginx::MemSource::default().with("/u/nginx.conf", conf);
        let mut loader = Loader::new(&src, "/etc/nginx");
        let exp = loader.expand("/u/nginx.conf");
        vhosts(&exp, &HashMap::new(), http)
            .iter()
            .flat_map(|v| v.handlers.iter())
            .map(|h| h.read_timeout.as_ref().map(|t| (t.millis, t.level, t.at.line)))
            .collect()
    }

    #[test]
    fn read_timeout_location_shadows_server_shadows_http() {
        let conf = "server {\n  fastcgi_read_timeout 2s;\n  server_name a.test;\n  location ~ \\.php$ {\n    fastcgi_pass unix:/a.sock;\n  }\n  location /x/ {\n    fastcgi_read_timeout 1m30s;\n    location ~ \\.php$ { fastcgi_pass unix:/a.sock; }\n  }\n}\nserver {\n  server_name b.test;\n  location ~ \\.php$ { fastcgi_pass unix:/b.sock; }\n}\n";
        let http = RawTimeout {
            millis: 120_000,
            level: Level::Http,
            at: Location {
                file: "/etc/nginx/nginx.conf".into(),
                line: 9,
                text: "fastcgi_read_timeout 120;".into(),
                start: 0,
                end: 0,
            },
        };
        assert_eq!(
            timeouts_of(conf, Some(&http)),
            vec![
                Some((2_000, Level::Server, 2)),
                Some((90_000, Level::Location, 8)),
                Some((120_000, Level::Http, 9)),
            ]
        );
        assert_eq!(timeouts_of(conf, None)[2], None, "nginx's default");
    }

    #[test]
    fn timeout_is_traced_to_the_cust_nginx_line() {
        let lf = LayerFile::parse(
            Layer::Custom,
            "/d/a.test.cust_nginx",
            b"client_max_body_size 8m;\nfastcgi_read_timeout 2s;\n".to_vec(),
        );
        let raw = RawTimeout {
            millis: 2000,
            level: Level::Server,
            at: Location {
                file: "/u/nginx.conf".into(),
                line: 4,
                text: "fastcgi_read_timeout 2s;".into(),
                start: 50,
                end: 74,
            },
        };
        let t = attribute_timeout(&raw, &[&lf], Layer::Generated);
        assert_eq!(
            (t.layer, t.at.file.as_str(), t.at.line),
            (Layer::Custom, "/d/a.test.cust_nginx", 2)
        );
        assert_eq!(t.generated_copy.as_ref().map(|l| l.line), Some(4));
        let t = attribute_timeout(&raw, &[], Layer::Generated);
        assert_eq!((t.layer, t.generated_copy.is_none()), (Layer::Generated, true));
    }
}
