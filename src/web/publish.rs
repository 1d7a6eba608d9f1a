//! Read-only pages for servers where `*_run_as` does not take effect. There
//! DirectAdmin runs a page as the logged-in account, which may not execute
//! the setuid binary (4750 root:fpm_doctor); the wrapper then shows the
//! fragment root published here for that account: `<public_dir>/<level>/<account>.html`,
//! mode 0640, group = the account's own group, so each account reads its
//! own view and nobody else's.

use super::snapshot::Snap;
use crate::access::{self, Level};
use crate::config::Config;
use crate::readers::{join, kv, Fs};
use askama::Template;
use std::os::unix::fs::PermissionsExt;

struct Evidence {
    check: String,
    place: String,
    message: String,
}

struct RoRow {
    domain: String,
    user: String,
    php: String,
    expected: String,
    status: String,
    evidence: Vec<Evidence>,
}

#[derive(Template)]
#[template(path = "readonly.html")]
struct ReadOnlyT<'a> {
    css: &'a str,
    scanned: String,
    account: &'a str,
    level: &'a str,
    verdict: &'a str,
    total: usize,
    ok: usize,
    bad: usize,
    rows: Vec<RoRow>,
}

/// The read-only fragment of `snap` as `caller` may see it.
pub fn render(snap: &Snap, scanned_unix: i64, caller: &access::Caller) -> String {
    let snap = snap.clone().scoped(|u| caller.may_see_user(u), caller.is_admin());
    let ok = snap.domains.iter().filter(|d| d.status == "ok").count();
    let rows = snap
        .domains
        .iter()
        .filter(|d| d.status != "ok")
        .map(|d| RoRow {
            domain: d.domain.clone(),
            user: d.user.clone(),
            php: d.php_release.clone().unwrap_or_default(),
            expected: d.expected_socket.clone().unwrap_or_default(),
            status: d.status.clone(),
            evidence: snap
                .findings
                .iter()
                .filter(|f| f.severity != "info")
                .filter(|f| f.domain.as_deref() == Some(&d.domain) || f.affected_domains.contains(&d.domain))
                .map(|f| Evidence {
                    check: f.check.clone(),
                    place: match (&f.file, f.line) {
                        (Some(file), Some(l)) => format!("{file}:{l}"),
                        (Some(file), None) => file.clone(),
                        _ => String::new(),
                    },
                    message: f.message.clone(),
                })
                .collect(),
        })
        .collect();
    let t = ReadOnlyT {
        css: super::views::CSS,
        scanned: crate::evidence::logread::format_time(scanned_unix),
        account: &caller.username,
        level: caller.level.as_str(),
        verdict: &snap.verdict,
        total: snap.domains.len(),
        ok,
        bad: snap.domains.len() - ok,
        rows,
    };
    t.render()
        .unwrap_or_else(|e| format!("<p>FPM Doctor: cannot render: {e}</p>"))
}

fn list(fs: &Fs, path: &str) -> Vec<String> {
    fs.read(path)
        .ok()
        .flatten()
        .map(|b| kv::list(&b))
        .unwrap_or_default()
}

/// Writes every account's read-only view; returns how many were written.
pub fn publish(cfg: &Config, snap: &Snap, scanned_unix: i64) -> Result<usize, String> {
    let fs = Fs::new(cfg);
    let passwd = fs.read(&cfg.paths.passwd)?.unwrap_or_default();
    let accounts = crate::accounts::Accounts::parse(&passwd, b"");
    let public = cfg.host(&cfg.paths.public_dir);
    let mkdir = |p: &std::path::Path| -> Result<(), String> {
        std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
        // Traversable, not listable: each account reads only its own file.
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).map_err(|e| e.to_string())
    };
    mkdir(&public)?;
    let mut wanted: Vec<(Level, String)> = Vec::new();
    for a in list(&fs, &join(&cfg.paths.admin_dir, "admin.list")) {
        wanted.push((Level::Admin, a));
    }
    for r in list(&fs, &join(&cfg.paths.admin_dir, "reseller.list")) {
        wanted.push((Level::Reseller, r));
    }
    for u in crate::readers::da::list_users(&fs, None)? {
        wanted.push((Level::User, u));
    }
    let mut n = 0;
    for (level, name) in wanted {
        let Ok(caller) = access::resolve(cfg, level, &name) else {
            continue;
        };
        let Some(acc) = accounts.user(&name) else { continue };
        let dir = public.join(level.as_str());
        mkdir(&dir)?;
        let html = render(snap, scanned_unix, &caller);
        let tmp = dir.join(format!(".{name}.html.tmp"));
        let dst = dir.join(format!("{name}.html"));
        let _ = std::fs::remove_file(&tmp);
        std::fs::write(&tmp, html).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640)).map_err(|e| e.to_string())?;
        nix::unistd::chown(
            &tmp,
            Some(nix::unistd::Uid::from_raw(0)),
            Some(nix::unistd::Gid::from_raw(acc.gid)),
        )
        .map_err(|e| format!("chown {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &dst).map_err(|e| format!("{}: {e}", dst.display()))?;
        n += 1;
    }
    Ok(n)
}
