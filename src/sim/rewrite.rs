//! The **DA rewrite emulator**: what `da build rewrite_confs` does to the
//! files DirectAdmin and CustomBuild generate, reading nothing but the tree
//! (options.conf, directadmin.conf, user.conf, domains.list, domain confs,
//! `.cust_*`, `data/templates/custom/*`, `custombuild/custom/nginx*/conf/*`,
//! plus the sim-only `conf/sim.conf`). It never sees a `SimServer`, so a test
//! can edit the tree like an admin would and rewrite again.
//!
//! The built-in templates are short stand-ins for DA's, shaped like them
//! (`|CUSTOM|` at the top of the server block, the PHP location after it,
//! `include /etc/nginx/webapps.conf`), not copies.

use super::template::{render, Tokens};
use super::{digits, host, mkdir, php_prefix, read_kv, write_file, DA_DIR, HOSTNAME, SIM_CONF};
use rayon::prelude::*;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const NGINX_PROXY: &str = "|*if HAVE_NGINX_PROXY=\"1\"|
\tlocation /
\t{
\t\tproxy_buffering off;
\t\tproxy_pass |PROXY_URL|;
\t\tproxy_set_header X-Client-IP      $remote_addr;
\t\tproxy_set_header X-Accel-Internal /nginx_static_files;
\t\tproxy_set_header Host             $host;
\t\tproxy_set_header X-Forwarded-For  $proxy_add_x_forwarded_for;
\t\tproxy_hide_header Upgrade;
\t}
\tlocation /nginx_static_files/
\t{
\t\talias |DOCROOT|/;
\t\tinternal;
\t}
|*else|
|NGINX_PHP_CONF|
|*endif|

\tinclude /etc/nginx/webapps.conf;
}
";

fn nginx_template(secure: bool, sub: bool) -> String {
    let (names, log) = if sub {
        ("|SUB|.|DOMAIN| www.|SUB|.|DOMAIN|", "|DOMAIN|.|SUB|")
    } else {
        ("|DOMAIN| www.|DOMAIN| |SERVER_ALIASES|", "|DOMAIN|")
    };
    let listen = if secure {
        "|IP|:|PORT_443| ssl"
    } else {
        "|IP|:|PORT_80|"
    };
    let ssl = if secure {
        "\tssl_certificate |CERT|;\n\tssl_certificate_key |KEY|;\n\n"
    } else {
        ""
    };
    format!(
        "server\n{{\n|CUSTOM|\n\n\tlisten {listen};\n\n\tserver_name {names};\n\n\
         \taccess_log /var/log/nginx/domains/{log}.log;\n\
         \taccess_log /var/log/nginx/domains/{log}.bytes bytes;\n\
         \terror_log /var/log/nginx/domains/{log}.error.log;\n\n\
         \troot |DOCROOT|;\n\n\tindex index.php index.html index.htm;\n\n{ssl}{NGINX_PROXY}"
    )
}

const NGINX_PHP: &str = "\t# Pass PHP scripts to PHP-FPM
\tlocation ~ \\.php$ {
\t\ttry_files $uri =404;
\t\tfastcgi_split_path_info ^(.+\\.php)(/.+)$;
\t\tinclude /etc/nginx/fastcgi_params;
\t\tfastcgi_index index.php;
\t\tfastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
\t\tfastcgi_pass unix:|PHP_FPM_SOCKET_PATH|;
\t}
";

fn apache_template(secure: bool, sub: bool) -> String {
    let (name, alias, log) = if sub {
        (
            "www.|SUB|.|DOMAIN|",
            "www.|SUB|.|DOMAIN| |SUB|.|DOMAIN|",
            "|DOMAIN|.|SUB|",
        )
    } else {
        (
            "www.|DOMAIN|",
            "www.|DOMAIN| |DOMAIN| |SERVER_ALIASES|",
            "|DOMAIN|",
        )
    };
    let (port, ssl) = if secure {
        (
            "|PORT_443|",
            "\tSSLEngine on\n\tSSLCertificateFile |CERT|\n\tSSLCertificateKeyFile |KEY|\n",
        )
    } else {
        ("|PORT_80|", "")
    };
    format!(
        "<VirtualHost |IP|:{port}>\n|CUSTOM|\n\tServerName {name}\n\tServerAlias {alias}\n\
         \tServerAdmin webmaster@|DOMAIN|\n\tDocumentRoot |DOCROOT|\n{ssl}\tUseCanonicalName OFF\n\
         \tSuexecUserGroup |USER| |GROUP|\n\tCustomLog /var/log/httpd/domains/{log}.bytes bytes\n\
         \tCustomLog /var/log/httpd/domains/{log}.log combined\n\
         \tErrorLog /var/log/httpd/domains/{log}.error.log\n\t<Directory |DOCROOT|>\n\
         \t\t<FilesMatch \"\\.(inc|php|phtml|phpt)$\">\n\
         \t\t\tAddHandler \"proxy:unix:|PHP_FPM_SOCKET_PATH||fcgi://localhost\" .inc .php .phtml\n\
         \t\t</FilesMatch>\n\t</Directory>\n</VirtualHost>\n"
    )
}

const PHP_FPM_POOL: &str = "[|USER|]
user = |USER|
group = |GROUP|
listen = |PHP_FPM_SOCKET_PATH|
listen.owner = |USER|
listen.group = |WEBSERVER_GROUP|
listen.mode = 660
pm = ondemand
pm.max_children = 10
pm.process_idle_timeout = 20
pm.max_requests = 500
php_admin_value[sendmail_path] = \"/usr/sbin/sendmail -t -i -f |USER|@|DOMAIN|\"
php_admin_value[session.save_path] = /home/|USER|/tmp
";

/// Template names as DA spells them, with the sim's built-in text. The
/// writer also puts these under `data/templates/` like DA ships them.
pub(crate) static BUILTIN_TEMPLATES: std::sync::LazyLock<Vec<(&'static str, String)>> =
    std::sync::LazyLock::new(|| {
        vec![
            ("nginx_server.conf", nginx_template(false, false)),
            ("nginx_server_secure.conf", nginx_template(true, false)),
            ("nginx_server_sub.conf", nginx_template(false, true)),
            ("nginx_server_secure_sub.conf", nginx_template(true, true)),
            ("nginx_php.conf", NGINX_PHP.to_string()),
            ("virtual_host2.conf", apache_template(false, false)),
            ("virtual_host2_secure.conf", apache_template(true, false)),
            ("virtual_host2_sub.conf", apache_template(false, true)),
            ("virtual_host2_secure_sub.conf", apache_template(true, true)),
            ("php-fpm.conf", PHP_FPM_POOL.to_string()),
        ]
    });

/// Everything server-wide the emulator reads once.
struct Ctx {
    root: PathBuf,
    webserver: String,
    /// Slots 1..=4: (release, mode).
    slots: Vec<(String, String)>,
    ip: String,
    port_80: String,
    port_443: String,
    port_8080: String,
    port_8081: String,
    nginx_user: String,
    sim: std::collections::BTreeMap<String, String>,
    templates: std::collections::BTreeMap<&'static str, String>,
}

struct Domain {
    name: String,
    slot: usize,
    ssl: bool,
    nginx_only: bool,
    subs: Vec<String>,
    aliases: Vec<String>,
    cust_nginx: Option<String>,
    cust_nginx_https: Option<String>,
    cust_httpd: Option<String>,
}

fn read_opt(p: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_lines(p: &Path) -> io::Result<Vec<String>> {
    Ok(read_opt(p)?
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn users_dir() -> String {
    format!("{DA_DIR}/data/users")
}

impl Ctx {
    fn load(root: &Path) -> io::Result<Ctx> {
        let opts = read_kv(&host(root, &format!("{DA_DIR}/custombuild/options.conf")))?;
        let dac = read_kv(&host(root, &format!("{DA_DIR}/conf/directadmin.conf")))?;
        let sim = read_kv(&host(root, SIM_CONF))?;
        let get = |m: &std::collections::BTreeMap<String, String>, k: &str, d: &str| {
            m.get(k).cloned().unwrap_or_else(|| d.to_string())
        };
        let slots = (1..=4)
            .map(|i| {
                (
                    get(&opts, &format!("php{i}_release"), "no"),
                    get(&opts, &format!("php{i}_mode"), "php-fpm"),
                )
            })
            .collect();
        let ips = read_lines(&host(root, &format!("{DA_DIR}/data/admin/ips.list")))?;
        let mut templates = std::collections::BTreeMap::new();
        for (name, text) in BUILTIN_TEMPLATES.iter() {
            let custom = host(root, &format!("{DA_DIR}/data/templates/custom/{name}"));
            templates.insert(*name, read_opt(&custom)?.unwrap_or_else(|| text.clone()));
        }
        Ok(Ctx {
            root: root.to_path_buf(),
            webserver: get(&opts, "webserver", "apache"),
            slots,
            ip: ips.first().cloned().unwrap_or_else(|| super::DEFAULT_IP.into()),
            port_80: get(&dac, "port_80", "80"),
            port_443: get(&dac, "port_443", "443"),
            port_8080: get(&dac, "port_8080", "8080"),
            port_8081: get(&dac, "port_8081", "8081"),
            nginx_user: get(&sim, "nginx_user", "nginx"),
            sim,
            templates,
        })
    }

    fn has_nginx(&self) -> bool {
        self.webserver == "nginx" || self.webserver == "nginx_apache"
    }

    fn has_apache(&self) -> bool {
        self.webserver == "apache" || self.webserver == "nginx_apache"
    }

    fn release(&self, slot: usize) -> &str {
        &self.slots[slot - 1].0
    }

    fn is_fpm(&self, slot: usize) -> bool {
        let (rel, mode) = &self.slots[slot - 1];
        rel != "no" && mode == "php-fpm"
    }

    /// Distinct configured php-fpm releases, slot order.
    fn fpm_releases(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for slot in 1..=4 {
            let rel = self.release(slot).to_string();
            if self.is_fpm(slot) && !out.contains(&rel) {
                out.push(rel);
            }
        }
        out
    }

    /// Group that may connect to the per-user sockets.
    fn webserver_group(&self) -> &str {
        if self.webserver == "apache" {
            "apache"
        } else {
            &self.nginx_user
        }
    }

    fn socket(&self, release: &str, name: &str) -> String {
        format!("{}/sockets/{name}.sock", php_prefix(release))
    }

    fn tokens(&self, user: &str) -> Tokens {
        let mut t = Tokens::new();
        for (k, v) in [
            ("USER", user),
            ("GROUP", user),
            ("USERNAME", user),
            ("HOME", &format!("/home/{user}")),
            ("IP", &self.ip),
            ("PORT_80", &self.port_80),
            ("PORT_443", &self.port_443),
            ("PORT_8080", &self.port_8080),
            ("PORT_8081", &self.port_8081),
            ("HOSTNAME", HOSTNAME),
            ("WEBSERVER_GROUP", self.webserver_group()),
        ] {
            t.insert(k.into(), v.into());
        }
        for slot in 1..=4 {
            let rel = self.release(slot);
            let d = if rel == "no" { String::new() } else { digits(rel) };
            t.insert(format!("PHP{slot}_RELEASE"), d);
            t.insert(
                format!("HAVE_PHP{slot}_FPM"),
                u8::from(self.is_fpm(slot)).to_string(),
            );
        }
        t
    }

    fn tpl(&self, name: &str) -> &str {
        &self.templates[name]
    }

    fn load_domain(&self, udir: &Path, name: &str) -> io::Result<Domain> {
        let base = udir.join("domains").join(name);
        let with = |ext: &str| PathBuf::from(format!("{}.{ext}", base.display()));
        let conf = read_kv(&with("conf"))?;
        let wanted = conf
            .get("php1_select")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        // DA falls back to slot 1 when the selected slot has no PHP.
        let slot = if (1..=4).contains(&wanted) && self.release(wanted) != "no" {
            wanted
        } else {
            1
        };
        let aliases = read_lines(&with("pointers"))?
            .into_iter()
            .filter(|l| l.contains("type=alias"))
            .filter_map(|l| l.split('=').next().map(String::from))
            .collect();
        Ok(Domain {
            name: name.into(),
            slot,
            ssl: conf.get("ssl").map(|v| v == "ON").unwrap_or(false),
            nginx_only: conf.get("nginx").map(|v| v == "1").unwrap_or(false),
            subs: read_lines(&with("subdomains"))?,
            aliases,
            cust_nginx: read_opt(&with("cust_nginx"))?,
            cust_nginx_https: read_opt(&with("cust_nginx_https"))?,
            cust_httpd: read_opt(&with("cust_httpd"))?,
        })
    }

    fn rewrite_user(&self, user: &str) -> io::Result<()> {
        let udir_s = format!("{}/{user}", users_dir());
        let udir = host(&self.root, &udir_s);
        let names = read_lines(&udir.join("domains.list"))?;
        let domains = names
            .iter()
            .map(|d| self.load_domain(&udir, d))
            .collect::<io::Result<Vec<_>>>()?;
        let base = self.tokens(user);
        let default_domain = names.first().map(String::as_str).unwrap_or(HOSTNAME);

        // FPM pools, one per configured php-fpm release.
        for rel in self.fpm_releases() {
            let mut t = base.clone();
            t.insert("PHP_VER".into(), digits(&rel));
            t.insert("PHP_FPM_SOCKET_PATH".into(), self.socket(&rel, user));
            t.insert("DOMAIN".into(), default_domain.into());
            let text = render(self.tpl("php-fpm.conf"), &t);
            write_file(
                &self.root,
                &format!("{udir_s}/php/php-fpm{}.conf", digits(&rel)),
                &text,
            )?;
        }

        let header = "# Auto generated by DirectAdmin (FPM Doctor simulator, DA rewrite emulator)\n\
                      # Modifying this file is not recommended as any changes you make will be\n\
                      # overwritten when the user makes any changes to their website\n\n";
        if self.has_nginx() {
            let mut t = base.clone();
            t.insert("PHP_FPM_SOCKET_PATH".into(), self.socket(self.release(1), user));
            write_file(
                &self.root,
                &format!("{udir_s}/nginx_php.conf"),
                &render(self.tpl("nginx_php.conf"), &t),
            )?;
            let mut out = String::from(header);
            for d in &domains {
                self.nginx_domain(user, &udir_s, d, &base, &mut out);
            }
            write_file(&self.root, &format!("{udir_s}/nginx.conf"), &out)?;
        }
        if self.has_apache() {
            let mut out = String::from(header);
            for d in &domains {
                self.apache_domain(d, &udir_s, &base, &mut out);
            }
            write_file(&self.root, &format!("{udir_s}/httpd.conf"), &out)?;
        }
        Ok(())
    }

    /// Tokens of one server block: `docroot_dir` is public_html/private_html.
    fn block_tokens(&self, base: &Tokens, user: &str, udir: &str, d: &Domain, secure: bool) -> Tokens {
        let mut t = base.clone();
        let dir = if secure { "private_html" } else { "public_html" };
        let aliases: Vec<String> = d
            .aliases
            .iter()
            .flat_map(|a| [a.clone(), format!("www.{a}")])
            .collect();
        let cert = format!("{udir}/domains/{}.cert.combined", d.name);
        let key = format!("{udir}/domains/{}.key", d.name);
        let exists = |p: &str| host(&self.root, p).exists();
        for (k, v) in [
            ("DOMAIN", d.name.clone()),
            ("DOCROOT", format!("/home/{user}/domains/{}/{dir}", d.name)),
            ("SERVER_ALIASES", aliases.join(" ")),
            ("PHP_SELECTED", d.slot.to_string()),
            ("PHP_FPM_SOCKET_PATH", self.socket(self.release(d.slot), user)),
            (
                "CERT",
                if exists(&cert) {
                    cert
                } else {
                    format!("{DA_DIR}/conf/cacert.pem")
                },
            ),
            (
                "KEY",
                if exists(&key) {
                    key
                } else {
                    format!("{DA_DIR}/conf/cakey.pem")
                },
            ),
        ] {
            t.insert(k.into(), v);
        }
        t
    }

    fn nginx_domain(&self, user: &str, udir: &str, d: &Domain, base: &Tokens, out: &mut String) {
        let proxy = self.webserver == "nginx_apache" && !d.nginx_only;
        let php = if !self.is_fpm(d.slot) {
            String::new()
        } else if d.slot == 1 {
            format!("\tinclude {udir}/nginx_php.conf;")
        } else {
            let mut t = base.clone();
            t.insert(
                "PHP_FPM_SOCKET_PATH".into(),
                self.socket(self.release(d.slot), user),
            );
            render(self.tpl("nginx_php.conf"), &t)
        };
        let secure_variants: &[bool] = if d.ssl { &[false, true] } else { &[false] };
        let subs: Vec<Option<&String>> = std::iter::once(None).chain(d.subs.iter().map(Some)).collect();
        for sub in subs {
            for &secure in secure_variants {
                let mut t = self.block_tokens(base, user, udir, d, secure);
                if let Some(s) = sub {
                    let root = format!("{}/{s}", t["DOCROOT"]);
                    t.insert("DOCROOT".into(), root);
                    t.insert("SUB".into(), s.clone());
                }
                // .cust_nginx is a template fragment: rendered with this
                // block's tokens, then inlined where |CUSTOM| is.
                let mut custom = d.cust_nginx.as_deref().map(|c| render(c, &t)).unwrap_or_default();
                if secure {
                    if let Some(c) = &d.cust_nginx_https {
                        custom.push_str(&render(c, &t));
                    }
                }
                let (scheme, port) = if secure {
                    ("https", &self.port_8081)
                } else {
                    ("http", &self.port_8080)
                };
                t.insert("CUSTOM".into(), custom.trim_end().to_string());
                t.insert("NGINX_PHP_CONF".into(), php.trim_end().to_string());
                t.insert("HAVE_NGINX_PROXY".into(), u8::from(proxy).to_string());
                t.insert("PROXY_URL".into(), format!("{scheme}://{}:{port}", self.ip));
                let name = match (secure, sub.is_some()) {
                    (false, false) => "nginx_server.conf",
                    (true, false) => "nginx_server_secure.conf",
                    (false, true) => "nginx_server_sub.conf",
                    (true, true) => "nginx_server_secure_sub.conf",
                };
                out.push_str(&render(self.tpl(name), &t));
                out.push('\n');
            }
        }
    }

    fn apache_domain(&self, d: &Domain, udir: &str, base: &Tokens, out: &mut String) {
        let user = &base["USER"];
        // Behind nginx, Apache takes the 8080/8081 ports.
        let (p80, p443) = if self.webserver == "nginx_apache" {
            (&self.port_8080, &self.port_8081)
        } else {
            (&self.port_80, &self.port_443)
        };
        let secure_variants: &[bool] = if d.ssl { &[false, true] } else { &[false] };
        let subs: Vec<Option<&String>> = std::iter::once(None).chain(d.subs.iter().map(Some)).collect();
        for sub in subs {
            for &secure in secure_variants {
                let mut t = self.block_tokens(base, user, udir, d, secure);
                t.insert("PORT_80".into(), p80.clone());
                t.insert("PORT_443".into(), p443.clone());
                if let Some(s) = sub {
                    let root = format!("{}/{s}", t["DOCROOT"]);
                    t.insert("DOCROOT".into(), root);
                    t.insert("SUB".into(), s.clone());
                }
                let custom = d.cust_httpd.as_deref().map(|c| render(c, &t)).unwrap_or_default();
                t.insert("CUSTOM".into(), custom.trim_end().to_string());
                let name = match (secure, sub.is_some()) {
                    (false, false) => "virtual_host2.conf",
                    (true, false) => "virtual_host2_secure.conf",
                    (false, true) => "virtual_host2_sub.conf",
                    (true, true) => "virtual_host2_secure_sub.conf",
                };
                out.push_str(&render(self.tpl(name), &t));
                out.push('\n');
            }
        }
    }

    /// CustomBuild's `/usr/local/phpXY/etc/php-fpm.conf`; slot 1 also hosts
    /// the `webapps` pool (phpMyAdmin, Roundcube).
    fn write_fpm_master(&self, release: &str) -> io::Result<()> {
        let prefix = php_prefix(release);
        let xy = digits(release);
        for (d, mode) in [
            (format!("{prefix}/etc"), 0o755),
            (format!("{prefix}/sockets"), 0o711),
            (format!("{prefix}/var/run"), 0o755),
            (format!("{prefix}/var/log"), 0o755),
        ] {
            mkdir(&self.root, &d, mode)?;
        }
        let mut text = format!(
            "; Generated by CustomBuild (FPM Doctor simulator)\n[global]\n\
             pid = {prefix}/var/run/php-fpm.pid\nerror_log = /var/log/php-fpm{xy}.log\n\
             emergency_restart_threshold = 10\nemergency_restart_interval = 1m\n\
             process_control_timeout = 10s\n\n"
        );
        if self.release(1) == release {
            text.push_str(&format!(
                "[webapps]\nuser = webapps\ngroup = webapps\nlisten = {}\nlisten.owner = webapps\n\
                 listen.group = {}\nlisten.mode = 660\npm = ondemand\npm.max_children = 10\n\
                 pm.process_idle_timeout = 20\npm.max_requests = 500\n\n",
                self.socket(release, "webapps"),
                self.webserver_group(),
            ));
        }
        text.push_str(&format!("include={}/*/php/php-fpm{xy}.conf\n", users_dir()));
        write_file(&self.root, &format!("{prefix}/etc/php-fpm.conf"), &text)
    }

    fn write_nginx_global(&self, users: &[String]) -> io::Result<()> {
        let sim = |k: &str, d: &str| self.sim.get(k).cloned().unwrap_or_else(|| d.to_string());
        let temp = match self.sim.get("nginx_temp_dir") {
            Some(t) => format!(
                "\tclient_body_temp_path {t}/body;\n\tproxy_temp_path {t}/proxy;\n\tfastcgi_temp_path {t}/fastcgi;\n"
            ),
            None => String::new(),
        };
        let conf = format!(
            "# Generated by CustomBuild (FPM Doctor simulator)\nuser  {user};\nworker_processes  {wp};\n\
             pid        {pid};\nerror_log  {err};\nworker_rlimit_nofile 16384;\n\n\
             events {{\n\tworker_connections 1024;\n}}\n\n\
             http {{\n\tinclude       /etc/nginx/mime.types;\n\tdefault_type  application/octet-stream;\n\n\
             \tlog_format  main  '$remote_addr - $remote_user [$time_local] \"$request\" '\n\
             \t                  '$status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"';\n\
             \tlog_format  bytes '$body_bytes_sent';\n\taccess_log  /var/log/nginx/access_log main;\n\n\
             \tsendfile on;\n\ttcp_nopush on;\n\tkeepalive_timeout 30;\n\tclient_max_body_size 64m;\n\
             \tserver_tokens off;\n\tserver_names_hash_max_size 65536;\n\tserver_names_hash_bucket_size 128;\n\
             {temp}\n\tinclude /etc/nginx/nginx-vhosts.conf;\n\tinclude /etc/nginx/directadmin-vhosts.conf;\n}}\n",
            user = self.nginx_user,
            wp = sim("nginx_worker_processes", "auto"),
            pid = sim("nginx_pid", "/run/nginx.pid"),
            err = sim("nginx_error_log", "/var/log/nginx/error.log"),
        );
        write_file(&self.root, "/etc/nginx/nginx.conf", &conf)?;

        let cacert = format!("{DA_DIR}/conf/cacert.pem");
        let mut vh = format!(
            "server {{\n\tlisten {ip}:{p} default_server;\n\tserver_name {HOSTNAME} localhost;\n\
             \troot /var/www/html;\n\tindex index.html index.htm index.php;\n\
             \tinclude /etc/nginx/webapps.conf;\n}}\n",
            ip = self.ip,
            p = self.port_80
        );
        if host(&self.root, &cacert).exists() {
            vh.push_str(&format!(
                "\nserver {{\n\tlisten {ip}:{p} ssl default_server;\n\tserver_name {HOSTNAME} localhost;\n\
                 \tssl_certificate {cacert};\n\tssl_certificate_key {DA_DIR}/conf/cakey.pem;\n\
                 \troot /var/www/html;\n\tindex index.html index.htm index.php;\n\
                 \tinclude /etc/nginx/webapps.conf;\n}}\n",
                ip = self.ip,
                p = self.port_443
            ));
        }
        write_file(&self.root, "/etc/nginx/nginx-vhosts.conf", &vh)?;

        let list: String = users
            .iter()
            .map(|u| format!("include {}/{u}/nginx.conf;\n", users_dir()))
            .collect();
        write_file(&self.root, "/etc/nginx/directadmin-vhosts.conf", &list)?;

        // CustomBuild rewrites the webapps socket to slot 1 in files it owns.
        let sock = self.socket(self.release(1), "webapps");
        let mut web = String::from("# Generated by CustomBuild (FPM Doctor simulator)\n");
        for app in ["phpMyAdmin", "roundcube"] {
            web.push_str(&format!(
                "location ^~ /{app} {{\n\troot /var/www/html;\n\tindex index.php index.html;\n\
                 \tlocation ~ \\.php$ {{\n\t\ttry_files $uri =404;\n\t\tinclude /etc/nginx/fastcgi_params;\n\
                 \t\tfastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
                 \t\tfastcgi_pass unix:{sock};\n\t}}\n}}\n"
            ));
        }
        web.push_str("location /phpmyadmin {\n\trewrite ^/* /phpMyAdmin last;\n}\n");
        write_file(&self.root, "/etc/nginx/webapps.conf", &web)?;
        write_file(&self.root, "/etc/nginx/fastcgi_params", FASTCGI_PARAMS)?;
        write_file(&self.root, "/etc/nginx/mime.types", MIME_TYPES)?;

        // Overlays last, so they win, exactly like CustomBuild.
        let overlay = if self.webserver == "nginx_apache" {
            "nginx_reverse"
        } else {
            "nginx"
        };
        copy_tree(
            &host(&self.root, &format!("{DA_DIR}/custombuild/custom/{overlay}/conf")),
            &host(&self.root, "/etc/nginx"),
        )
    }
}

/// Copy every file under `from` to the same relative path under `to`.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut entries: Vec<_> = entries.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            fs::create_dir_all(&dst)?;
            copy_tree(&e.path(), &dst)?;
        } else {
            fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

/// Accounts = folders of data/users holding a user.conf, sorted.
fn list_users(root: &Path) -> io::Result<Vec<String>> {
    let dir = host(root, &users_dir());
    let mut out = Vec::new();
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if e.path().join("user.conf").is_file() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// Regenerate everything DA/CustomBuild generate, from the tree alone.
/// Files it did not generate (`.cust_*`, pools of releases no longer
/// configured, `/usr/local/phpOLD`) are left alone.
pub fn rewrite(root: &Path) -> io::Result<()> {
    let ctx = Ctx::load(root)?;
    for rel in ctx.fpm_releases() {
        ctx.write_fpm_master(&rel)?;
    }
    let users = list_users(root)?;
    users.par_iter().try_for_each(|u| ctx.rewrite_user(u))?;
    if ctx.has_nginx() {
        ctx.write_nginx_global(&users)?;
    }
    if ctx.has_apache() {
        let list: String = users
            .iter()
            .map(|u| format!("Include {}/{u}/httpd.conf\n", users_dir()))
            .collect();
        write_file(root, "/etc/httpd/conf/extra/directadmin-vhosts.conf", &list)?;
    }
    Ok(())
}

/// What DA does for one user (`action=rewrite&value=httpd&user=<u>`): that
/// user's pools, `nginx.conf`, `nginx_php.conf` and `httpd.conf` only; the
/// server-wide files and the other users' files are left as they are.
pub fn rewrite_user(root: &Path, user: &str) -> io::Result<()> {
    if !list_users(root)?.iter().any(|u| u == user) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no DirectAdmin user {user:?} in the tree"),
        ));
    }
    Ctx::load(root)?.rewrite_user(user)
}

const FASTCGI_PARAMS: &str = "fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
fastcgi_param  SERVER_SOFTWARE    nginx;
fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  REQUEST_METHOD     $request_method;
fastcgi_param  CONTENT_TYPE       $content_type;
fastcgi_param  CONTENT_LENGTH     $content_length;
fastcgi_param  SCRIPT_FILENAME    $document_root$fastcgi_script_name;
fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
fastcgi_param  REQUEST_URI        $request_uri;
fastcgi_param  DOCUMENT_URI       $document_uri;
fastcgi_param  DOCUMENT_ROOT      $document_root;
fastcgi_param  SERVER_PROTOCOL    $server_protocol;
fastcgi_param  HTTPS              $https if_not_empty;
fastcgi_param  REMOTE_ADDR        $remote_addr;
fastcgi_param  REMOTE_PORT        $remote_port;
fastcgi_param  SERVER_ADDR        $server_addr;
fastcgi_param  SERVER_PORT        $server_port;
fastcgi_param  SERVER_NAME        $server_name;
fastcgi_param  REDIRECT_STATUS    200;
";

const MIME_TYPES: &str = "types {
    text/html                             html htm shtml;
    text/css                              css;
    text/plain                            txt;
    application/javascript                js;
    application/json                      json;
    image/png                             png;
    image/jpeg                            jpeg jpg;
    image/svg+xml                         svg svgz;
    application/octet-stream              bin exe dll;
}
";
