//! The `fpm-doctor` command line: JSON contract, exit codes, errors, explain.

use std::path::Path;
use std::process::Command;

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const U: &str = "/usr/local/directadmin/data/users";

fn tree(root: &Path, sock: &str) {
    write(
        root,
        "/usr/local/directadmin/custombuild/options.conf",
        "webserver=nginx\nphp1_release=8.3\nphp1_mode=php-fpm\n",
    );
    write(root, "/etc/nginx/nginx.conf", "user nginx;\nhttp {\n}\n");
    write(
        root,
        &format!("{U}/alice/user.conf"),
        "creator=admin\nusertype=user\n",
    );
    write(root, &format!("{U}/alice/domains.list"), "a.test\n");
    write(root, &format!("{U}/alice/domains/a.test.conf"), "domain=a.test\n");
    write(
        root,
        &format!("{U}/alice/nginx.conf"),
        &format!("server {{\n\tserver_name a.test www.a.test;\n\tlocation ~ \\.php$ {{\n\t\tfastcgi_pass unix:{sock};\n\t}}\n}}\n"),
    );
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fpm-doctor"))
}

#[test]
fn json_contract_and_exit_code_critical() {
    let t = tempfile::tempdir().unwrap();
    tree(t.path(), "/usr/local/php82/sockets/alice.sock");
    let out = bin()
        .args(["scan", "--json", "--root"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["verdict"], "critical");
    assert_eq!(v["php"][0]["slot"], 1);
    assert_eq!(v["php"][0]["release"], "8.3");
    assert_eq!(v["php"][0]["mode"], "php-fpm");
    assert_eq!(v["php"][0]["prefix"], "/usr/local/php83");
    let d = &v["domains"][0];
    for k in [
        "user",
        "domain",
        "php_slot",
        "php_release",
        "expected_socket",
        "status",
    ] {
        assert!(d.get(k).is_some(), "domains[] lacks {k}");
    }
    assert_eq!(d["status"], "drift");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "socket-drift")
        .expect("drift finding");
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "socket-drift" && c["state"] == "finding"));
    assert_eq!(v["primary_cause"]["check"], "socket-drift");
    for k in [
        "check",
        "severity",
        "user",
        "domain",
        "file",
        "line",
        "text",
        "layer",
        "socket",
        "socket_state",
        "expected_socket",
        "message",
    ] {
        assert!(f.get(k).is_some(), "findings[] lacks {k}");
    }
    assert_eq!(
        f["file"],
        format!("{U}/alice/nginx.conf"),
        "server paths, without the --root prefix"
    );
    assert_eq!(f["layer"], "generated");
    assert_eq!(f["socket_state"], "missing");
}

#[test]
fn no_probe_on_expected_socket_is_ok_exit_zero_and_human_output() {
    let t = tempfile::tempdir().unwrap();
    tree(t.path(), "/usr/local/php83/sockets/alice.sock");
    let out = bin()
        .args(["scan", "--no-probe", "--root"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FPM Doctor: OK"), "{text}");
    assert!(!text.contains('\x1b'), "no colour when stdout is not a terminal");
}

#[test]
fn unknown_user_is_an_error_exit_three() {
    let t = tempfile::tempdir().unwrap();
    tree(t.path(), "/x.sock");
    let out = bin()
        .args(["scan", "--user", "nobody", "--root"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such DirectAdmin user"));
}

#[test]
fn config_file_overrides_paths() {
    let t = tempfile::tempdir().unwrap();
    tree(t.path(), "/opt/php83/sockets/alice.sock");
    let cfg = t.path().join("c.toml");
    std::fs::write(&cfg, "[paths]\nphp_prefix = \"/opt/php{XY}\"\n").unwrap();
    let out = bin()
        .args(["scan", "--json", "--no-probe", "--config"])
        .arg(&cfg)
        .arg("--root")
        .arg(t.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["domains"][0]["expected_socket"],
        "/opt/php83/sockets/alice.sock"
    );
    assert_eq!(v["verdict"], "ok");
    std::fs::write(&cfg, "[paths]\nnot_a_key = 1\n").unwrap();
    let out = bin().args(["scan", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "unknown config keys are refused");
}

#[test]
fn explain_shows_documented_sections() {
    let out = bin().args(["explain", "socket-drift"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for s in ["What it does", "Why is this bad?", "Example", "Fix", "Fix safety"] {
        assert!(text.contains(s), "{s} missing");
    }
    assert_eq!(
        bin().args(["explain", "nope"]).output().unwrap().status.code(),
        Some(3)
    );
}
