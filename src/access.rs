//! Who may see and repair what. The level of a page comes from where its
//! wrapper lives (admin/, reseller/, user/), the identity from DA's session
//! (`USERNAME`), and the effective level is the lower of the wrapper's level
//! and the rights DA's own lists give that user. A request parameter never
//! widens it.

use crate::config::Config;
use crate::readers::{da, join, kv, Fs};
use serde::Serialize;

/// DirectAdmin access levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    User,
    Reseller,
    Admin,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::User => "user",
            Level::Reseller => "reseller",
            Level::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "user" => Some(Level::User),
            "reseller" => Some(Level::Reseller),
            "admin" => Some(Level::Admin),
            _ => None,
        }
    }
}

/// A caller whose identity and level have been checked against DA's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub username: String,
    pub level: Level,
    /// The DA users whose domains this caller may see and repair: `None` = all.
    pub users: Option<Vec<String>>,
}

impl Caller {
    pub fn may_see_user(&self, u: &str) -> bool {
        self.users.as_ref().is_none_or(|list| list.iter().any(|x| x == u))
    }

    /// Server-wide layers, service restarts, firewall and MySQL actions.
    pub fn is_admin(&self) -> bool {
        self.level == Level::Admin
    }
}

/// Whether `caller` may apply `p`. Admins may apply anything that writes;
/// resellers and users only fixes in their own domains' `.cust_*` files and
/// domain conf (per-domain layers), with DA rewriting only their own users.
/// Server-wide layers, service restarts, firewall and MySQL are admin only.
pub fn may_apply(cfg: &Config, caller: &Caller, p: &crate::repair::Planned) -> bool {
    use crate::apply::Safety;
    if p.plan.safety == Safety::Manual {
        return false;
    }
    if caller.is_admin() {
        return true;
    }
    let (Some(user), Some(_)) = (&p.finding.user, &p.finding.domain) else {
        return false;
    };
    if !da::valid_name(user) || !caller.may_see_user(user) {
        return false;
    }
    match p.finding.layer {
        Some("custom") => {}
        // A PHP-slot change only where DA lets users choose PHP.
        Some("panel") if cfg.access.users_choose_php => {}
        _ => return false,
    }
    let own = format!("{}/", join(&join(&cfg.paths.users_dir, user), "domains"));
    let files_ok =
        p.plan.edits.iter().all(|e| {
            e.file.starts_with(&own) && !e.file.contains("/../") && !e.file[own.len()..].contains('/')
        });
    files_ok && p.plan.rewrite_users.iter().all(|u| caller.may_see_user(u))
}

/// Why a caller was refused (shown to them; never names other accounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

fn list(fs: &Fs, path: &str) -> Vec<String> {
    fs.read(path)
        .ok()
        .flatten()
        .map(|b| kv::list(&b))
        .unwrap_or_default()
}

/// The level DA's own data gives `username`: admin.list, reseller.list,
/// else a user with a user.conf.
pub fn da_level(cfg: &Config, username: &str) -> Option<Level> {
    if !da::valid_name(username) {
        return None;
    }
    let fs = Fs::new(cfg);
    let admin_dir = &cfg.paths.admin_dir;
    if list(&fs, &join(admin_dir, "admin.list"))
        .iter()
        .any(|a| a == username)
    {
        return Some(Level::Admin);
    }
    if list(&fs, &join(admin_dir, "reseller.list"))
        .iter()
        .any(|r| r == username)
    {
        return Some(Level::Reseller);
    }
    let conf = join(&join(&cfg.paths.users_dir, username), "user.conf");
    fs.exists(&conf).then_some(Level::User)
}

/// Resolves a caller: `wrapper` is the level of the page's folder, `username`
/// DA's `USERNAME`. The effective level is the lower of the two.
pub fn resolve(cfg: &Config, wrapper: Level, username: &str) -> Result<Caller, Denied> {
    let Some(has) = da_level(cfg, username) else {
        return Err(Denied("unknown DirectAdmin user".into()));
    };
    let level = wrapper.min(has);
    let fs = Fs::new(cfg);
    let users = match level {
        Level::Admin => None,
        Level::Reseller => {
            // The reseller's own account and the users it created.
            let mut v = vec![username.to_string()];
            let path = join(&join(&cfg.paths.users_dir, username), "users.list");
            v.extend(list(&fs, &path).into_iter().filter(|u| da::valid_name(u)));
            v.sort();
            v.dedup();
            Some(v)
        }
        Level::User => Some(vec![username.to_string()]),
    };
    Ok(Caller {
        username: username.to_string(),
        level,
        users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(root: &Path, p: &str, c: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }

    fn tree() -> (tempfile::TempDir, Config) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let u = "/usr/local/directadmin/data/users";
        write(r, "/usr/local/directadmin/data/admin/admin.list", "admin\n");
        write(
            r,
            "/usr/local/directadmin/data/admin/reseller.list",
            "res1\nres2\n",
        );
        for n in ["admin", "res1", "res2", "alice", "bob", "carol"] {
            write(r, &format!("{u}/{n}/user.conf"), "usertype=user\n");
        }
        write(r, &format!("{u}/res1/users.list"), "alice\nbob\n");
        write(r, &format!("{u}/res2/users.list"), "carol\n../etc\n");
        let cfg = Config::load(None, Some(r)).unwrap();
        (t, cfg)
    }

    #[test]
    fn effective_level_is_the_lower_of_wrapper_and_rights() {
        let (_t, cfg) = tree();
        assert_eq!(resolve(&cfg, Level::Admin, "admin").unwrap().level, Level::Admin);
        assert_eq!(resolve(&cfg, Level::User, "admin").unwrap().level, Level::User);
        assert_eq!(
            resolve(&cfg, Level::Admin, "alice").unwrap().level,
            Level::User,
            "a user on the admin page is a user"
        );
        assert_eq!(
            resolve(&cfg, Level::Admin, "res1").unwrap().level,
            Level::Reseller
        );
        assert!(resolve(&cfg, Level::Admin, "mallory").is_err());
        assert!(resolve(&cfg, Level::Admin, "../admin").is_err());
    }

    #[test]
    fn resellers_see_their_own_users_only() {
        let (_t, cfg) = tree();
        let r1 = resolve(&cfg, Level::Reseller, "res1").unwrap();
        assert!(r1.may_see_user("alice") && r1.may_see_user("bob") && r1.may_see_user("res1"));
        assert!(!r1.may_see_user("carol"), "another reseller's user");
        let r2 = resolve(&cfg, Level::Reseller, "res2").unwrap();
        assert_eq!(
            r2.users.as_deref(),
            Some(&["carol".to_string(), "res2".to_string()][..]),
            "path tricks dropped"
        );
        let a = resolve(&cfg, Level::User, "alice").unwrap();
        assert!(a.may_see_user("alice") && !a.may_see_user("bob"));
        assert!(resolve(&cfg, Level::Admin, "admin")
            .unwrap()
            .may_see_user("anyone"));
    }
}

#[cfg(test)]
mod apply_tests {
    use super::*;
    use crate::apply::{Edit, Plan, Safety, Target};
    use crate::checks::{Finding, Severity};

    fn planned(layer: &'static str, file: &str) -> crate::repair::Planned {
        let mut f = Finding::new("socket-drift", Severity::Critical, String::new());
        f.user = Some("alice".into());
        f.domain = Some("a.test".into());
        f.layer = Some(layer);
        crate::repair::Planned {
            finding: f,
            plan: Plan {
                finding: String::new(),
                safety: Safety::Confirm,
                edits: vec![Edit {
                    file: file.into(),
                    start: 0,
                    end: 1,
                    old: b"2".to_vec(),
                    new: b"1".to_vec(),
                }],
                rewrite_users: vec!["alice".into()],
                actions: vec![],
                target: Target::Nginx,
                advice: None,
            },
        }
    }

    #[test]
    fn users_change_a_php_slot_only_where_da_lets_them_choose_php() {
        let mut cfg = Config::default();
        let alice = Caller {
            username: "alice".into(),
            level: Level::User,
            users: Some(vec!["alice".into()]),
        };
        let conf = "/usr/local/directadmin/data/users/alice/domains/a.test.conf";
        let cust = "/usr/local/directadmin/data/users/alice/domains/a.test.cust_nginx";
        assert!(may_apply(&cfg, &alice, &planned("custom", cust)));
        assert!(
            !may_apply(&cfg, &alice, &planned("panel", conf)),
            "admin-only by default"
        );
        cfg.access.users_choose_php = true;
        assert!(may_apply(&cfg, &alice, &planned("panel", conf)));
        assert!(!may_apply(
            &cfg,
            &alice,
            &planned("template", "/usr/local/directadmin/data/templates/custom/x")
        ));
    }
}
