//! The local web face: `fpm-doctor serve` and `fpm-doctor demo --serve`.
//! It wraps the same fragments as the CGI face in a full page and serves
//! `images/` (embedded). Routes are `/<level>/<page>`; the level comes from
//! the route and is lowered by [`crate::access::resolve`] like a DA folder.
//!
//! Outside the demo the caller is the server's administrator holding the
//! token in `<state_dir>/web.token` (0600): `?token=` once sets a cookie.
//! Host and Origin must name the bound address (no DNS rebinding, no
//! cross-site form posts). In the demo the identity is picked with `?as=`.

use super::{handle, parse_pairs, Method, Request, PAGES};
use crate::access::Level;
use crate::config::Config;
use actix_web::{http::header, web, App, HttpRequest, HttpResponse, HttpServer};
use askama::Template;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Default port: next to DA's 2222 so it is easy to recognise, and not one
/// DA (2222, 80/443), its nginx_apache backend (8080/8081) or webmail use.
pub const DEFAULT_BIND: &str = "127.0.0.1:2223";

const TOKEN_FILE: &str = "web.token";

#[derive(rust_embed::RustEmbed)]
#[folder = "images/"]
struct Assets;

/// The demo's accounts for the identity switch.
#[derive(Clone)]
pub struct Demo {
    pub root: PathBuf,
    /// (level, user) pairs offered by the switch; the first of a level is its default.
    pub identities: Vec<(Level, String)>,
}

struct State {
    cfg: Config,
    bind: SocketAddr,
    demo: Option<Demo>,
    token: Option<String>,
    /// Outside the demo: the DA admin the token holder acts as.
    admin: String,
}

#[derive(Template)]
#[template(path = "layout.html")]
struct Layout<'a> {
    demo: bool,
    root: String,
    switch: Vec<(String, String, bool)>,
    fragment: &'a str,
}

/// The token outside the demo, created 0600 on first use.
pub fn token(cfg: &Config) -> Result<String, String> {
    let dir = crate::hooks::state_dir(cfg);
    crate::apply::fsx::ensure_private_dir(&dir)?;
    let p = dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&p) {
        let t = t.trim().to_string();
        if t.len() >= 32 {
            return Ok(t);
        }
    }
    let t = super::csrf::hex(&super::csrf::random_bytes(32)?);
    crate::apply::fsx::write_private(&p, t.as_bytes())?;
    Ok(t)
}

fn first_admin(cfg: &Config) -> Option<String> {
    let fs = crate::readers::Fs::new(cfg);
    let src = fs
        .read(&crate::readers::join(&cfg.paths.admin_dir, "admin.list"))
        .ok()
        .flatten()?;
    crate::readers::kv::list(&src).into_iter().next()
}

/// Serves until killed. `demo`: no token, identity switch, banner.
pub fn run(cfg: Config, bind: SocketAddr, demo: Option<Demo>) -> Result<(), String> {
    let token = match demo {
        Some(_) => None,
        None => Some(token(&cfg)?),
    };
    let admin = first_admin(&cfg).unwrap_or_else(|| "admin".into());
    match (&token, &demo) {
        (Some(t), _) => println!("FPM Doctor: open http://{bind}/?token={t} (once; a cookie keeps you in)"),
        (None, Some(d)) => println!(
            "FPM Doctor demo on http://{bind}/ (tree in {}); Ctrl-C stops it",
            d.root.display()
        ),
        _ => {}
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let state = web::Data::new(State {
        cfg,
        bind,
        demo,
        token,
        admin,
    });
    actix_web::rt::System::new()
        .block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .app_data(web::PayloadConfig::new(1 << 20))
                    .default_service(web::to(dispatch))
            })
            .workers(2)
            .bind(bind)?
            .run()
            .await
        })
        .map_err(|e| format!("serve on {bind}: {e}"))
}

/// One cookie's value (actix's cookie feature is off to keep the binary small).
fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn plain(status: u16, msg: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/plain; charset=utf-8")
        .body(msg.to_string())
}

/// Constant-time string comparison for the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn host_ok(st: &State, req: &HttpRequest) -> bool {
    let port = st.bind.port();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let allowed = [
        format!("{}", st.bind),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
    ];
    let host_ok = allowed.iter().any(|a| a == host);
    let origin_ok = match req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(o) => allowed.iter().any(|a| o == format!("http://{a}")),
    };
    host_ok && origin_ok
}

async fn dispatch(req: HttpRequest, body: web::Bytes, st: web::Data<State>) -> HttpResponse {
    if !host_ok(&st, &req) {
        return plain(403, "wrong Host or Origin for this server");
    }
    let path = req.path().to_string();
    if let Some(name) = path.strip_prefix("/static/") {
        return match Assets::get(name) {
            Some(f) => HttpResponse::Ok()
                .content_type(mime(name))
                .insert_header((header::CACHE_CONTROL, "max-age=3600"))
                .body(f.data.into_owned()),
            None => plain(404, "not found"),
        };
    }
    let query = parse_pairs(req.query_string());
    let get_q = |k: &str| query.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let mut set_cookies: Vec<String> = Vec::new();
    if let Some(expected) = &st.token {
        match get_q("token") {
            Some(t) if same(&t, expected) => {
                // Trade the URL token for a cookie, and drop it from the URL.
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, "/admin/index.html"))
                    .insert_header((
                        header::SET_COOKIE,
                        format!("fpmd_auth={expected}; Path=/; HttpOnly; SameSite=Strict"),
                    ))
                    .finish();
            }
            _ => {}
        }
        if !cookie(&req, "fpmd_auth").is_some_and(|c| same(&c, expected)) {
            return plain(401, "FPM Doctor: open the URL with ?token= printed by `fpm-doctor serve` (the token is in the state folder's web.token).");
        }
    }
    if path == "/" {
        let to = match &st.demo {
            Some(_) => "/admin/index.html?as=admin",
            None => "/admin/index.html",
        };
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .finish();
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(level), Some(page)) = (parts.next().and_then(Level::parse), parts.next()) else {
        return plain(404, "not found");
    };
    if !PAGES.contains(&page) {
        return plain(404, "not found");
    }
    let username = match &st.demo {
        Some(d) => {
            let picked = get_q("as").or_else(|| cookie(&req, "fpmd_as"));
            let valid = picked.filter(|u| d.identities.iter().any(|(_, x)| x == u));
            match valid {
                Some(u) => {
                    set_cookies.push(format!("fpmd_as={u}; Path=/; HttpOnly; SameSite=Strict"));
                    u
                }
                None => d
                    .identities
                    .iter()
                    .find(|(l, _)| *l == level)
                    .map(|(_, u)| u.clone())
                    .unwrap_or_default(),
            }
        }
        None => st.admin.clone(),
    };
    let session = match cookie(&req, "fpmd_session")
        .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(s) => s,
        None => {
            let s = super::csrf::random_bytes(16)
                .map(|b| super::csrf::hex(&b))
                .unwrap_or_default();
            set_cookies.push(format!("fpmd_session={s}; Path=/; HttpOnly; SameSite=Strict"));
            s
        }
    };
    let method = Method::parse(req.method().as_str());
    let r = Request {
        level,
        username: username.clone(),
        method,
        page: page.to_string(),
        query,
        form: if method == Method::Post {
            parse_pairs(&String::from_utf8_lossy(&body))
        } else {
            vec![]
        },
        session,
    };
    let st2 = st.clone();
    let resp = match web::block(move || handle(&st2.cfg, &r)).await {
        Ok(r) => r,
        Err(e) => return plain(500, &format!("worker failed: {e}")),
    };
    let status = actix_web::http::StatusCode::from_u16(resp.status).unwrap_or_default();
    let mut b = HttpResponse::build(status);
    for c in set_cookies {
        b.append_header((header::SET_COOKIE, c));
    }
    b.insert_header((header::X_FRAME_OPTIONS, "DENY"));
    b.insert_header((
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    ));
    for (k, v) in &resp.headers {
        b.insert_header((k.as_str(), v.as_str()));
    }
    if page.ends_with(".raw") {
        return b.content_type(resp.content_type).body(resp.body);
    }
    let switch = st
        .demo
        .as_ref()
        .map(|d| {
            d.identities
                .iter()
                .map(|(l, u)| {
                    (
                        format!("/{}/index.html?as={u}", l.as_str()),
                        format!("{u} ({})", l.as_str()),
                        *l == level && *u == username,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let page_html = Layout {
        demo: st.demo.is_some(),
        root: st
            .demo
            .as_ref()
            .map(|d| d.root.display().to_string())
            .unwrap_or_default(),
        switch,
        fragment: &resp.body,
    }
    .render()
    .unwrap_or_else(|e| format!("template error: {e}"));
    b.content_type("text/html; charset=utf-8").body(page_html)
}
