//! `fpm-doctor demo`: a realistic DirectAdmin server just upgraded from PHP
//! 8.2 to 8.3, built in a temp dir with the DA simulator, with live sockets
//! served by the demo itself, then scanned like a real server.
//!
//! The demo's "PHP-FPM" is a stand-in that answers only FastCGI's
//! FCGI_GET_VALUES handshake, which is all the probe asks; it is labelled as
//! such in the output.

use crate::config::Config;
use crate::readers::Scope;
use crate::sim::{self, SimDomain, SimServer, SimUser};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

fn dom(name: &str) -> SimDomain {
    SimDomain {
        name: name.into(),
        php1_select: None,
        subdomains: vec![],
        aliases: vec![],
        ssl: false,
        nginx_only: false,
        cust_nginx: None,
        cust_nginx_https: None,
        cust_httpd: None,
    }
}

fn user(name: &str, creator: &str, usertype: &str, uid: u32, domains: Vec<SimDomain>) -> SimUser {
    SimUser {
        name: name.into(),
        creator: creator.into(),
        usertype: usertype.into(),
        uid,
        domains,
    }
}

const STALE_PHP: &str = "location ~ \\.php$ {\n    try_files $uri =404;\n    include /etc/nginx/fastcgi_params;\n    \
fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n    fastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\n}\n";

/// The demo server: who is drifted and why.
pub fn demo_server() -> SimServer {
    let mut alice_main = dom("alice-shop.test");
    alice_main.ssl = true;
    alice_main.subdomains = vec!["blog".into()];
    alice_main.cust_nginx = Some(format!("# added by a developer in 2023 for PHP 8.2\n{STALE_PHP}"));
    let mut alice_ok = dom("alice-static.test");
    alice_ok.aliases = vec!["alice-static.example".into()];

    let mut bob_main = dom("bob-news.test");
    bob_main.ssl = true;
    bob_main.cust_nginx_https = Some(format!(
        "# HTTPS-only tuning\nclient_max_body_size 64m;\n{STALE_PHP}"
    ));

    let mut carol_ok = dom("carol.test");
    carol_ok.ssl = true;
    let mut carol_old = dom("carol-legacy.test");
    carol_old.php1_select = Some(2);

    let mut dave_ok = dom("dave.test");
    dave_ok.subdomains = vec!["dev".into()];

    SimServer {
        webserver: "nginx".into(),
        php: vec![
            ("8.3".into(), "php-fpm".into()),
            ("no".into(), "php-fpm".into()),
            ("no".into(), "php-fpm".into()),
            ("no".into(), "php-fpm".into()),
        ],
        admins: vec!["admin".into()],
        resellers: vec!["resel".into()],
        users: vec![
            user("admin", "root", "admin", 1000, vec![dom("server.test")]),
            user(
                "resel",
                "admin",
                "reseller",
                1001,
                vec![dom("resel-hosting.test")],
            ),
            user("alice", "resel", "user", 1002, vec![alice_main, alice_ok]),
            user("bob", "resel", "user", 1003, vec![bob_main, dom("bob-wiki.test")]),
            user("carol", "admin", "user", 1004, vec![carol_ok, carol_old]),
            user("dave", "admin", "user", 1005, vec![dave_ok]),
        ],
        nginx_user: "nginx".into(),
        runtime: None,
    }
}

/// Server-wide layers the demo adds on top of the per-domain ones: a custom
/// subdomain template and a CustomBuild overlay nginx.conf, both still on 8.2.
fn add_server_wide_drift(root: &Path) -> std::io::Result<()> {
    let host = |p: &str| root.join(p.trim_start_matches('/'));
    // Subdomains only (DA uses nginx_server_sub.conf for them).
    let sub = host("/usr/local/directadmin/data/templates/custom/nginx_server_sub.conf");
    std::fs::create_dir_all(sub.parent().unwrap())?;
    std::fs::write(
        &sub,
        "server\n{\n|CUSTOM|\n\tlisten 80;\n\tserver_name |SUB|.|DOMAIN| www.|SUB|.|DOMAIN|;\n\troot |DOCROOT|;\n\
\tlocation ~ \\.php$ {\n\t\tinclude /etc/nginx/fastcgi_params;\n\t\tfastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\n\t}\n}\n",
    )?;
    // An admin's CustomBuild overlay of nginx.conf, written for 8.2: the
    // hostname's server block with webmail inline on the old webapps socket.
    let ov = host("/usr/local/directadmin/custombuild/custom/nginx/conf/nginx.conf");
    std::fs::create_dir_all(ov.parent().unwrap())?;
    let live = std::fs::read_to_string(host("/etc/nginx/nginx.conf"))?;
    let hostname_block =
        "\tserver {\n\t\tlisten 80 default_server;\n\t\tserver_name server.sim.test localhost;\n\
\t\troot /var/www/html;\n\t\t# webmail, set up by hand in 2022\n\t\tlocation ^~ /roundcube {\n\
\t\t\tlocation ~ \\.php$ {\n\t\t\t\tinclude /etc/nginx/fastcgi_params;\n\
\t\t\t\tfastcgi_pass unix:/usr/local/php82/sockets/webapps.sock;\n\t\t\t}\n\t\t}\n\t}\n";
    let stale = live.replace("\tinclude /etc/nginx/nginx-vhosts.conf;\n", hostname_block);
    std::fs::write(ov, stale)?;
    sim::rewrite(root)
}

/// Answers FCGI_GET_VALUES on each socket, for as long as the process lives.
fn serve_sockets(root: &Path, sockets: &[String]) -> std::io::Result<()> {
    for s in sockets {
        serve_standin(&root.join(s.trim_start_matches('/')))?;
    }
    Ok(())
}

/// Binds a stand-in PHP-FPM socket at a host path (replacing a stale one)
/// and answers it with [`answer_fcgi`]. Mode 666: DA's is 660 owner the user,
/// group the nginx worker, but the demo cannot assume it may chown.
pub fn serve_standin(host: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(host.parent().unwrap_or(Path::new("/")))?;
    let _ = std::fs::remove_file(host);
    let l = UnixListener::bind(host)?;
    std::fs::set_permissions(host, std::fs::Permissions::from_mode(0o666))?;
    answer_fcgi(l);
    Ok(())
}

/// Answers FCGI_GET_VALUES on a listener, for as long as the process lives:
/// all the probe asks. Used by the demo and by tests as a PHP-FPM stand-in.
pub fn answer_fcgi(l: UnixListener) {
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut hdr = [0u8; 8];
            if c.read_exact(&mut hdr).is_err() {
                continue;
            }
            let len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize + hdr[6] as usize;
            let mut body = vec![0u8; len];
            let _ = c.read_exact(&mut body);
            // FCGI_GET_VALUES_RESULT with FCGI_MPXS_CONNS=0, like PHP-FPM.
            let pair = [&[15u8, 1][..], b"FCGI_MPXS_CONNS", b"0"].concat();
            let mut rec = vec![1u8, 10, 0, 0, 0, pair.len() as u8, 0, 0];
            rec.extend_from_slice(&pair);
            let _ = c.write_all(&rec);
        }
    });
}

/// Builds the tree, starts the stand-in sockets, scans, prints. Returns the exit code.
pub fn run(keep: Option<&Path>, json: bool) -> Result<i32, String> {
    let (_guard, root): (Option<tempfile::TempDir>, PathBuf) = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            (None, dir.to_path_buf())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("fpm-doctor-demo.")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    build(&root).map_err(|e| format!("building the demo tree in {}: {e}", root.display()))?;
    let cfg = Config::load(None, Some(&root))?;
    let r = crate::scan::scan(&cfg, &Scope::default())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?);
    } else {
        println!(
            "Demo DirectAdmin server in {} (PHP just upgraded 8.2 -> 8.3; the live sockets are stand-ins \
served by this demo that answer the FastCGI handshake).\n",
            root.display()
        );
        print!(
            "{}",
            crate::report::human(&r, std::io::IsTerminal::is_terminal(&std::io::stdout()), true)
        );
        if keep.is_some() {
            println!(
                "\nScan it again: fpm-doctor scan --root {} --no-probe",
                root.display()
            );
        }
    }
    Ok(r.exit_code())
}

/// `fpm-doctor demo --serve`: the demo tree with live stand-in sockets,
/// served with an identity switch. Repairs really run: DA's rewrite is the
/// simulator's emulator; there is no nginx to test or reload.
pub fn serve(keep: Option<&Path>, bind: std::net::SocketAddr) -> Result<(), String> {
    let (_guard, root): (Option<tempfile::TempDir>, PathBuf) = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            (None, std::fs::canonicalize(dir).map_err(|e| e.to_string())?)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("fpm-doctor-demo.")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    build(&root).map_err(|e| format!("building the demo tree in {}: {e}", root.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let q = |p: &Path| shell_words::quote(&p.to_string_lossy()).into_owned();
    let conf = root.join("fpm-doctor-demo.toml");
    std::fs::write(
        &conf,
        format!(
            "# The demo's commands: DA's rewrite is the simulator's emulator; no nginx runs.\n\
[commands]\nrewrite = {:?}\nnginx_test = \"\"\nnginx_reload = \"\"\napache_test = \"\"\napache_reload = \"\"\nrun_dataskq = false\n",
            format!("{} sim-rewrite {} --user {{user}}", q(&exe), q(&root))
        ),
    )
    .map_err(|e| format!("{}: {e}", conf.display()))?;
    let cfg = Config::load(Some(&conf), Some(&root))?;
    // The first snapshot now, so the overview opens on a result.
    crate::web::snapshot::run(&cfg)?;
    use crate::access::Level;
    let demo = crate::web::serve::Demo {
        root: root.clone(),
        identities: vec![
            (Level::Admin, "admin".into()),
            (Level::Reseller, "resel".into()),
            (Level::User, "alice".into()),
            (Level::User, "bob".into()),
            (Level::User, "carol".into()),
        ],
    };
    crate::web::serve::run(cfg, bind, Some(demo))
}

/// nginx logs of the last minutes, as the real nginx writes them after the
/// upgrade: errno 2 for alice's stale socket, errno 111 for bob's stale file.
fn write_logs(root: &Path) -> std::io::Result<()> {
    use crate::evidence::logread::format_time;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let err_time = |t: i64| format_time(t).replace('-', "/");
    let acc_time = |t: i64| {
        let f = format_time(t);
        let (date, time) = f.split_at(10);
        let mon: usize = date[5..7].parse().unwrap_or(1);
        format!(
            "{}/{}/{}:{} +0000",
            &date[8..10],
            MON[mon - 1],
            &date[0..4],
            time.trim()
        )
    };
    let dir = root.join("var/log/nginx/domains");
    std::fs::create_dir_all(&dir)?;
    for (domain, user, errno, what, n) in [
        ("alice-shop.test", "alice", 2, "No such file or directory", 7),
        ("bob-news.test", "bob", 111, "Connection refused", 3),
    ] {
        let (mut err, mut acc) = (String::new(), String::new());
        for i in 0..n {
            let t = now - 600 + i * 60;
            let sock = format!("/usr/local/php82/sockets/{user}.sock");
            err.push_str(&format!(
                "{} [error] 1234#1234: *{i} connect() to unix:{sock} failed ({errno}: {what}) while connecting to upstream, \
client: 203.0.113.{i}, server: {domain}, request: \"GET /index.php HTTP/1.1\", upstream: \"fastcgi://unix:{sock}:\", host: \"{domain}\"\n",
                err_time(t)
            ));
            acc.push_str(&format!(
                "203.0.113.{i} - - [{}] \"GET /index.php HTTP/1.1\" 502 157 \"-\" \"Mozilla/5.0\"\n",
                acc_time(t)
            ));
        }
        std::fs::write(dir.join(format!("{domain}.error.log")), err)?;
        std::fs::write(dir.join(format!("{domain}.log")), acc)?;
    }
    std::fs::write(root.join("var/log/nginx/error.log"), "")?;
    // The FPM and kernel logs exist and are quiet: those checks say "ok", not "unknown".
    let f = format_time(now - 900);
    let (date, time) = f.split_at(10);
    let mon: usize = date[5..7].parse().unwrap_or(1);
    let fpm_time = format!(
        "{}-{}-{} {}",
        &date[8..10],
        MON[mon - 1],
        &date[0..4],
        time.trim()
    );
    std::fs::write(
        root.join("var/log/php-fpm83.log"),
        format!("[{fpm_time}] NOTICE: fpm is running, pid 4242\n[{fpm_time}] NOTICE: ready to handle connections\n"),
    )?;
    std::fs::write(
        root.join("var/log/kern.log"),
        format!(
            "{} {} {} server kernel: [    0.000000] Linux version 6.1.0-27-amd64\n",
            MON[mon - 1],
            &date[8..10],
            time.trim()
        ),
    )?;
    Ok(())
}

/// Writes the demo tree under `root` and starts its live sockets.
pub fn build(root: &Path) -> std::io::Result<()> {
    let s = demo_server();
    sim::write_tree(root, &s)?;
    add_server_wide_drift(root)?;
    write_logs(root)?;
    let mut live: Vec<String> = s
        .users
        .iter()
        .map(|u| format!("/usr/local/php83/sockets/{}.sock", u.name))
        .collect();
    live.push("/usr/local/php83/sockets/webapps.sock".into());
    serve_sockets(root, &live)?;
    // A stale socket file left by the stopped 8.2 master: nothing listens.
    let stale = root.join("usr/local/php82/sockets/bob.sock");
    std::fs::create_dir_all(stale.parent().unwrap())?;
    let _ = std::fs::remove_file(&stale);
    drop(UnixListener::bind(&stale)?);
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o666))?;
    Ok(())
}
