//! The plugin's pages, one router for both faces: DA's CGI pages
//! ([`cgi`]) and the local web server ([`serve`]). A face turns its input
//! into a [`Request`], calls [`handle`], and writes the [`Response`]; the
//! handlers here resolve the caller ([`access::resolve`]), read through the
//! core (`scan`, `repair::propose`, `apply::history`) and render askama
//! templates (autoescaped). No face holds logic of its own.
//!
//! Rules every handler keeps:
//! - a GET never changes anything; every mutation is a POST carrying a CSRF
//!   token bound to the session ([`csrf`]);
//! - inputs are checked against what exists: a domain must be in the
//!   caller's scope (else 404, never 403, so a probe learns nothing), plan
//!   ids must come from a fresh `propose`, repair ids from the journal.

pub mod cgi;
pub mod csrf;
pub mod publish;
pub mod serve;
pub mod snapshot;
mod views;

use crate::access::{self, Caller, Level};
use crate::config::Config;
use crate::readers::{da, join, kv, Fs, Scope};
use crate::repair::{self, Planned};
use snapshot::Snap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" | "" => Method::Get,
            "POST" => Method::Post,
            _ => Method::Other,
        }
    }
}

/// One request, as either face saw it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The level of the page's folder (CGI wrapper) or route (serve).
    pub level: Level,
    /// DA's `USERNAME`.
    pub username: String,
    pub method: Method,
    /// Page name: `index.html`, `domain.html`, `repair.html`,
    /// `history.html`, `status.raw`, `scan.raw`.
    pub page: String,
    /// Decoded query pairs (repeated keys kept).
    pub query: Vec<(String, String)>,
    /// Decoded form pairs of a POST.
    pub form: Vec<(String, String)>,
    /// DA's `SESSION_ID` (CGI) or the session cookie (serve): CSRF binding.
    pub session: String,
}

impl Request {
    pub fn q(&self, k: &str) -> Option<&str> {
        get(&self.query, k)
    }
    pub fn f(&self, k: &str) -> Option<&str> {
        get(&self.form, k)
    }
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

/// Parses `a=1&b=2` (form encoding). Malformed input gives no pairs.
pub fn parse_pairs(s: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(s).unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn html(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/html; charset=utf-8",
            headers: vec![],
            body,
        }
    }

    /// JSON with `<`, `>` and `&` escaped, so a value from a log cannot
    /// become markup even if something renders the body as HTML.
    pub fn json<T: serde::Serialize>(status: u16, v: &T) -> Response {
        let s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
        Response {
            status,
            content_type: "application/json",
            headers: vec![
                ("Cache-Control".into(), "no-store".into()),
                ("X-Content-Type-Options".into(), "nosniff".into()),
            ],
            body: escape_json(&s),
        }
    }

    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            303 => "See Other",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            _ => "Internal Server Error",
        }
    }
}

/// `<`, `>`, `&` only occur inside JSON strings, where `\u003c` is the same value.
pub fn escape_json(s: &str) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A handler's refusal or failure, shown on the page (DA discards stderr).
#[derive(Debug)]
pub struct Fail {
    pub status: u16,
    pub message: String,
}

fn fail(status: u16, message: impl Into<String>) -> Fail {
    Fail {
        status,
        message: message.into(),
    }
}

fn not_found() -> Fail {
    fail(404, "No such domain in your account.")
}

type Out = Result<Response, Fail>;

pub const PAGES: &[&str] = &[
    "index.html",
    "domain.html",
    "repair.html",
    "history.html",
    "status.raw",
    "scan.raw",
];

/// The router.
pub fn handle(cfg: &Config, req: &Request) -> Response {
    let raw = req.page.ends_with(".raw");
    let caller = match access::resolve(cfg, req.level, &req.username) {
        Ok(c) => c,
        Err(access::Denied(why)) => return render_fail(req, raw, fail(403, why)),
    };
    use Method::*;
    let r = match (req.page.as_str(), req.method) {
        ("index.html", Get) if caller.level == Level::User => user_index(cfg, &caller, req),
        ("index.html", Get) => index(cfg, &caller, req),
        ("index.html", Post) => rescan(cfg, &caller, req),
        ("domain.html", Get) => domain_page(cfg, &caller, req),
        ("repair.html", Get) => repair_preview(cfg, &caller, req),
        ("repair.html", Post) => repair_apply(cfg, &caller, req),
        ("history.html", Get) => history(cfg, &caller, req),
        ("history.html", Post) => undo(cfg, &caller, req),
        ("status.raw", Get) => Ok(Response::json(200, &snapshot::status(cfg))),
        ("scan.raw", Get) => scan_json(cfg, &caller),
        (p, _) if PAGES.contains(&p) => Err(fail(405, "This page does not take that method.")),
        _ => Err(fail(404, "No such page.")),
    };
    r.unwrap_or_else(|f| render_fail(req, raw, f))
}

fn render_fail(req: &Request, raw: bool, f: Fail) -> Response {
    if raw {
        return Response::json(f.status, &serde_json::json!({"error": f.message}));
    }
    let b = views::Base::new(req.level, &req.username);
    Response::html(f.status, views::message(&b, f.status, &f.message))
}

// ---------------------------------------------------------------------------
// Scope checks

/// The DA user owning main domain `d`, if the caller may see it.
fn owner(cfg: &Config, caller: &Caller, d: &str) -> Result<String, Fail> {
    if !crate::apply::da::valid_domain(d) {
        return Err(fail(400, "Not a domain name."));
    }
    let fs = Fs::new(cfg);
    let candidates = match &caller.users {
        Some(v) => v.clone(),
        None => da::list_users(&fs, None).map_err(|e| fail(500, e))?,
    };
    for u in candidates {
        let path = join(&join(&cfg.paths.users_dir, &u), "domains.list");
        if let Ok(Some(src)) = fs.read(&path) {
            if kv::list(&src).iter().any(|x| x == d) {
                return Ok(u);
            }
        }
    }
    Err(not_found())
}

fn token(cfg: &Config, caller: &Caller, req: &Request) -> Result<Option<String>, Fail> {
    csrf::token(cfg, &req.session, &caller.username, caller.level).map_err(|e| fail(500, e))
}

/// Every POST: a session and a token bound to it, this user and this level.
fn check_csrf(cfg: &Config, caller: &Caller, req: &Request) -> Result<(), Fail> {
    if req.method != Method::Post {
        return Err(fail(405, "Changes are made with a form POST only."));
    }
    let t = req.f("csrf").unwrap_or("");
    if !csrf::verify(cfg, &req.session, &caller.username, caller.level, t) {
        return Err(fail(
            403,
            "The form's security token is missing or not valid for this session: nothing was changed. Open the page again and resubmit.",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Pages

const PAGE_SIZE: usize = 50;

fn exe() -> Result<std::path::PathBuf, Fail> {
    std::env::current_exe().map_err(|e| fail(500, format!("own path: {e}")))
}

/// Admin and reseller overview, from the snapshot.
fn index(cfg: &Config, caller: &Caller, req: &Request) -> Out {
    let mut status = snapshot::status(cfg);
    let loaded = snapshot::load(cfg).map_err(|e| fail(500, e))?;
    if loaded.is_none() && !status.running {
        snapshot::start(cfg, &exe()?).map_err(|e| fail(500, e))?;
        status = snapshot::status(cfg);
        status.running = true;
    }
    let page = req
        .q("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let snap = loaded.map(|(s, age)| (s.scoped(|u| caller.may_see_user(u), caller.is_admin()), age));
    let last_hook = if caller.is_admin() {
        std::fs::read(crate::hooks::state_dir(cfg).join("last-hook.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    } else {
        None
    };
    let b = views::Base::new(caller.level, &caller.username);
    let body = views::index(
        &b,
        caller,
        snap,
        &status,
        last_hook,
        page,
        PAGE_SIZE,
        token(cfg, caller, req)?,
    );
    Ok(Response::html(200, body))
}

/// A user's own domains: a live scan of their files (cheap: one user).
fn user_index(cfg: &Config, caller: &Caller, _req: &Request) -> Out {
    let r = crate::scan::scan(
        cfg,
        &Scope {
            user: Some(caller.username.clone()),
            domain: None,
        },
    )
    .map_err(|e| fail(500, e))?;
    let snap = Snap::from_report(&r)
        .map_err(|e| fail(500, e))?
        .scoped(|u| caller.may_see_user(u), false);
    let b = views::Base::new(caller.level, &caller.username);
    Ok(Response::html(200, views::user_index(&b, &snap)))
}

fn rescan(cfg: &Config, caller: &Caller, req: &Request) -> Out {
    check_csrf(cfg, caller, req)?;
    if caller.level == Level::User {
        return Err(fail(403, "Your page always shows a fresh check."));
    }
    snapshot::start(cfg, &exe()?).map_err(|e| fail(500, e))?;
    let b = views::Base::new(caller.level, &caller.username);
    Ok(Response::html(200, views::rescan_started(&b)))
}

fn domain_param(req: &Request) -> Result<&str, Fail> {
    let d = match req.method {
        Method::Post => req.f("domain"),
        _ => req.q("domain"),
    };
    d.filter(|d| !d.is_empty())
        .ok_or_else(|| fail(400, "Which domain? (domain=…)"))
}

fn domain_page(cfg: &Config, caller: &Caller, req: &Request) -> Out {
    let d = domain_param(req)?;
    let u = owner(cfg, caller, d)?;
    let r = crate::scan::scan(
        cfg,
        &Scope {
            user: Some(u.clone()),
            domain: Some(d.to_string()),
        },
    )
    .map_err(|e| fail(500, e))?;
    let snap = Snap::from_report(&r)
        .map_err(|e| fail(500, e))?
        .scoped(|x| caller.may_see_user(x), caller.is_admin());
    let b = views::Base::new(caller.level, &caller.username);
    Ok(Response::html(200, views::domain(&b, d, &u, &snap)))
}

/// What a repair request covers: one domain or everything the caller may repair.
enum Target {
    Domain(String, String),
    All,
}

fn target(cfg: &Config, caller: &Caller, req: &Request) -> Result<Target, Fail> {
    let all = match req.method {
        Method::Post => req.f("all"),
        _ => req.q("all"),
    };
    if all == Some("1") {
        return Ok(Target::All);
    }
    let d = domain_param(req)?;
    let u = owner(cfg, caller, d)?;
    Ok(Target::Domain(d.to_string(), u))
}

/// A fresh proposal for the target, the plans the caller may apply marked.
fn propose(cfg: &Config, caller: &Caller, t: &Target) -> Result<(Vec<Planned>, String), Fail> {
    let scopes: Vec<Scope> = match (t, &caller.users) {
        (Target::Domain(d, u), _) => vec![Scope {
            user: Some(u.clone()),
            domain: Some(d.clone()),
        }],
        (Target::All, None) => vec![Scope::default()],
        (Target::All, Some(users)) => users
            .iter()
            .map(|u| Scope {
                user: Some(u.clone()),
                domain: None,
            })
            .collect(),
    };
    let (mut planned, mut diff) = (Vec::new(), String::new());
    for s in scopes {
        let p = repair::propose(cfg, &s).map_err(|e| fail(500, e))?;
        // Non-admins do not see server-wide findings at all.
        let visible = p.planned.into_iter().filter(|p| match &p.finding.user {
            Some(u) => caller.may_see_user(u),
            None => caller.is_admin(),
        });
        planned.extend(visible);
        diff.push_str(&p.diff);
    }
    if !caller.is_admin() {
        // The diff shows only what the caller may apply.
        let mine: Vec<crate::apply::Plan> = planned
            .iter()
            .filter(|p| access::may_apply(cfg, caller, p) && !p.plan.edits.is_empty())
            .map(|p| p.plan.clone())
            .collect();
        diff = crate::apply::diff(cfg, &mine);
    }
    Ok((planned, diff))
}

fn repair_preview(cfg: &Config, caller: &Caller, req: &Request) -> Out {
    let t = target(cfg, caller, req)?;
    let (planned, diff) = propose(cfg, caller, &t)?;
    let b = views::Base::new(caller.level, &caller.username);
    let domain = match &t {
        Target::Domain(d, _) => Some(d.as_str()),
        Target::All => None,
    };
    let allowed: Vec<bool> = planned
        .iter()
        .map(|p| access::may_apply(cfg, caller, p))
        .collect();
    Ok(Response::html(
        200,
        views::repair_preview(&b, domain, &planned, &allowed, &diff, token(cfg, caller, req)?),
    ))
}

fn repair_apply(cfg: &Config, caller: &Caller, req: &Request) -> Out {
    check_csrf(cfg, caller, req)?;
    let t = target(cfg, caller, req)?;
    let wanted: Vec<&str> = req
        .form
        .iter()
        .filter(|(k, _)| k == "plan")
        .map(|(_, v)| v.as_str())
        .collect();
    if wanted.is_empty() {
        return Err(fail(400, "No repair was selected: nothing was changed."));
    }
    let (planned, _) = propose(cfg, caller, &t)?;
    let mut chosen: Vec<&Planned> = Vec::new();
    for id in &wanted {
        match planned.iter().find(|p| p.id() == *id) {
            Some(p) if access::may_apply(cfg, caller, p) => {
                if !chosen.iter().any(|c| std::ptr::eq(*c, p)) {
                    chosen.push(p)
                }
            }
            Some(_) => return Err(fail(403, "That repair is for your administrator: nothing was changed.")),
            None => {
                return Err(fail(
                    409,
                    "The configuration changed since the preview (or the repair is already done): nothing was changed. Review the new preview.",
                ))
            }
        }
    }
    let report = repair::execute(cfg, &chosen, None);
    refresh_after(cfg, &chosen);
    let b = views::Base::new(caller.level, &caller.username);
    let back = match &t {
        Target::Domain(d, _) => Some(d.as_str()),
        Target::All => None,
    };
    Ok(Response::html(200, views::applied(&b, &report, back)))
}

/// Keeps the overview right after a change: per-user rows are re-scanned
/// now; a server-wide change starts a full background scan.
fn refresh_after(cfg: &Config, chosen: &[&Planned]) {
    let mut users: Vec<String> = Vec::new();
    let mut server_wide = false;
    for p in chosen {
        match (&p.finding.user, &p.finding.domain) {
            (Some(u), Some(_)) if p.finding.layer == Some("custom") || p.finding.layer == Some("panel") => {
                if !users.contains(u) {
                    users.push(u.clone());
                }
            }
            _ => server_wide = true,
        }
    }
    if server_wide {
        if let Ok(e) = std::env::current_exe() {
            let _ = snapshot::start(cfg, &e);
        }
    } else {
        let _ = snapshot::refresh_users(cfg, &users);
    }
}

/// A journal entry is the caller's when every file it touched is inside
/// one of their users' DA folders.
fn entry_visible(cfg: &Config, caller: &Caller, e: &crate::apply::JournalEntry) -> bool {
    if caller.is_admin() {
        return true;
    }
    let files: Vec<&str> = e
        .files
        .iter()
        .map(|f| f.file.as_str())
        .chain(
            e.plans
                .iter()
                .flat_map(|p| p.edits.iter().map(|x| x.file.as_str())),
        )
        .collect();
    !files.is_empty()
        && files.iter().all(|f| {
            caller.users.iter().flatten().any(|u| {
                let dir = format!("{}/", join(&join(&cfg.paths.users_dir, u), "domains"));
                f.starts_with(&dir) && !f.contains("/../")
            })
        })
        && e.rewrite_users.iter().all(|u| caller.may_see_user(u))
}

fn history(cfg: &Config, caller: &Caller, req: &Request) -> Out {
    let mut h: Vec<_> = crate::apply::history(cfg)
        .into_iter()
        .filter(|e| entry_visible(cfg, caller, e))
        .collect();
    h.reverse();
    let b = views::Base::new(caller.level, &caller.username);
    Ok(Response::html(
        200,
        views::history(&b, &h, token(cfg, caller, req)?),
    ))
}

fn undo(cfg: &Config, caller: &Caller, req: &Request) -> Out {
    check_csrf(cfg, caller, req)?;
    let id = req.f("id").unwrap_or("");
    if !crate::apply::journal::valid_id(id) {
        return Err(fail(400, "Not a repair id."));
    }
    let Some(e) = crate::apply::history(cfg).into_iter().find(|e| e.id == id) else {
        return Err(fail(404, "No such repair."));
    };
    if !entry_visible(cfg, caller, &e) {
        return Err(fail(404, "No such repair."));
    }
    let report = crate::apply::undo(cfg, id, &crate::apply::ApplyOptions::default());
    let users: Vec<String> = e.rewrite_users.clone();
    if caller.is_admin() && users.is_empty() {
        let _ = exe().map(|x| snapshot::start(cfg, &x));
    } else {
        let _ = snapshot::refresh_users(cfg, &users);
    }
    let b = views::Base::new(caller.level, &caller.username);
    Ok(Response::html(200, views::applied(&b, &report, None)))
}

fn scan_json(cfg: &Config, caller: &Caller) -> Out {
    if caller.level == Level::User {
        let r = crate::scan::scan(
            cfg,
            &Scope {
                user: Some(caller.username.clone()),
                domain: None,
            },
        )
        .map_err(|e| fail(500, e))?;
        let s = Snap::from_report(&r)
            .map_err(|e| fail(500, e))?
            .scoped(|u| caller.may_see_user(u), false);
        return Ok(Response::json(200, &s));
    }
    match snapshot::load(cfg).map_err(|e| fail(500, e))? {
        Some((s, age)) => {
            let s = s.scoped(|u| caller.may_see_user(u), caller.is_admin());
            Ok(Response::json(
                200,
                &serde_json::json!({"age_secs": age, "report": s}),
            ))
        }
        None => Ok(Response::json(
            200,
            &serde_json::json!({"age_secs": null, "report": null, "status": snapshot::status(cfg)}),
        )),
    }
}
