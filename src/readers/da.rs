//! DirectAdmin's own data: options.conf, accounts, domains, pools and the
//! customisation files (`.cust_*`) that survive a rewrite.

use super::{fpm, join, kv, Fs};
use crate::model::{Location, PhpSlot, Pool, Unknown};

/// options.conf as far as we need it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub webserver: Option<String>,
    pub php: Vec<PhpSlot>,
}

pub fn parse_options(src: &[u8], php_prefix: impl Fn(&str) -> String) -> Options {
    let lines = kv::parse(src);
    let val = |k: &str| kv::get(&lines, k).map(|l| l.value.trim().to_string());
    let mut php = Vec::new();
    for slot in 1..=4u8 {
        let Some(release) = val(&format!("php{slot}_release")) else {
            continue;
        };
        let mode = val(&format!("php{slot}_mode")).unwrap_or_default();
        let prefix = if release == "no" || release.is_empty() {
            String::new()
        } else {
            php_prefix(&release)
        };
        php.push(PhpSlot {
            slot,
            release,
            mode,
            prefix,
        });
    }
    Options {
        webserver: val("webserver"),
        php,
    }
}

/// A customisation file of a domain, read as bytes.
#[derive(Debug, Clone)]
pub struct CustFile {
    pub path: String,
    pub src: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct DaDomain {
    pub name: String,
    pub conf_file: String,
    pub php_select: Option<(u8, Location)>,
    pub nginx_only: bool,
    pub subdomains: Vec<String>,
    pub aliases: Vec<String>,
    pub cust_nginx: Option<CustFile>,
    pub cust_nginx_https: Option<CustFile>,
    pub cust_httpd: Option<CustFile>,
}

#[derive(Debug, Clone, Default)]
pub struct DaUser {
    pub name: String,
    pub dir: String,
    pub creator: Option<String>,
    pub usertype: Option<String>,
    pub domains: Vec<DaDomain>,
    pub pools: Vec<Pool>,
}

/// Users to scan: one (`--user`) or every folder of `data/users` holding a user.conf.
pub fn list_users(fs: &Fs, only: Option<&str>) -> Result<Vec<String>, String> {
    let dir = &fs.cfg.paths.users_dir;
    match only {
        Some(u) => {
            if !valid_name(u) || !fs.exists(&join(&join(dir, u), "user.conf")) {
                return Err(format!("no such DirectAdmin user: {u}"));
            }
            Ok(vec![u.to_string()])
        }
        None => Ok(fs
            .list_dir(dir)?
            .into_iter()
            .filter(|u| valid_name(u) && fs.exists(&join(&join(dir, u), "user.conf")))
            .collect()),
    }
}

/// DA user and domain names: no path tricks.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn read_opt(
    fs: &Fs,
    path: &str,
    user: &str,
    domain: Option<&str>,
    unknowns: &mut Vec<Unknown>,
) -> Option<Vec<u8>> {
    match fs.read(path) {
        Ok(b) => b,
        Err(reason) => {
            unknowns.push(Unknown {
                user: Some(user.to_string()),
                domain: domain.map(str::to_string),
                file: path.to_string(),
                line: None,
                reason,
            });
            None
        }
    }
}

/// Reads one user: user.conf, domains.list, each domain's conf, subdomains,
/// pointers, `.cust_*` files, and the user's FPM pools.
pub fn read_user(fs: &Fs, name: &str, only_domain: Option<&str>, unknowns: &mut Vec<Unknown>) -> DaUser {
    let dir = join(&fs.cfg.paths.users_dir, name);
    let mut user = DaUser {
        name: name.to_string(),
        dir: dir.clone(),
        ..Default::default()
    };
    if let Some(src) = read_opt(fs, &join(&dir, "user.conf"), name, None, unknowns) {
        let l = kv::parse(&src);
        user.creator = kv::get(&l, "creator").map(|l| l.value.trim().to_string());
        user.usertype = kv::get(&l, "usertype").map(|l| l.value.trim().to_string());
    }
    let list_path = join(&dir, "domains.list");
    let domains = match read_opt(fs, &list_path, name, None, unknowns) {
        Some(src) => kv::list(&src),
        None => {
            if !fs.exists(&list_path) {
                unknowns.push(Unknown {
                    user: Some(name.to_string()),
                    domain: None,
                    file: list_path,
                    line: None,
                    reason: "domains.list is missing: the user's domains cannot be known".into(),
                });
            }
            vec![]
        }
    };
    let ddir = join(&dir, "domains");
    for d in domains {
        if !valid_name(&d) {
            unknowns.push(Unknown {
                user: Some(name.to_string()),
                domain: None,
                file: join(&dir, "domains.list"),
                line: None,
                reason: format!("invalid domain name {d:?} in domains.list"),
            });
            continue;
        }
        if only_domain.is_some_and(|o| o != d) {
            continue;
        }
        user.domains.push(read_domain(fs, name, &ddir, &d, unknowns));
    }
    user.pools = read_pools(fs, name, &join(&dir, "php"), unknowns);
    user
}

fn read_domain(fs: &Fs, user: &str, ddir: &str, d: &str, unknowns: &mut Vec<Unknown>) -> DaDomain {
    let base = join(ddir, d);
    let conf_file = format!("{base}.conf");
    let mut dom = DaDomain {
        name: d.to_string(),
        conf_file: conf_file.clone(),
        ..Default::default()
    };
    match read_opt(fs, &conf_file, user, Some(d), unknowns) {
        Some(src) => {
            let l = kv::parse(&src);
            if let Some(sel) = kv::get(&l, "php1_select") {
                match sel.value.trim().parse::<u8>() {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(
                            &src[sel.value_start - "php1_select=".len()..sel.value_end],
                        )
                        .into_owned();
                        dom.php_select = Some((
                            n,
                            Location {
                                file: conf_file.clone(),
                                line: sel.line,
                                text,
                                start: sel.value_start,
                                end: sel.value_end,
                            },
                        ));
                    }
                    Err(_) => unknowns.push(Unknown {
                        user: Some(user.into()),
                        domain: Some(d.into()),
                        file: conf_file.clone(),
                        line: Some(sel.line),
                        reason: format!("php1_select={} is not a slot number", sel.value.trim()),
                    }),
                }
            }
            dom.nginx_only = kv::get(&l, "nginx").is_some_and(|l| l.value.trim() == "1");
        }
        None => {
            if !fs.exists(&conf_file) {
                unknowns.push(Unknown {
                    user: Some(user.into()),
                    domain: Some(d.into()),
                    file: conf_file.clone(),
                    line: None,
                    reason: "domain conf is missing: its PHP slot is unknown".into(),
                });
            }
        }
    }
    if let Some(src) = read_opt(fs, &format!("{base}.subdomains"), user, Some(d), unknowns) {
        dom.subdomains = kv::list(&src).into_iter().filter(|s| valid_name(s)).collect();
    }
    if let Some(src) = read_opt(fs, &format!("{base}.pointers"), user, Some(d), unknowns) {
        // `alias.test=type=alias` or `pointer.test=type=pointer`; only aliases share the vhost.
        for l in kv::parse(&src) {
            if valid_name(&l.key) {
                dom.aliases.push(l.key);
            }
        }
    }
    for (ext, slot) in [
        ("cust_nginx", &mut dom.cust_nginx),
        ("cust_nginx_https", &mut dom.cust_nginx_https),
        ("cust_httpd", &mut dom.cust_httpd),
    ] {
        let path = format!("{base}.{ext}");
        if let Some(src) = read_opt(fs, &path, user, Some(d), unknowns) {
            *slot = Some(CustFile { path, src });
        }
    }
    dom
}

fn read_pools(fs: &Fs, user: &str, php_dir: &str, unknowns: &mut Vec<Unknown>) -> Vec<Pool> {
    let names = match fs.list_dir(php_dir) {
        Ok(n) => n,
        Err(reason) => {
            unknowns.push(Unknown {
                user: Some(user.into()),
                domain: None,
                file: php_dir.into(),
                line: None,
                reason,
            });
            return vec![];
        }
    };
    let mut pools = Vec::new();
    for n in names {
        let Some(digits) = fpm::version_of_pool_file(&n) else {
            continue;
        };
        let path = join(php_dir, &n);
        if let Some(src) = read_opt(fs, &path, user, None, unknowns) {
            pools.extend(fpm::parse(&path, &digits, &src).pools);
        }
    }
    pools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_slots() {
        let o = parse_options(
            b"webserver=nginx\nphp1_release=8.3\nphp1_mode=php-fpm\nphp2_release=no\nphp2_mode=php-fpm\nphp3_release=7.4\nphp3_mode=lsphp\n",
            |r| format!("/usr/local/php{}", r.replace('.', "")),
        );
        assert_eq!(o.webserver.as_deref(), Some("nginx"));
        assert_eq!(o.php.len(), 3);
        assert_eq!(o.php[0].prefix, "/usr/local/php83");
        assert!(o.php[0].is_fpm());
        assert!(!o.php[1].is_enabled());
        assert!(!o.php[2].is_fpm());
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_name("alice"));
        assert!(valid_name("a-b.test"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert!(!valid_name(".hidden"));
    }
}
