//! Reader + check tests on hand-written DirectAdmin trees (the generated files
//! are written the way DA writes them), scanned in-process with `--root`.
//! Live sockets are bound by the test itself where a case needs one.

use fpm_doctor::config::Config;
use fpm_doctor::readers::Scope;
use fpm_doctor::scan::{scan, Report};
use std::os::unix::net::UnixListener;
use std::path::Path;

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const U: &str = "/usr/local/directadmin/data/users";

fn php_location(sock: &str) -> String {
    format!(
        "\tlocation ~ \\.php$ {{\n\t\ttry_files $uri =404;\n\t\tinclude /etc/nginx/fastcgi_params;\n\t\t\
if (-f $request_filename) {{\n\t\t\tfastcgi_pass unix:{sock};\n\t\t}}\n\t}}\n"
    )
}

fn server_block(names: &str, user: &str, extra: &str, https: bool) -> String {
    let listen = if https {
        "\tlisten 1.2.3.4:443 ssl;\n"
    } else {
        "\tlisten 1.2.3.4:80;\n"
    };
    format!(
        "server\n{{\n{extra}{listen}\tserver_name {names};\n\troot /home/{user}/domains/x/public_html;\n\
\tinclude {U}/{user}/nginx_php.conf;\n\tinclude /etc/nginx/webapps.conf;\n}}\n"
    )
}

fn user(root: &Path, name: &str, domains: &[&str], nginx_conf: &str, pool_release: &str) {
    write(
        root,
        &format!("{U}/{name}/user.conf"),
        &format!("username={name}\ncreator=admin\nusertype=user\n"),
    );
    write(
        root,
        &format!("{U}/{name}/domains.list"),
        &(domains.join("\n") + "\n"),
    );
    for d in domains {
        write(
            root,
            &format!("{U}/{name}/domains/{d}.conf"),
            &format!("domain={d}\nphp=ON\n"),
        );
    }
    write(root, &format!("{U}/{name}/nginx.conf"), nginx_conf);
    write(
        root,
        &format!("{U}/{name}/nginx_php.conf"),
        &php_location(&format!("/usr/local/php{pool_release}/sockets/{name}.sock")),
    );
    write(
        root,
        &format!("{U}/{name}/php/php-fpm{pool_release}.conf"),
        &format!("[{name}]\nuser = {name}\nlisten = /usr/local/php{pool_release}/sockets/{name}.sock\nlisten.mode = 660\npm = ondemand\n"),
    );
}

/// A server just upgraded 8.2 -> 8.3: alice's `.cust_nginx` still names 8.2.
fn base_tree(root: &Path) {
    write(
        root,
        "/usr/local/directadmin/custombuild/options.conf",
        "webserver=nginx\nphp1_release=8.3\nphp1_mode=php-fpm\nphp2_release=no\nphp2_mode=php-fpm\n",
    );
    write(
        root,
        "/etc/passwd",
        "root:x:0:0::/root:/bin/bash\nnginx:x:101:101::/nonexistent:/bin/false\n",
    );
    write(root, "/etc/group", "root:x:0:\nnginx:x:101:\n");
    write(
        root,
        "/etc/nginx/fastcgi_params",
        "fastcgi_param QUERY_STRING $query_string;\n",
    );
    write(
        root,
        "/etc/nginx/nginx.conf",
        "user nginx;\nworker_processes 1;\nhttp {\n\tinclude /etc/nginx/directadmin-vhosts.conf;\n\
\tserver {\n\t\tlisten 80 default_server;\n\t\tserver_name host.test;\n\t\tinclude /etc/nginx/webapps.conf;\n\t}\n}\n",
    );
    write(
        root,
        "/etc/nginx/directadmin-vhosts.conf",
        &format!("include {U}/alice/nginx.conf;\ninclude {U}/bob/nginx.conf;\n"),
    );
    write(
        root,
        "/etc/nginx/webapps.conf",
        "location ^~ /phpMyAdmin {\n\tlocation ~ \\.php$ {\n\t\tfastcgi_pass unix:/usr/local/php83/sockets/webapps.sock;\n\t}\n}\n",
    );
    let cust = "# old tuning\nlocation ~ \\.php$ {\n\tinclude /etc/nginx/fastcgi_params;\n\tfastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\n}\n";
    write(root, &format!("{U}/alice/domains/a.test.cust_nginx"), cust);
    let inlined = cust.replace("|USER|", "alice");
    let conf = server_block("a.test www.a.test", "alice", &inlined, false)
        + &server_block("a.test www.a.test", "alice", &inlined, true);
    user(root, "alice", &["a.test"], &conf, "83");
    user(
        root,
        "bob",
        &["b.test"],
        &server_block("b.test www.b.test", "bob", "", false),
        "83",
    );
}

fn run(root: &Path, scope: Scope, probe: bool) -> Report {
    let mut cfg = Config::load(None, Some(root)).unwrap();
    cfg.no_probe = !probe;
    cfg.probe.timeout_ms = 300;
    scan(&cfg, &scope).unwrap()
}

fn bind(root: &Path, sock: &str) -> UnixListener {
    let p = root.join(sock.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let l = UnixListener::bind(&p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    l
}

/// Answers FCGI_GET_VALUES like PHP-FPM (the demo's stand-in).
fn serve_fcgi(l: UnixListener) {
    fpm_doctor::demo::answer_fcgi(l);
}

#[test]
fn stale_cust_nginx_is_attributed_to_the_custom_layer_once() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    for s in ["alice", "bob", "webapps"] {
        serve_fcgi(bind(t.path(), &format!("/usr/local/php83/sockets/{s}.sock")));
    }
    let r = run(t.path(), Scope::default(), true);
    let drift: Vec<_> = r.findings.iter().filter(|f| f.check == "socket-drift").collect();
    assert_eq!(drift.len(), 1, "{:#?}", r.findings);
    let f = drift[0];
    assert_eq!(f.domain.as_deref(), Some("a.test"));
    assert_eq!(
        f.file.as_deref(),
        Some(&*format!("{U}/alice/domains/a.test.cust_nginx"))
    );
    assert_eq!(f.line, Some(4));
    assert_eq!(
        f.text.as_deref(),
        Some("fastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;")
    );
    assert_eq!(f.layer, Some("custom"));
    assert_eq!(f.socket.as_deref(), Some("/usr/local/php82/sockets/alice.sock"));
    assert_eq!(f.socket_state, Some("missing"));
    assert_eq!(
        f.expected_socket.as_deref(),
        Some("/usr/local/php83/sockets/alice.sock")
    );
    assert_eq!(f.generated_copies.len(), 2, "port 80 and 443 copies");
    assert_eq!(r.verdict, "critical");
    let st = |d: &str| r.domains.iter().find(|x| x.domain == d).unwrap().status;
    assert_eq!(st("a.test"), "drift");
    assert_eq!(st("b.test"), "ok");
}

#[test]
fn healthy_server_is_ok_and_exit_zero() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    std::fs::remove_file(
        t.path()
            .join(format!("{U}/alice/domains/a.test.cust_nginx").trim_start_matches('/')),
    )
    .unwrap();
    let conf = server_block("a.test www.a.test", "alice", "", false);
    write(t.path(), &format!("{U}/alice/nginx.conf"), &conf);
    for s in ["alice", "bob", "webapps"] {
        serve_fcgi(bind(t.path(), &format!("/usr/local/php83/sockets/{s}.sock")));
    }
    let r = run(t.path(), Scope::default(), true);
    assert!(r.findings.iter().all(|f| f.secondary), "{:#?}", r.findings);
    assert_eq!(r.verdict, "ok");
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn stale_socket_file_is_refused() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    for s in ["alice", "bob", "webapps"] {
        serve_fcgi(bind(t.path(), &format!("/usr/local/php83/sockets/{s}.sock")));
    }
    drop(bind(t.path(), "/usr/local/php82/sockets/alice.sock"));
    let r = run(t.path(), Scope::default(), true);
    let f = r.findings.iter().find(|f| f.check == "socket-drift").unwrap();
    assert_eq!(f.socket_state, Some("refused"));
}

#[test]
fn user_scope_reads_only_that_user() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    // A broken file of another user must not matter to a --user bob scan.
    write(
        t.path(),
        &format!("{U}/alice/nginx.conf"),
        "server { include /nope/missing.conf; ",
    );
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        false,
    );
    assert!(r.domains.iter().all(|d| d.user == "bob"));
    assert!(r.findings.iter().all(|f| f.secondary), "{:#?}", r.findings);
    let r = run(
        t.path(),
        Scope {
            user: None,
            domain: Some("a.test".into()),
        },
        false,
    );
    assert!(r.domains.iter().all(|d| d.domain == "a.test"));
    assert!(!r.findings.is_empty());
}

#[test]
fn unreadable_or_broken_config_is_unknown_not_healthy() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(
        t.path(),
        &format!("{U}/bob/nginx.conf"),
        "server { include /etc/nginx/absent.conf; server_name b.test;\n",
    );
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        false,
    );
    assert!(
        r.findings.iter().any(|f| f.check == "unknown"),
        "{:#?}",
        r.findings
    );
    assert_eq!(r.domains[0].status, "unknown");
    assert_eq!(r.verdict, "unknown");
    assert_eq!(r.exit_code(), 3);
}

#[test]
fn missing_options_conf_is_unknown() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    std::fs::remove_file(t.path().join("usr/local/directadmin/custombuild/options.conf")).unwrap();
    let r = run(t.path(), Scope::default(), false);
    assert!(r
        .findings
        .iter()
        .any(|f| f.check == "unknown" && f.message.contains("options.conf")));
    assert!(
        r.domains.iter().all(|d| d.status == "unknown"),
        "{:#?}",
        r.domains
    );
}

#[test]
fn upstream_and_set_variables_are_resolved_map_is_unknown() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(
        t.path(),
        "/etc/nginx/nginx.conf",
        "user nginx;\nhttp {\n\tupstream php_bob { server unix:/usr/local/php82/sockets/bob.sock; }\n\
\tmap $host $dyn { default unix:/x.sock; }\n\tinclude /etc/nginx/directadmin-vhosts.conf;\n}\n",
    );
    let conf = "server {\n\tserver_name b.test;\n\tset $sock unix:/usr/local/php82/sockets/bob.sock;\n\
\tlocation /a/ { fastcgi_pass php_bob; }\n\tlocation /b/ { fastcgi_pass $sock; }\n\tlocation /c/ { fastcgi_pass $dyn; }\n}\n";
    write(t.path(), &format!("{U}/bob/nginx.conf"), conf);
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        false,
    );
    let socks: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.socket.clone().unwrap_or_default(), f.severity))
        .collect();
    assert!(
        socks
            .iter()
            .filter(|(s, _)| s == "/usr/local/php82/sockets/bob.sock")
            .count()
            == 2,
        "{socks:?}"
    );
    assert!(r
        .findings
        .iter()
        .any(|f| f.severity == fpm_doctor::checks::Severity::Unknown && f.message.contains("$dyn")));
}

#[test]
fn custom_template_and_overlay_layers() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    // A custom template hard-codes 8.2 for every user; DA inlined it for bob.
    write(
        t.path(),
        "/usr/local/directadmin/data/templates/custom/nginx_server.conf",
        "server {\n|CUSTOM|\n\tserver_name |DOMAIN|;\n\tlocation ~ \\.php$ {\n\t\tfastcgi_pass unix:/usr/local/php|PHP2_RELEASE|/sockets/|USER|.sock;\n\t\tfastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\n\t}\n}\n",
    );
    write(
        t.path(),
        &format!("{U}/bob/nginx.conf"),
        "server {\n\tserver_name b.test;\n\tlocation ~ \\.php$ {\n\t\tfastcgi_pass unix:/usr/local/php82/sockets/bob.sock;\n\t}\n}\n",
    );
    // An overlay copied over /etc/nginx/webapps.conf with the old webapps socket.
    let stale_webapps = "location ^~ /phpMyAdmin {\n\tlocation ~ \\.php$ {\n\t\tfastcgi_pass unix:/usr/local/php82/sockets/webapps.sock;\n\t}\n}\n";
    write(
        t.path(),
        "/usr/local/directadmin/custombuild/custom/nginx/conf/webapps.conf",
        stale_webapps,
    );
    write(t.path(), "/etc/nginx/webapps.conf", stale_webapps);
    let r = run(t.path(), Scope::default(), true);
    let bob = r
        .findings
        .iter()
        .find(|f| f.domain.as_deref() == Some("b.test") && f.layer == Some("template"))
        .unwrap();
    assert_eq!(bob.line, Some(6));
    assert!(bob
        .file
        .as_deref()
        .unwrap()
        .ends_with("templates/custom/nginx_server.conf"));
    let ov: Vec<_> = r.findings.iter().filter(|f| f.layer == Some("overlay")).collect();
    assert!(!ov.is_empty(), "{:#?}", r.findings);
    assert!(ov.iter().all(|f| f
        .file
        .as_deref()
        .unwrap()
        .ends_with("custom/nginx/conf/webapps.conf")));
    assert!(ov
        .iter()
        .all(|f| f.expected_socket.as_deref() == Some("/usr/local/php83/sockets/webapps.sock")));
}

#[test]
fn subdomain_alias_and_disabled_slot() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(t.path(), &format!("{U}/bob/domains/b.test.subdomains"), "shop\n");
    write(
        t.path(),
        &format!("{U}/bob/domains/b.test.pointers"),
        "b-alias.test=type=alias\n",
    );
    write(
        t.path(),
        &format!("{U}/bob/domains/b.test.conf"),
        "domain=b.test\nphp1_select=2\n",
    );
    let conf = server_block("b.test www.b.test b-alias.test", "bob", "", false)
        + &server_block("shop.b.test", "bob", "", false);
    write(t.path(), &format!("{U}/bob/nginx.conf"), &conf);
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        false,
    );
    let names: Vec<_> = r.domains.iter().map(|d| d.domain.as_str()).collect();
    assert_eq!(names, vec!["b.test", "shop.b.test"]);
    assert_eq!(r.domains[1].parent.as_deref(), Some("b.test"));
    let f = r
        .findings
        .iter()
        .find(|f| f.message.contains("disabled"))
        .unwrap();
    assert_eq!(f.line, Some(2));
    assert_eq!(f.text.as_deref(), Some("php1_select=2"));
}

#[test]
fn apache_mode_reads_httpd_and_cust_httpd() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(
        t.path(),
        "/usr/local/directadmin/custombuild/options.conf",
        "webserver=apache\nphp1_release=8.3\nphp1_mode=php-fpm\n",
    );
    let handler = "\t\tAddHandler \"proxy:unix:/usr/local/php82/sockets/bob.sock|fcgi://localhost\" .php\n";
    write(
        t.path(),
        &format!("{U}/bob/domains/b.test.cust_httpd"),
        &format!(
            "<FilesMatch \\.php$>\n{}</FilesMatch>\n",
            handler.replace("bob.sock", "|USER|.sock")
        ),
    );
    write(
        t.path(),
        &format!("{U}/bob/httpd.conf"),
        &format!("<VirtualHost 1.2.3.4:80>\n\tServerName www.b.test\n\tServerAlias b.test\n\t<FilesMatch \\.php$>\n{handler}\t</FilesMatch>\n</VirtualHost>\n"),
    );
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        false,
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.check == "socket-drift")
        .expect("finding");
    assert_eq!(f.layer, Some("custom"));
    assert!(f.file.as_deref().unwrap().ends_with("b.test.cust_httpd"));
    assert_eq!(f.line, Some(2));
}

#[test]
fn broken_cust_nginx_is_unknown() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(
        t.path(),
        &format!("{U}/bob/domains/b.test.cust_nginx"),
        "location ~ \\.php$ {\n\tfastcgi_pass \"unix:/x.sock;\n",
    );
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        false,
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.check == "unknown" && f.file.as_deref().unwrap().ends_with("b.test.cust_nginx")),
        "{:#?}",
        r.findings
    );
    assert_eq!(r.domains[0].status, "unknown");
}

#[test]
fn isolated_fpm_pool_listen_is_the_expected_socket() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    // isolated_fpm: the user's own master listens where the pool says.
    let own = "/usr/local/php83/sockets/bob/bob.sock";
    write(
        t.path(),
        &format!("{U}/bob/php/php-fpm83.conf"),
        &format!("[bob]\nuser = bob\nlisten = {own}\n"),
    );
    write(t.path(), &format!("{U}/bob/nginx_php.conf"), &php_location(own));
    serve_fcgi(bind(t.path(), own));
    serve_fcgi(bind(t.path(), "/usr/local/php83/sockets/webapps.sock"));
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        true,
    );
    assert_eq!(r.domains[0].expected_socket.as_deref(), Some(own));
    assert!(
        r.findings.iter().all(|f| f.check != "socket-drift"),
        "{:#?}",
        r.findings
    );
    // A custom snippet still naming the shared-pool path is now the odd one out.
    write(
        t.path(),
        &format!("{U}/bob/domains/b.test.cust_nginx"),
        "location ~ \\.php$ { fastcgi_pass unix:/usr/local/php83/sockets/bob.sock; }\n",
    );
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        true,
    );
    let f = r.findings.iter().find(|f| f.check == "socket-drift").unwrap();
    assert_eq!(f.expected_socket.as_deref(), Some(own));
    assert_eq!(f.layer, Some("custom"));
}

#[test]
fn several_admin_accounts_are_all_scanned() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(
        t.path(),
        "/usr/local/directadmin/data/admin/admin.list",
        "admin\nadmin2\n",
    );
    for a in ["admin", "admin2"] {
        let d = format!("{a}.test");
        user(t.path(), a, &[&d], &server_block(&d, a, "", false), "83");
        write(
            t.path(),
            &format!("{U}/{a}/user.conf"),
            "creator=root\nusertype=admin\n",
        );
    }
    let r = run(t.path(), Scope::default(), false);
    for d in ["admin.test", "admin2.test", "a.test", "b.test"] {
        assert!(r.domains.iter().any(|x| x.domain == d), "{d} missing");
    }
}

#[test]
fn socket_the_nginx_worker_cannot_open_is_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    let l = bind(t.path(), "/usr/local/php83/sockets/bob.sock");
    let p = t.path().join("usr/local/php83/sockets/bob.sock");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    nix::unistd::chown(
        &p,
        Some(nix::unistd::Uid::from_raw(12345)),
        Some(nix::unistd::Gid::from_raw(12345)),
    )
    .unwrap();
    serve_fcgi(l);
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        true,
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.check == "socket-drift")
        .expect("finding");
    assert_eq!(
        f.socket_state,
        Some("permission_denied"),
        "root may connect, nginx (uid 101) may not"
    );
    assert_eq!(f.severity, fpm_doctor::checks::Severity::Critical);
}

#[test]
fn tcp_fastcgi_listener_is_probed_when_enabled() {
    use std::io::{Read, Write};
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut hdr = [0u8; 8];
            if c.read_exact(&mut hdr).is_err() {
                continue;
            }
            let mut body = vec![0u8; u16::from_be_bytes([hdr[4], hdr[5]]) as usize + hdr[6] as usize];
            let _ = c.read_exact(&mut body);
            let _ = c.write_all(&[1u8, 10, 0, 0, 0, 0, 0, 0]);
        }
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let conf = format!(
        "server {{\n\tserver_name b.test;\n\tlocation ~ \\.php$ {{ fastcgi_pass 127.0.0.1:{port}; }}\n\
\tlocation /old/ {{ fastcgi_pass 127.0.0.1:{dead_port}; }}\n}}\n"
    );
    write(t.path(), &format!("{U}/bob/nginx.conf"), &conf);
    let mut cfg = Config::load(None, Some(t.path())).unwrap();
    cfg.probe.tcp = Some(true);
    cfg.probe.timeout_ms = 500;
    let r = scan(
        &cfg,
        &Scope {
            user: Some("bob".into()),
            domain: None,
        },
    )
    .unwrap();
    let states: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.check == "socket-drift")
        .map(|f| (f.socket.clone().unwrap(), f.socket_state.unwrap()))
        .collect();
    assert!(
        states.contains(&(format!("127.0.0.1:{port}"), "listening")),
        "{states:?}"
    );
    assert!(
        states.contains(&(format!("127.0.0.1:{dead_port}"), "refused")),
        "{states:?}"
    );
    let live = r
        .findings
        .iter()
        .find(|f| f.socket_state == Some("listening"))
        .unwrap();
    assert_eq!(
        live.severity,
        fpm_doctor::checks::Severity::Warning,
        "live, but not the panel's socket"
    );
}

#[test]
fn nginx_apache_mode_uses_apache_for_proxied_domains_and_nginx_for_nginx_only() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(
        t.path(),
        "/usr/local/directadmin/custombuild/options.conf",
        "webserver=nginx_apache\nphp1_release=8.3\nphp1_mode=php-fpm\n",
    );
    // bob: proxied to Apache, whose httpd.conf has a stale handler.
    write(
        t.path(),
        &format!("{U}/bob/nginx.conf"),
        "server {\n\tserver_name b.test www.b.test;\n\tlocation / { proxy_pass http://1.2.3.4:8080; }\n}\n",
    );
    write(
        t.path(),
        &format!("{U}/bob/httpd.conf"),
        "<VirtualHost 1.2.3.4:8080>\n\tServerName b.test\n\tAddHandler \"proxy:unix:/usr/local/php82/sockets/bob.sock|fcgi://localhost\" .php\n</VirtualHost>\n",
    );
    write(t.path(), &format!("{U}/alice/httpd.conf"), "");
    let r = run(t.path(), Scope::default(), true);
    let b = r
        .findings
        .iter()
        .find(|f| f.domain.as_deref() == Some("b.test"))
        .expect("bob's apache finding");
    assert!(b.file.as_deref().unwrap().ends_with("bob/httpd.conf"));
    assert_eq!(b.layer, Some("generated"));
    assert_eq!(b.line, Some(3));
}

#[test]
fn a_users_include_symlinked_to_a_root_only_file_is_not_read() {
    let t = tempfile::tempdir().unwrap();
    base_tree(t.path());
    write(t.path(), "/etc/shadow", "root:SECRET-HASH:19000:0:99999:7:::\n");
    let home = t.path().join("home/bob");
    std::fs::create_dir_all(home.join("nginx")).unwrap();
    nix::unistd::chown(&home, Some(nix::unistd::Uid::from_raw(1003)), None).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", home.join("nginx/extra.conf")).unwrap();
    // A file in the home that someone else owns is not read either.
    write(
        t.path(),
        "/home/bob/nginx/planted.conf",
        "fastcgi_pass unix:/planted.sock;\n",
    );
    nix::unistd::chown(
        &home.join("nginx/planted.conf"),
        Some(nix::unistd::Uid::from_raw(4242)),
        None,
    )
    .unwrap();
    let conf = "server {\n\tserver_name b.test;\n\tinclude /home/bob/nginx/extra.conf;\n\tinclude /home/bob/nginx/planted.conf;\n\
\tlocation ~ \\.php$ { fastcgi_pass unix:/usr/local/php83/sockets/bob.sock; }\n}\n";
    write(t.path(), &format!("{U}/bob/nginx.conf"), conf);
    let r = run(
        t.path(),
        Scope {
            user: Some("bob".into()),
            domain: None,
        },
        false,
    );
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("SECRET"), "nothing of the linked file is shown");
    assert!(!json.contains("planted.sock"));
    let unk: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.check == "unknown")
        .map(|f| f.message.clone())
        .collect();
    assert!(unk.iter().any(|m| m.contains("symlink")), "{unk:?}");
    assert!(unk.iter().any(|m| m.contains("owned by uid 4242")), "{unk:?}");
}
