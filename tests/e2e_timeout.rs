//! A real errno 110 through real nginx: a PHP script sleeps longer than the
//! `fastcgi_read_timeout 2s;` an admin put in the domain's `.cust_nginx`;
//! nginx answers 504 and logs `upstream timed out (110: …)`; the scanner
//! labels it 504 (not 502), links it to `fastcgi-timeout`, names the
//! `.cust_nginx` line in force, and the dry-run repair raises that line in
//! place.

mod support;

use fpm_doctor::sim::{self, NginxRuntime, SimDomain, SimServer, SimUser};
use serde_json::Value;
use std::time::Instant;
use support::{free_port, self_signed_cert, Daemons};

const CUST: &str = "/usr/local/directadmin/data/users/alice/domains/alice.test.cust_nginx";
const SLOW_PHP: &str = "/home/alice/domains/alice.test/public_html/slow.php";

fn fpm_doctor(args: &[&str], root: &std::path::Path) -> (i32, Value) {
    support::fpm_doctor_json(args, root)
}

#[test]
fn real_504_from_slow_php_is_a_fastcgi_timeout_with_a_cust_nginx_repair() {
    support::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(&tmp.path().join(".test-cert"));
    let mut s = SimServer::new("nginx", "8.2");
    let mut admin = SimUser::new("admin", "admin", 5000, vec![]);
    admin.usertype = "admin".into();
    s.users = vec![
        admin,
        SimUser::new("alice", "admin", 5001, vec![SimDomain::new("alice.test")]),
    ];
    s.runtime = Some(NginxRuntime {
        http_port: free_port(),
        https_port: free_port(),
        ssl_cert: Some(cert),
        ssl_key: Some(key),
        ..NginxRuntime::default()
    });
    sim::write_tree(tmp.path(), &s).unwrap();
    // What an admin does: a custom line in the panel, then DA's rewrite.
    let host = |p: &str| tmp.path().join(p.trim_start_matches('/'));
    std::fs::write(host(CUST), "fastcgi_read_timeout 2s;\n").unwrap();
    sim::rewrite(tmp.path()).unwrap();
    std::fs::write(host(SLOW_PHP), "<?php sleep(6); echo \"done\\n\";\n").unwrap();
    let generated =
        std::fs::read_to_string(host("/usr/local/directadmin/data/users/alice/nginx.conf")).unwrap();
    assert!(
        generated.contains("fastcgi_read_timeout 2s;"),
        "rewrite inlines the line:\n{generated}"
    );

    let mut d = Daemons::start(tmp.path());
    d.start_fpm("8.2");
    d.start_nginx();
    let ok = d.get(false, "alice.test", "/index.php");
    assert_eq!(ok.status, 200, "{ok:?}\n{}", d.nginx_errors());

    let t0 = Instant::now();
    let r = d.get(false, "alice.test", "/slow.php");
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(r.status, 504, "{r:?}\n{}{}", d.nginx_errors(), d.daemon_logs());
    assert!(
        (1.5..5.5).contains(&took),
        "nginx gave up after the 2 s timeout, took {took:.1}s"
    );
    let log =
        std::fs::read_to_string(d.host("/var/log/nginx/domains/alice.test.error.log")).unwrap_or_default();
    assert!(
        log.contains(
            "upstream timed out (110: Connection timed out) while reading response header from upstream"
        ),
        "{}",
        d.nginx_errors()
    );

    let (_, j) = fpm_doctor(&["scan"], d.root());
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    let findings = j["findings"].as_array().unwrap();
    let triage = findings
        .iter()
        .find(|f| f["check"] == "log-triage" && f["domain"] == "alice.test")
        .unwrap_or_else(|| panic!("no log-triage group for alice.test\n{pretty}"));
    assert_eq!(
        triage["statuses"]["504"], 1,
        "labelled 504 from the access log\n{pretty}"
    );
    assert!(triage["statuses"].get("502").is_none(), "not a 502\n{pretty}");
    assert_eq!(triage["explained_by"], "fastcgi-timeout", "{pretty}");

    let t = findings
        .iter()
        .find(|f| f["check"] == "fastcgi-timeout")
        .unwrap_or_else(|| panic!("no fastcgi-timeout finding\n{pretty}"));
    assert_eq!(t["domain"], "alice.test", "{pretty}");
    assert_eq!(t["user"], "alice", "{pretty}");
    assert_eq!(
        t["file"], CUST,
        "the .cust_nginx line, not its generated copy\n{pretty}"
    );
    assert_eq!(t["line"], 1, "{pretty}");
    assert_eq!(t["text"], "fastcgi_read_timeout 2s;", "{pretty}");
    assert_eq!(t["layer"], "custom", "{pretty}");
    assert_eq!(t["socket"], "/usr/local/php82/sockets/alice.sock", "{pretty}");
    assert_eq!(t["count"], 1, "{pretty}");
    assert!(t["message"].as_str().unwrap().contains("within 2 s"), "{pretty}");
    assert!(
        t["log_line"]
            .as_str()
            .unwrap()
            .contains("(110: Connection timed out)"),
        "{pretty}"
    );
    assert!(
        t["generated_copies"][0]["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("/alice/nginx.conf"),
        "{pretty}"
    );
    assert!(
        j["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "fastcgi-timeout" && c["state"] == "finding"),
        "{pretty}"
    );

    let cust_before = std::fs::read(host(CUST)).unwrap();
    let (code, p) = fpm_doctor(&["repair", "--domain", "alice.test", "--dry-run"], d.root());
    let pretty = serde_json::to_string_pretty(&p).unwrap();
    assert_eq!(code, 0, "{pretty}");
    assert_eq!(p["outcome"], "dry_run", "{pretty}");
    let plan = p["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["finding"]["check"] == "fastcgi-timeout")
        .unwrap_or_else(|| panic!("no timeout plan\n{pretty}"));
    assert_eq!(plan["plan"]["safety"], "confirm", "{pretty}");
    assert!(
        plan["plan"]["advice"].as_str().unwrap().starts_with("Mitigation"),
        "{pretty}"
    );
    let e = &plan["plan"]["edits"][0];
    assert_eq!(e["file"], CUST, "{pretty}");
    assert_eq!(
        e["old"], "fastcgi_read_timeout 2s;",
        "edited in place, not duplicated\n{pretty}"
    );
    assert_eq!(e["new"], "fastcgi_read_timeout 300s;", "{pretty}");
    assert_eq!(plan["plan"]["rewrite_users"][0], "alice", "{pretty}");
    let diff = p["diff"].as_str().unwrap();
    assert!(
        diff.contains("-fastcgi_read_timeout 2s;") && diff.contains("+fastcgi_read_timeout 300s;"),
        "{diff}"
    );
    assert_eq!(
        std::fs::read(host(CUST)).unwrap(),
        cust_before,
        "a dry run writes nothing"
    );
}
