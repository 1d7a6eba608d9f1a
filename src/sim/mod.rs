//! Simulated DirectAdmin, for the demo command, benchmarks and tests. The
//! scanner never uses it: it must work from what a real server has on disk.
//!
//! - [`write_tree`] writes what DA *keeps* (options.conf, user.conf,
//!   domains.list, domain confs, `.cust_*` files, passwd/group, docroots)
//!   under a root dir, then runs [`rewrite`].
//! - [`rewrite`] is the **DA rewrite emulator** (see `rewrite.rs`): from the
//!   tree alone it regenerates what DA generates (user nginx.conf,
//!   nginx_php.conf, httpd.conf, FPM pools, /etc/nginx files, overlays).
//! - [`upgrade_php`] does what CustomBuild does to the config on a PHP
//!   upgrade; [`generate_large`] makes big trees for benchmarks.
//!
//! All paths written are server paths mapped under `root`.

mod large;
mod rewrite;
pub mod template;

pub use large::generate_large;
pub use rewrite::{rewrite, rewrite_user};

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// DirectAdmin's home (server path).
pub const DA_DIR: &str = "/usr/local/directadmin";
/// The server's hostname in the simulated tree.
pub const HOSTNAME: &str = "server.sim.test";
/// Listen IP used when no [`NginxRuntime`] is given (TEST-NET-1).
pub const DEFAULT_IP: &str = "192.0.2.10";
/// Sim-only settings that real DA hard-codes or takes from the live system;
/// kept in the tree so that [`rewrite`] needs nothing but the tree.
pub const SIM_CONF: &str = "/usr/local/directadmin/conf/sim.conf";

/// A whole simulated server.
#[derive(Debug, Clone)]
pub struct SimServer {
    /// `nginx`, `nginx_apache` or `apache`.
    pub webserver: String,
    /// Slots 1..=4 in order: (release like "8.3" or "no", mode like "php-fpm").
    pub php: Vec<(String, String)>,
    pub admins: Vec<String>,
    pub resellers: Vec<String>,
    pub users: Vec<SimUser>,
    /// nginx worker user; DA's is `nginx`.
    pub nginx_user: String,
    /// Set to make the generated nginx config runnable by a test.
    pub runtime: Option<NginxRuntime>,
}

#[derive(Debug, Clone)]
pub struct SimUser {
    pub name: String,
    /// The reseller or admin that created the account.
    pub creator: String,
    /// `user`, `reseller` or `admin`.
    pub usertype: String,
    pub uid: u32,
    pub domains: Vec<SimDomain>,
}

#[derive(Debug, Clone, Default)]
pub struct SimDomain {
    pub name: String,
    /// `php1_select=N` (a slot, not a version); `None` = slot 1.
    pub php1_select: Option<u8>,
    /// Subdomain labels (`shop` for `shop.<domain>`).
    pub subdomains: Vec<String>,
    /// Alias pointers (full names).
    pub aliases: Vec<String>,
    pub ssl: bool,
    /// `nginx=1` in the domain conf: nginx serves PHP itself in nginx_apache mode.
    pub nginx_only: bool,
    pub cust_nginx: Option<String>,
    pub cust_nginx_https: Option<String>,
    pub cust_httpd: Option<String>,
}

/// What a test needs to really run nginx on a written tree. Paths are server
/// paths (the test mounts the tree at `/`); cert files are host paths that
/// get copied into the tree where DA keeps certificates.
#[derive(Debug, Clone)]
pub struct NginxRuntime {
    pub ip: String,
    /// Written to directadmin.conf as `port_80=` / `port_443=`.
    pub http_port: u16,
    pub https_port: u16,
    /// PEM files (host paths) for every SSL server block and the default server.
    pub ssl_cert: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    pub pid: String,
    pub error_log: String,
    /// Parent of nginx's client body/proxy/fastcgi temp dirs.
    pub temp_dir: String,
    pub worker_processes: u32,
}

impl Default for NginxRuntime {
    fn default() -> Self {
        NginxRuntime {
            ip: "127.0.0.1".into(),
            http_port: 18080,
            https_port: 18443,
            ssl_cert: None,
            ssl_key: None,
            pid: "/run/nginx.pid".into(),
            error_log: "/var/log/nginx/error.log".into(),
            temp_dir: "/run/nginx-temp".into(),
            worker_processes: 1,
        }
    }
}

impl SimDomain {
    pub fn new(name: &str) -> SimDomain {
        SimDomain {
            name: name.into(),
            ..SimDomain::default()
        }
    }
}

impl SimUser {
    pub fn new(name: &str, creator: &str, uid: u32, domains: Vec<SimDomain>) -> SimUser {
        SimUser {
            name: name.into(),
            creator: creator.into(),
            usertype: "user".into(),
            uid,
            domains,
        }
    }
}

/// The `.cust_nginx` of [`SimServer::drift_demo`]: alice pins PHP 8.2.
pub const DEMO_CUST_NGINX: &str = "# keep the legacy shop on PHP 8.2
location ~ \\.php$ {
\tfastcgi_pass unix:/usr/local/php82/sockets/alice.sock;
\tinclude /etc/nginx/fastcgi_params;
\tfastcgi_read_timeout 300;
}
";

impl SimServer {
    /// A pure-nginx server with one PHP-FPM slot and no accounts.
    pub fn new(webserver: &str, php1_release: &str) -> SimServer {
        SimServer {
            webserver: webserver.into(),
            php: vec![(php1_release.into(), "php-fpm".into())],
            admins: vec!["admin".into()],
            resellers: vec![],
            users: vec![],
            nginx_user: "nginx".into(),
            runtime: None,
        }
    }

    /// The drift scenario: PHP 8.2 in slot 1; `alice.test` (user alice) has
    /// a `.cust_nginx` hard-coding the php82 socket; `bob.test` (user bob,
    /// SSL) is plain. After `upgrade_php(root, 1, "8.3")` alice drifts.
    pub fn drift_demo() -> SimServer {
        let mut s = SimServer::new("nginx", "8.2");
        let mut admin = SimUser::new("admin", "admin", 5000, vec![]);
        admin.usertype = "admin".into();
        let mut alice = SimDomain::new("alice.test");
        alice.cust_nginx = Some(DEMO_CUST_NGINX.into());
        let mut bob = SimDomain::new("bob.test");
        bob.ssl = true;
        s.users = vec![
            admin,
            SimUser::new("alice", "admin", 5001, vec![alice]),
            SimUser::new("bob", "admin", 5002, vec![bob]),
        ];
        s
    }
}

// ---------------------------------------------------------------------------
// Small helpers shared by the writer and the emulator.

/// Server path -> path under `root`.
pub(crate) fn host(root: &Path, server_path: &str) -> PathBuf {
    root.join(server_path.trim_start_matches('/'))
}

pub(crate) fn write_file(root: &Path, server_path: &str, content: &str) -> io::Result<()> {
    let p = host(root, server_path);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&p, content)
}

pub(crate) fn mkdir(root: &Path, server_path: &str, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = host(root, server_path);
    fs::create_dir_all(&p)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
}

/// `key=value` lines; a missing file is an empty map (DA treats it so).
pub(crate) fn read_kv(path: &Path) -> io::Result<BTreeMap<String, String>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// "8.3" -> "83".
pub(crate) fn digits(release: &str) -> String {
    release.replace('.', "")
}

pub(crate) fn php_prefix(release: &str) -> String {
    format!("/usr/local/php{}", digits(release))
}

fn users_dir() -> String {
    format!("{DA_DIR}/data/users")
}

// ---------------------------------------------------------------------------
// The writer.

/// Write everything DA keeps for `s` under `root`, then [`rewrite`]. The
/// output depends only on `s` (deterministic).
pub fn write_tree(root: &Path, s: &SimServer) -> io::Result<()> {
    write_inputs(root, s)?;
    rewrite(root)
}

/// Everything but the generated files. Split out so that the large-tree
/// generator can reuse it.
pub(crate) fn write_inputs(root: &Path, s: &SimServer) -> io::Result<()> {
    use rayon::prelude::*;
    let rt = s.runtime.clone();
    let ip = rt
        .as_ref()
        .map(|r| r.ip.clone())
        .unwrap_or_else(|| DEFAULT_IP.into());

    // CustomBuild's options.conf, with a few other realistic keys.
    let mut opts = format!("webserver={}\n", s.webserver);
    for slot in 0..4 {
        let (rel, mode) = s
            .php
            .get(slot)
            .cloned()
            .unwrap_or(("no".into(), "php-fpm".into()));
        opts.push_str(&format!(
            "php{}_release={rel}\nphp{}_mode={mode}\n",
            slot + 1,
            slot + 1
        ));
    }
    opts.push_str(
        "secure_php=yes\nphp_ini_type=production\nopcache=no\nmysql_inst=mariadb\nmariadb=10.11\n\
         apache_ver=2.4\nmod_ruid2=no\nuserdir_access=no\nletsencrypt=1\nredirect_host_https=no\n",
    );
    write_file(root, &format!("{DA_DIR}/custombuild/options.conf"), &opts)?;

    let (p80, p443) = rt
        .as_ref()
        .map(|r| (r.http_port, r.https_port))
        .unwrap_or((80, 443));
    let dac = format!(
        "servername={HOSTNAME}\nethernet_dev=eth0\nport_80={p80}\nport_443={p443}\nport_8080=8080\n\
         port_8081=8081\nnginx={}\nnginx_proxy={}\nssl=1\n",
        u8::from(s.webserver == "nginx"),
        u8::from(s.webserver == "nginx_apache"),
    );
    write_file(root, &format!("{DA_DIR}/conf/directadmin.conf"), &dac)?;
    let mut sim = format!(
        "# FPM Doctor simulator: values real DirectAdmin hard-codes or takes from the live system.\n\
         nginx_user={}\n",
        s.nginx_user
    );
    if let Some(r) = &rt {
        sim.push_str(&format!(
            "nginx_pid={}\nnginx_error_log={}\nnginx_temp_dir={}\nnginx_worker_processes={}\n",
            r.pid, r.error_log, r.temp_dir, r.worker_processes
        ));
        for d in [parent(&r.pid), parent(&r.error_log), r.temp_dir.clone()] {
            mkdir(root, &d, 0o755)?;
        }
    }
    write_file(root, SIM_CONF, &sim)?;
    let cert = match (
        rt.as_ref().and_then(|r| r.ssl_cert.clone()),
        rt.as_ref().and_then(|r| r.ssl_key.clone()),
    ) {
        (Some(c), Some(k)) => Some((fs::read_to_string(c)?, fs::read_to_string(k)?)),
        _ => None,
    };
    if let Some((c, k)) = &cert {
        write_file(root, &format!("{DA_DIR}/conf/cacert.pem"), c)?;
        write_file(root, &format!("{DA_DIR}/conf/cakey.pem"), k)?;
    }

    // Accounts: every admin/reseller is also a DA user.
    let mut users = s.users.clone();
    let mut next_uid = users.iter().map(|u| u.uid).max().unwrap_or(4999) + 1;
    for (names, kind) in [(&s.admins, "admin"), (&s.resellers, "reseller")] {
        for n in names {
            if !users.iter().any(|u| &u.name == n) {
                let mut u = SimUser::new(n, "admin", next_uid, vec![]);
                u.usertype = kind.into();
                users.push(u);
                next_uid += 1;
            }
        }
    }
    let admin_dir = format!("{DA_DIR}/data/admin");
    write_file(root, &format!("{admin_dir}/admin.list"), &lines(&s.admins))?;
    write_file(root, &format!("{admin_dir}/reseller.list"), &lines(&s.resellers))?;
    write_file(root, &format!("{admin_dir}/ips.list"), &format!("{ip}\n"))?;
    let mut creators: Vec<&String> = s.admins.iter().chain(&s.resellers).collect();
    creators.dedup();
    for c in creators {
        let created: Vec<String> = users
            .iter()
            .filter(|u| &u.creator == c && &u.name != c)
            .map(|u| u.name.clone())
            .collect();
        write_file(root, &format!("{}/{c}/users.list", users_dir()), &lines(&created))?;
    }

    users
        .par_iter()
        .try_for_each(|u| write_user(root, u, &ip, cert.as_ref()))?;

    write_passwd(root, s, &users)?;

    // What DA/CustomBuild create once: log dirs, the default docroot,
    // DA's shipped templates (rewrite uses its built-in copies of these).
    for d in [
        "/var/log/nginx/domains",
        "/var/log/httpd/domains",
        "/var/www/html",
    ] {
        mkdir(root, d, 0o755)?;
    }
    write_file(
        root,
        "/var/www/html/index.html",
        "<html><body>Apache is functioning normally</body></html>\n",
    )?;
    for (name, text) in rewrite::BUILTIN_TEMPLATES.iter() {
        write_file(root, &format!("{DA_DIR}/data/templates/{name}"), text)?;
    }
    Ok(())
}

fn parent(p: &str) -> String {
    match p.rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.into(),
    }
}

fn lines(v: &[String]) -> String {
    v.iter().map(|l| format!("{l}\n")).collect()
}

/// A PHP page that proves PHP ran and which site answered.
pub const INDEX_PHP: &str =
    "<?php echo \"sim-php-ok \", $_SERVER['SERVER_NAME'], \" \", php_sapi_name(), \"\\n\";\n";

fn write_user(root: &Path, u: &SimUser, ip: &str, cert: Option<&(String, String)>) -> io::Result<()> {
    let udir = format!("{}/{}", users_dir(), u.name);
    let first = u.domains.first().map(|d| d.name.as_str()).unwrap_or("");
    let uc = format!(
        "username={n}\nname={n}\ncreator={c}\nusertype={t}\ndomain={first}\nip={ip}\nemail={n}@{mail}\n\
         package=default\nbandwidth=unlimited\nquota=unlimited\nvdomains=unlimited\nnsubdomains=unlimited\n\
         php=ON\nssl=ON\ncgi=ON\nsuspended=no\nlanguage=en\nskin=evolution\ndate_created=Mon Jan  1 00:00:00 2024\n",
        n = u.name,
        c = u.creator,
        t = u.usertype,
        mail = if first.is_empty() { HOSTNAME } else { first },
    );
    write_file(root, &format!("{udir}/user.conf"), &uc)?;
    let names: Vec<String> = u.domains.iter().map(|d| d.name.clone()).collect();
    write_file(root, &format!("{udir}/domains.list"), &lines(&names))?;
    mkdir(root, &format!("{udir}/domains"), 0o711)?;
    mkdir(root, &format!("{udir}/php"), 0o755)?;
    let home = format!("/home/{}", u.name);
    mkdir(root, &home, 0o711)?;
    mkdir(root, &format!("{home}/tmp"), 0o700)?;
    for (i, d) in u.domains.iter().enumerate() {
        let base = format!("{udir}/domains/{}", d.name);
        let mut dc = format!(
            "domain={}\nusername={}\nbandwidth=unlimited\nquota=unlimited\nssl={}\nphp=ON\ncgi=ON\n\
             suspended=no\nactive=yes\nopen_basedir=ON\nprivate_html_is_link=1\ndefaultdomain={}\n",
            d.name,
            u.name,
            if d.ssl { "ON" } else { "OFF" },
            if i == 0 { "yes" } else { "no" },
        );
        if let Some(n) = d.php1_select {
            dc.push_str(&format!("php1_select={n}\n"));
        }
        if d.nginx_only {
            dc.push_str("nginx=1\n");
        }
        write_file(root, &format!("{base}.conf"), &dc)?;
        write_file(root, &format!("{base}.subdomains"), &lines(&d.subdomains))?;
        let ptrs: Vec<String> = d.aliases.iter().map(|a| format!("{a}=type=alias")).collect();
        write_file(root, &format!("{base}.pointers"), &lines(&ptrs))?;
        for (ext, c) in [
            ("cust_nginx", &d.cust_nginx),
            ("cust_nginx_https", &d.cust_nginx_https),
            ("cust_httpd", &d.cust_httpd),
        ] {
            if let Some(c) = c {
                write_file(root, &format!("{base}.{ext}"), c)?;
            }
        }
        if let (true, Some((c, k))) = (d.ssl, cert) {
            write_file(root, &format!("{base}.cert"), c)?;
            write_file(root, &format!("{base}.cert.combined"), c)?;
            write_file(root, &format!("{base}.key"), k)?;
        }
        // Docroots: private_html is a link to public_html, as DA makes it.
        let ddir = format!("{home}/domains/{}", d.name);
        let public = format!("{ddir}/public_html");
        mkdir(root, &public, 0o755)?;
        write_file(root, &format!("{public}/index.php"), INDEX_PHP)?;
        for sub in &d.subdomains {
            mkdir(root, &format!("{public}/{sub}"), 0o755)?;
            write_file(root, &format!("{public}/{sub}/index.php"), INDEX_PHP)?;
        }
        let private = host(root, &format!("{ddir}/private_html"));
        if fs::symlink_metadata(&private).is_err() {
            std::os::unix::fs::symlink("./public_html", &private)?;
        }
        mkdir(root, &format!("{ddir}/logs"), 0o755)?;
    }
    Ok(())
}

/// The tree's own /etc/passwd and /etc/group: the scanner parses these,
/// never NSS. Fixed system uids keep the output deterministic.
fn write_passwd(root: &Path, s: &SimServer, users: &[SimUser]) -> io::Result<()> {
    let mut sys: Vec<(&str, u32, &str)> = vec![
        ("root", 0, "/root"),
        ("daemon", 1, "/usr/sbin"),
        ("bin", 2, "/bin"),
        ("mail", 8, "/var/mail"),
        ("diradmin", 980, DA_DIR),
        ("apache", 982, "/var/www"),
        ("webapps", 983, "/var/www/html"),
        ("mysql", 984, "/var/lib/mysql"),
        ("nobody", 65534, "/nonexistent"),
    ];
    if !sys.iter().any(|(n, _, _)| *n == s.nginx_user) {
        sys.insert(5, (s.nginx_user.as_str(), 981, "/var/lib/nginx"));
    }
    let mut pw = String::new();
    let mut gr = String::new();
    for (n, id, home) in &sys {
        let shell = if *id == 0 {
            "/bin/bash"
        } else {
            "/usr/sbin/nologin"
        };
        pw.push_str(&format!("{n}:x:{id}:{id}:{n}:{home}:{shell}\n"));
        gr.push_str(&format!("{n}:x:{id}:\n"));
    }
    // DA's `access` group lets the web servers into users' homes.
    let web = if s.webserver == "apache" {
        "apache".to_string()
    } else {
        format!("{},apache", s.nginx_user)
    };
    gr.push_str(&format!("access:x:979:{web}\n"));
    let mut sorted: Vec<&SimUser> = users.iter().collect();
    sorted.sort_by_key(|u| u.uid);
    for u in sorted {
        pw.push_str(&format!(
            "{n}:x:{id}:{id}::/home/{n}:/bin/false\n",
            n = u.name,
            id = u.uid
        ));
        gr.push_str(&format!("{n}:x:{id}:\n", n = u.name, id = u.uid));
    }
    write_file(root, "/etc/passwd", &pw)?;
    write_file(root, "/etc/group", &gr)
}

/// What CustomBuild does to the configuration when `php<slot>_release`
/// changes (`./build set php<slot>_release X; ./build php`): update
/// options.conf, then rewrite all configs. The old `/usr/local/phpOLD` stays
/// (only `build remove_php` deletes it); stopping the old FPM service is the
/// caller's job, since the sim runs no daemons.
pub fn upgrade_php(root: &Path, slot: u8, new_release: &str) -> io::Result<()> {
    if !(1..=4).contains(&slot) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "slot must be 1..=4"));
    }
    let path = host(root, &format!("{DA_DIR}/custombuild/options.conf"));
    let text = fs::read_to_string(&path)?;
    let key = format!("php{slot}_release=");
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 16);
    for l in text.lines() {
        if l.starts_with(&key) {
            out.push_str(&format!("{key}{new_release}\n"));
            found = true;
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !found {
        out.push_str(&format!("{key}{new_release}\n"));
    }
    fs::write(&path, out)?;
    rewrite(root)
}

#[cfg(test)]
mod tests;
