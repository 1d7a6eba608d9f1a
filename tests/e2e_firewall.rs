//! loopback-banned and apache-upstream on a simulated nginx_apache tree:
//! a real TCP port for "Apache", CSF files under `--root`, and a repair
//! whose unban command is configured (the tree is not this host's CSF).

use fpm_doctor::sim::{self, NginxRuntime, SimDomain, SimServer, SimUser};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

fn fpm_doctor(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fpm-doctor"))
        .args(args)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s} {}", String::from_utf8_lossy(&out.stderr)))
}

/// nginx_apache tree whose vhosts proxy to 127.0.0.1:`port`.
fn tree(root: &Path, port: u16) {
    let mut s = SimServer::new("nginx_apache", "8.3");
    s.users = vec![SimUser::new(
        "alice",
        "admin",
        5001,
        vec![SimDomain::new("alice.test")],
    )];
    s.runtime = Some(NginxRuntime::default());
    sim::write_tree(root, &s).unwrap();
    let dac = root.join("usr/local/directadmin/conf/directadmin.conf");
    let text = std::fs::read_to_string(&dac)
        .unwrap()
        .replace("port_8080=8080", &format!("port_8080={port}"));
    std::fs::write(&dac, text).unwrap();
    sim::rewrite(root).unwrap();
}

fn of<'a>(r: &'a serde_json::Value, check: &str) -> Vec<&'a serde_json::Value> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

#[test]
fn apache_down_then_answering() {
    let t = tempfile::tempdir().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let root = t.path().join("T");
    tree(&root, port);
    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, "[probe]\ntcp = true\n").unwrap();
    let args = [
        "scan",
        "--root",
        root.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "--check",
        "apache-upstream",
    ];
    drop(l);
    let r = fpm_doctor(&args);
    let f = of(&r, "apache-upstream");
    assert_eq!(f.len(), 1, "{r:#}");
    assert_eq!(f[0]["severity"], "critical");
    assert_eq!(f[0]["socket"], format!("127.0.0.1:{port}"));
    assert_eq!(f[0]["socket_state"], "refused");
    assert!(
        f[0]["affected_domains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "alice.test"),
        "{r:#}"
    );

    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = std::thread::spawn(move || {
        for c in l.incoming().take(1) {
            let mut c = c.unwrap();
            let mut b = [0u8; 512];
            let _ = c.read(&mut b);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nServer: Apache\r\n\r\n");
        }
    });
    let r = fpm_doctor(&args);
    server.join().unwrap();
    assert!(of(&r, "apache-upstream").is_empty(), "{r:#}");
    assert_eq!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "apache-upstream")
            .unwrap()["state"],
        "ok"
    );
}

#[test]
fn csf_ban_of_the_proxy_address_is_blamed_and_repaired() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("T");
    tree(&root, 8080);
    let csf = root.join("etc/csf");
    std::fs::create_dir_all(&csf).unwrap();
    std::fs::write(
        csf.join("csf.deny"),
        "# deny\n127.0.0.1 # lfd: (apache-403) many 403s - Tue Nov 24\n",
    )
    .unwrap();
    std::fs::write(csf.join("csf.allow"), "# allow\n").unwrap();
    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, "[firewall]\ncsf_unban = \"/bin/echo unbanned {ip}\"\n").unwrap();
    let (r_, c_) = (root.to_str().unwrap(), cfg.to_str().unwrap());
    let r = fpm_doctor(&[
        "scan",
        "--root",
        r_,
        "--config",
        c_,
        "--json",
        "--no-probe",
        "--check",
        "loopback-banned",
    ]);
    let f = of(&r, "loopback-banned");
    assert_eq!(f.len(), 1, "{r:#}");
    assert_eq!(f[0]["severity"], "critical");
    assert_eq!(f[0]["file"], "/etc/csf/csf.deny");
    assert_eq!(f[0]["line"], 2);
    assert_eq!(f[0]["socket"], "127.0.0.1:8080");
    assert_eq!(f[0]["ban"]["family"], "csf");

    let rep = fpm_doctor(&[
        "repair",
        "--root",
        r_,
        "--config",
        c_,
        "--all",
        "--check",
        "loopback-banned",
        "--yes",
        "--json",
    ]);
    assert_eq!(rep["outcome"], "ok", "{rep:#}");
    let unban = rep["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "unban")
        .unwrap();
    assert_eq!(
        unban["command"],
        serde_json::json!(["/bin/echo", "unbanned", "127.0.0.1"])
    );
    assert_eq!(unban["ok"], true);
    let allow = std::fs::read_to_string(csf.join("csf.allow")).unwrap();
    assert_eq!(
        allow,
        "# allow\n127.0.0.1 # fpm-doctor: nginx reaches an upstream on this address\n"
    );
    // csf.deny still lists it (our echo did not remove it), but it is exempt now.
    let r = fpm_doctor(&[
        "scan",
        "--root",
        r_,
        "--config",
        c_,
        "--json",
        "--no-probe",
        "--check",
        "loopback-banned",
    ]);
    let f = of(&r, "loopback-banned");
    assert_eq!(f[0]["severity"], "info", "{r:#}");
    assert!(f[0]["message"].as_str().unwrap().contains("exempts"));
}
