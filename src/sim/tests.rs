use super::*;
use std::collections::BTreeMap;

fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(host(root, p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Every file under `root`, relative path -> content (symlinks as targets).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(rel, format!("-> {}", fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn small() -> SimServer {
    let mut s = SimServer::drift_demo();
    s.php.push(("8.1".into(), "php-fpm".into()));
    let u = &mut s.users[2]; // bob
    u.domains[0].subdomains.push("shop".into());
    u.domains[0].aliases.push("bob-alias.test".into());
    u.domains[0].cust_nginx_https = Some("add_header X-Https-Only |DOMAIN|;\n".into());
    let mut legacy = SimDomain::new("legacy.test");
    legacy.php1_select = Some(2);
    legacy.cust_nginx =
        Some("# docroot |DOCROOT| user |USER| php1 |PHP1_RELEASE| php2 |PHP2_RELEASE|\n".into());
    u.domains.push(legacy);
    s
}

#[test]
fn writer_produces_da_layout() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write_tree(r, &small()).unwrap();
    let opts = read(r, "/usr/local/directadmin/custombuild/options.conf");
    for l in [
        "webserver=nginx",
        "php1_release=8.2",
        "php1_mode=php-fpm",
        "php2_release=8.1",
        "php3_release=no",
    ] {
        assert!(opts.lines().any(|x| x == l), "options.conf lacks {l}:\n{opts}");
    }
    assert_eq!(read(r, "/usr/local/directadmin/data/admin/admin.list"), "admin\n");
    assert_eq!(
        read(r, "/usr/local/directadmin/data/users/admin/users.list"),
        "alice\nbob\n"
    );
    let uc = read(r, "/usr/local/directadmin/data/users/bob/user.conf");
    for l in [
        "username=bob",
        "creator=admin",
        "usertype=user",
        "domain=bob.test",
    ] {
        assert!(uc.lines().any(|x| x == l), "user.conf lacks {l}");
    }
    let users = "/usr/local/directadmin/data/users";
    assert_eq!(
        read(r, &format!("{users}/bob/domains.list")),
        "bob.test\nlegacy.test\n"
    );
    assert!(read(r, &format!("{users}/bob/domains/legacy.test.conf")).contains("php1_select=2\n"));
    assert_eq!(
        read(r, &format!("{users}/bob/domains/bob.test.subdomains")),
        "shop\n"
    );
    assert_eq!(
        read(r, &format!("{users}/bob/domains/bob.test.pointers")),
        "bob-alias.test=type=alias\n"
    );
    assert_eq!(
        read(r, &format!("{users}/alice/domains/alice.test.cust_nginx")),
        DEMO_CUST_NGINX
    );

    // FPM: masters per release, pools per user, webapps in slot 1 only.
    let m82 = read(r, "/usr/local/php82/etc/php-fpm.conf");
    assert!(m82.contains("include=/usr/local/directadmin/data/users/*/php/php-fpm82.conf"));
    assert!(m82.contains("[webapps]") && m82.contains("listen = /usr/local/php82/sockets/webapps.sock"));
    assert!(!read(r, "/usr/local/php81/etc/php-fpm.conf").contains("[webapps]"));
    let pool = read(r, &format!("{users}/alice/php/php-fpm82.conf"));
    for l in [
        "[alice]",
        "user = alice",
        "group = alice",
        "listen = /usr/local/php82/sockets/alice.sock",
        "listen.owner = alice",
        "listen.group = nginx",
        "listen.mode = 660",
        "pm = ondemand",
        "pm.max_children = 10",
    ] {
        assert!(pool.lines().any(|x| x == l), "pool lacks {l}:\n{pool}");
    }
    assert!(
        read(r, &format!("{users}/alice/php/php-fpm81.conf")).contains("/usr/local/php81/sockets/alice.sock")
    );
    assert!(host(r, "/usr/local/php82/sockets").is_dir());

    // nginx: global files and generated per-user files.
    let main = read(r, "/etc/nginx/nginx.conf");
    assert!(main.contains("user  nginx;") && main.contains("include /etc/nginx/directadmin-vhosts.conf;"));
    assert!(read(r, "/etc/nginx/nginx-vhosts.conf").contains("include /etc/nginx/webapps.conf;"));
    assert_eq!(
        read(r, "/etc/nginx/directadmin-vhosts.conf"),
        format!("include {users}/admin/nginx.conf;\ninclude {users}/alice/nginx.conf;\ninclude {users}/bob/nginx.conf;\n")
    );
    assert!(read(r, "/etc/nginx/webapps.conf")
        .contains("fastcgi_pass unix:/usr/local/php82/sockets/webapps.sock;"));
    assert!(read(r, "/etc/nginx/fastcgi_params").contains("SCRIPT_FILENAME"));
    let php = read(r, &format!("{users}/alice/nginx_php.conf"));
    assert!(php.contains("fastcgi_pass unix:/usr/local/php82/sockets/alice.sock;"));

    let alice = read(r, &format!("{users}/alice/nginx.conf"));
    assert!(alice.contains("server_name alice.test www.alice.test ;"));
    assert!(alice.contains("error_log /var/log/nginx/domains/alice.test.error.log;"));
    assert!(alice.contains("root /home/alice/domains/alice.test/public_html;"));
    // The custom block comes before DA's PHP include (first regex wins).
    let cust = alice
        .find("fastcgi_pass unix:/usr/local/php82/sockets/alice.sock;")
        .unwrap();
    let inc = alice
        .find(&format!("include {users}/alice/nginx_php.conf;"))
        .unwrap();
    assert!(cust < inc);
    assert!(!alice.contains("listen 192.0.2.10:443"));

    let bob = read(r, &format!("{users}/bob/nginx.conf"));
    assert_eq!(
        bob.matches("listen 192.0.2.10:443 ssl;").count(),
        2,
        "bob.test + shop over SSL"
    );
    assert!(bob.contains("server_name bob.test www.bob.test bob-alias.test www.bob-alias.test;"));
    assert!(bob.contains("server_name shop.bob.test www.shop.bob.test;"));
    assert!(bob.contains("root /home/bob/domains/bob.test/public_html/shop;"));
    assert!(bob.contains("root /home/bob/domains/bob.test/private_html;"));
    // .cust_nginx_https only in 443 blocks, tokens substituted.
    assert_eq!(bob.matches("add_header X-Https-Only bob.test;").count(), 2);
    // Slot 2 is inlined, not included; tokens in .cust_nginx substituted.
    assert!(bob.contains("fastcgi_pass unix:/usr/local/php81/sockets/bob.sock;"));
    assert!(bob.contains("# docroot /home/bob/domains/legacy.test/public_html user bob php1 82 php2 81"));
    assert!(!bob.contains("|DOMAIN|") && !bob.contains("|USER|"));

    // passwd/group of the tree, docroots.
    let pw = read(r, "/etc/passwd");
    assert!(pw.contains("nginx:x:981:981:") && pw.contains("alice:x:5001:5001::/home/alice:"));
    assert!(read(r, "/etc/group").contains("\nnginx:x:981:"));
    assert!(read(r, "/home/alice/domains/alice.test/public_html/index.php").contains("sim-php-ok"));
    assert!(host(r, "/home/bob/domains/bob.test/public_html/shop/index.php").is_file());
    assert!(
        fs::symlink_metadata(host(r, "/home/bob/domains/bob.test/private_html"))
            .unwrap()
            .is_symlink()
    );
    assert!(!host(r, &format!("{users}/bob/httpd.conf")).exists());
}

#[test]
fn writer_is_deterministic_and_rewrite_idempotent() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_tree(a.path(), &small()).unwrap();
    write_tree(b.path(), &small()).unwrap();
    let first = snapshot(a.path());
    assert_eq!(first, snapshot(b.path()));
    rewrite(a.path()).unwrap();
    rewrite(a.path()).unwrap();
    assert_eq!(first, snapshot(a.path()));
}

#[test]
fn upgrade_moves_generated_sockets_but_not_custom_files() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write_tree(r, &small()).unwrap();
    let users = "/usr/local/directadmin/data/users";
    let cust = host(r, &format!("{users}/alice/domains/alice.test.cust_nginx"));
    let before = fs::read(&cust).unwrap();
    upgrade_php(r, 1, "8.3").unwrap();
    assert_eq!(
        fs::read(&cust).unwrap(),
        before,
        ".cust_nginx must be byte-identical"
    );
    let opts = read(r, "/usr/local/directadmin/custombuild/options.conf");
    assert!(opts.contains("php1_release=8.3\n") && opts.contains("php2_release=8.1\n"));
    assert!(!opts.contains("php1_release=8.2"));
    let php = read(r, &format!("{users}/bob/nginx_php.conf"));
    assert!(php.contains("fastcgi_pass unix:/usr/local/php83/sockets/bob.sock;"));
    assert!(read(r, &format!("{users}/bob/php/php-fpm83.conf"))
        .contains("listen = /usr/local/php83/sockets/bob.sock"));
    assert!(read(r, "/usr/local/php83/etc/php-fpm.conf").contains("/usr/local/php83/sockets/webapps.sock"));
    assert!(read(r, "/etc/nginx/webapps.conf").contains("unix:/usr/local/php83/sockets/webapps.sock;"));
    // The generated vhost still inlines the hard-coded php82 path: the drift.
    let alice = read(r, &format!("{users}/alice/nginx.conf"));
    assert!(alice.contains("unix:/usr/local/php82/sockets/alice.sock;"));
    // The old prefix stays, like CustomBuild leaves it.
    assert!(host(r, "/usr/local/php82/etc/php-fpm.conf").is_file());
    // Slot 2 untouched.
    assert!(read(r, &format!("{users}/bob/nginx.conf")).contains("unix:/usr/local/php81/sockets/bob.sock;"));
    assert!(upgrade_php(r, 5, "8.4").is_err());
}

#[test]
fn custom_templates_and_overlays_survive_rewrite() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write_tree(r, &small()).unwrap();
    let custom = "/usr/local/directadmin/data/templates/custom/nginx_php.conf";
    write_file(
        r,
        custom,
        "|?MY_SOCK=/usr/local/php82/sockets/|\tlocation ~ \\.php$ { fastcgi_pass unix:|MY_SOCK||USER|.sock; }\n\
         |*if PHP1_RELEASE=\"83\"|\t# upgraded\n|*else|\t# still 82\n|*endif|",
    )
    .unwrap();
    write_file(
        r,
        "/usr/local/directadmin/custombuild/custom/nginx/conf/webapps.conf",
        "location ^~ /phpMyAdmin { fastcgi_pass unix:/usr/local/php82/sockets/webapps.sock; }\n",
    )
    .unwrap();
    upgrade_php(r, 1, "8.3").unwrap();
    let php = read(r, "/usr/local/directadmin/data/users/bob/nginx_php.conf");
    assert!(
        php.contains("fastcgi_pass unix:/usr/local/php82/sockets/bob.sock;"),
        "{php}"
    );
    assert!(php.contains("# upgraded") && !php.contains("still 82"));
    assert!(read(r, "/etc/nginx/webapps.conf").contains("php82/sockets/webapps.sock"));
}

#[test]
fn nginx_apache_writes_httpd_conf_and_proxies() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let mut s = small();
    s.webserver = "nginx_apache".into();
    s.users[1].domains[0].cust_httpd = Some("\t# custom for |DOMAIN|\n".into());
    s.users[2].domains[1].nginx_only = true; // legacy.test
    write_tree(r, &s).unwrap();
    let users = "/usr/local/directadmin/data/users";
    let h = read(r, &format!("{users}/alice/httpd.conf"));
    assert!(h.contains("<VirtualHost 192.0.2.10:8080>"));
    assert!(h.contains("ServerName www.alice.test") && h.contains("ServerAlias www.alice.test alice.test"));
    assert!(h.contains("<FilesMatch \"\\.(inc|php|phtml|phpt)$\">"));
    assert!(h.contains(
        "AddHandler \"proxy:unix:/usr/local/php82/sockets/alice.sock|fcgi://localhost\" .inc .php .phtml"
    ));
    assert!(h.contains("\t# custom for alice.test"));
    let bob_h = read(r, &format!("{users}/bob/httpd.conf"));
    assert!(bob_h.contains("<VirtualHost 192.0.2.10:8081>") && bob_h.contains("SSLEngine on"));
    assert!(bob_h.contains("/usr/local/php81/sockets/bob.sock|fcgi://localhost"));
    let bob = read(r, &format!("{users}/bob/nginx.conf"));
    assert!(bob.contains("proxy_pass http://192.0.2.10:8080;"));
    assert!(bob.contains("proxy_pass https://192.0.2.10:8081;"));
    // nginx=1 domain: nginx talks to FPM itself, no proxy block.
    let legacy = &bob[bob.find("server_name legacy.test").unwrap()..];
    assert!(legacy.contains("fastcgi_pass unix:/usr/local/php81/sockets/bob.sock;"));
    assert!(!legacy.contains("proxy_pass"));
    assert!(read(r, "/etc/httpd/conf/extra/directadmin-vhosts.conf").contains("/bob/httpd.conf"));
}

#[test]
fn runtime_is_written_into_the_tree() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let mut s = SimServer::drift_demo();
    s.runtime = Some(NginxRuntime {
        http_port: 28080,
        https_port: 28443,
        ..NginxRuntime::default()
    });
    write_tree(r, &s).unwrap();
    let main = read(r, "/etc/nginx/nginx.conf");
    assert!(
        main.contains("pid        /run/nginx.pid;")
            && main.contains("client_body_temp_path /run/nginx-temp/body;")
    );
    let alice = read(r, "/usr/local/directadmin/data/users/alice/nginx.conf");
    assert!(alice.contains("listen 127.0.0.1:28080;"));
    assert!(host(r, "/run/nginx-temp").is_dir());
}

#[test]
fn large_tree_has_requested_size() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    generate_large(r, 100, 5, 10).unwrap();
    let users = host(r, "/usr/local/directadmin/data/users");
    let mut domains = 0;
    let mut drifted = 0;
    for e in fs::read_dir(&users).unwrap() {
        let p = e.unwrap().path();
        let list = fs::read_to_string(p.join("domains.list")).unwrap();
        domains += list.lines().count();
        for d in list.lines() {
            if let Ok(c) = fs::read_to_string(p.join("domains").join(format!("{d}.cust_nginx"))) {
                drifted += usize::from(c.contains("php82"));
            }
        }
    }
    assert_eq!(domains, 500);
    assert_eq!(drifted, 50);
    assert!(read(r, "/usr/local/directadmin/data/admin/reseller.list").starts_with("res001\nres002\n"));
}

#[test]
fn rewrite_user_regenerates_only_that_user() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write_tree(r, &small()).unwrap();
    let users = "/usr/local/directadmin/data/users";
    let opts = host(r, "/usr/local/directadmin/custombuild/options.conf");
    let text = read(r, "/usr/local/directadmin/custombuild/options.conf")
        .replace("php1_release=8.2", "php1_release=8.3");
    fs::write(&opts, text).unwrap();
    rewrite_user(r, "bob").unwrap();
    assert!(read(r, &format!("{users}/bob/nginx_php.conf")).contains("/usr/local/php83/sockets/bob.sock;"));
    assert!(read(r, &format!("{users}/bob/php/php-fpm83.conf")).contains("php83/sockets/bob.sock"));
    // Alice and the server-wide files wait for their own rewrite.
    assert!(
        read(r, &format!("{users}/alice/nginx_php.conf")).contains("/usr/local/php82/sockets/alice.sock;")
    );
    assert!(read(r, "/etc/nginx/webapps.conf").contains("php82/sockets/webapps.sock"));
    assert!(rewrite_user(r, "nobody-here").is_err());
}
