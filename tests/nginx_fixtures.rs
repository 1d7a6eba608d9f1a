//! Realistic DirectAdmin files: round trip, and the directives we rely on.

use fpm_doctor::nginx::{Directive, ParsedFile};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nginx")
}

fn fixture(name: &str) -> ParsedFile {
    let p = fixture_dir().join(name);
    ParsedFile::parse(p.display().to_string(), std::fs::read(&p).unwrap())
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// (ancestor names, name, args) of every directive.
fn flat(f: &ParsedFile) -> Vec<(Vec<String>, String, Vec<String>)> {
    let mut v = Vec::new();
    f.walk(&mut |anc: &[&Directive], d| {
        v.push((
            anc.iter().map(|a| a.name.value.clone()).collect(),
            d.name.value.clone(),
            d.args.iter().map(|a| a.value.clone()).collect(),
        ))
    });
    v
}

#[test]
fn every_fixture_round_trips_also_with_crlf() {
    let mut files = Vec::new();
    all_files(&fixture_dir(), &mut files);
    assert!(files.len() >= 3);
    for p in files {
        let src = std::fs::read(&p).unwrap();
        let f = ParsedFile::parse(p.display().to_string(), src.clone());
        assert_eq!(f.print(), src, "{}", p.display());
        assert!(f.errors.is_empty(), "{}: {:?}", p.display(), f.errors);
        f.walk(&mut |_, d| assert!(f.text(d.span).starts_with(d.name.value.as_bytes())));

        let crlf = String::from_utf8(src).unwrap().replace('\n', "\r\n").into_bytes();
        let g = ParsedFile::parse("crlf", crlf.clone());
        assert_eq!(g.print(), crlf);
        assert!(g.errors.is_empty(), "{}: {:?}", p.display(), g.errors);
        assert_eq!(flat(&g), flat(&f), "{}", p.display());
    }
}

#[test]
fn da_user_conf_structure() {
    let f = fixture("alice.nginx.conf");
    let v = flat(&f);
    let servers: Vec<_> = f.directives().collect();
    assert_eq!(servers.len(), 2);
    assert!(servers.iter().all(|s| s.name.value == "server"));
    let names: Vec<_> = v
        .iter()
        .filter(|x| x.1 == "server_name")
        .map(|x| x.2.clone())
        .collect();
    assert_eq!(names, vec![vec!["a.test", "www.a.test"]; 2]);
    let listens: Vec<_> = v
        .iter()
        .filter(|x| x.1 == "listen")
        .map(|x| x.2.join(" "))
        .collect();
    assert_eq!(listens[2], "192.0.2.10:443 ssl");
    let includes: Vec<_> = v
        .iter()
        .filter(|x| x.1 == "include")
        .map(|x| x.2[0].as_str())
        .collect();
    assert!(includes.contains(&"/usr/local/directadmin/data/users/alice/nginx_php.conf"));
    assert!(includes.contains(&"/etc/nginx/webapps.conf"));

    let mut passes = Vec::new();
    f.walk(&mut |anc, d| {
        if d.name.value == "fastcgi_pass" {
            let chain: Vec<_> = anc.iter().map(|a| a.name.value.as_str()).collect();
            assert_eq!(chain, ["server", "location", "if"]);
            assert_eq!(anc[1].args[1].value, "\\.php$");
            assert_eq!(
                anc[2].args.iter().map(|a| a.value.as_str()).collect::<Vec<_>>(),
                ["(-f", "$request_filename)"]
            );
            passes.push((d.line, f.text_lossy(d.span), d.args[0].value.clone()));
        }
    });
    assert_eq!(passes.len(), 2);
    assert_eq!(
        passes[0].1,
        "fastcgi_pass unix:/usr/local/php82/sockets/alice.sock;"
    );
    assert_eq!(passes[0].2, "unix:/usr/local/php82/sockets/alice.sock");
    assert_eq!(f.line_text(passes[0].0).trim(), passes[0].1);

    let acme = v
        .iter()
        .find(|x| x.1 == "location" && x.2[0] == "~" && x.2[1].contains("acme"))
        .unwrap();
    assert_eq!(
        acme.2[1],
        "^/\\.well-known/(acme-challenge|pki-validation)/[A-Za-z0-9_-]{20,}$"
    );
}

#[test]
fn da_custom_template_keeps_directives_around_template_lines() {
    let f = fixture("nginx_server.conf");
    let v = flat(&f);
    let top: Vec<_> = f.directives().map(|d| d.name.value.clone()).collect();
    assert_eq!(top, ["server"]);
    let sn = v.iter().find(|x| x.1 == "server_name").unwrap();
    assert_eq!(sn.2, ["|DOMAIN|", "www.|DOMAIN|", "|SERVER_ALIASES|"]);
    let passes: Vec<_> = v.iter().filter(|x| x.1 == "fastcgi_pass").collect();
    assert_eq!(passes.len(), 3);
    assert_eq!(
        passes[2].2[0],
        "unix:/usr/local/php|PHP1_RELEASE|/sockets/|USER|.sock"
    );
    assert!(passes.iter().all(|p| p.0 == ["server", "location"]));
    let proxy = v.iter().find(|x| x.1 == "proxy_pass").unwrap();
    assert_eq!(proxy.0, ["server", "location"]);
    let last = v.last().unwrap();
    assert_eq!(
        (last.0.clone(), last.1.as_str()),
        (vec!["server".to_string()], "include")
    );
}

#[test]
fn cust_nginx_snippet() {
    let f = fixture("a.test.cust_nginx");
    let top: Vec<_> = f.directives().map(|d| (d.name.value.clone(), d.line)).collect();
    assert_eq!(
        top,
        [
            ("location".to_string(), 3),
            ("client_max_body_size".to_string(), 7),
            ("location".to_string(), 9),
            ("location".to_string(), 13)
        ]
    );
    let v = flat(&f);
    assert!(v
        .iter()
        .any(|x| x.1 == "location" && x.2.get(1).map(String::as_str) == Some("^/files/(\\d{4})/(\\d{2})/")));
    assert!(v
        .iter()
        .any(|x| x.1 == "add_header" && x.2 == ["X-Year", "${year}"]));
    let pass = v.iter().find(|x| x.1 == "fastcgi_pass").unwrap();
    assert_eq!(pass.0, ["location", "if"]);
}
