//! DA's task queue is asynchronous: the rewrite a repair asks for may land
//! seconds later. The verify step must wait for the generated files to show
//! the fix instead of rolling back a good repair. Here the configured
//! rewrite command returns at once and runs DA's rewrite (the emulator) two
//! seconds later, in the background.

use fpm_doctor::sim::{self, SimServer};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn serve_fcgi(root: &Path, sock: &str) {
    fpm_doctor::demo::serve_standin(&root.join(sock.trim_start_matches('/'))).unwrap();
}

#[test]
fn verify_waits_for_an_asynchronous_rewrite() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    sim::write_tree(root, &SimServer::drift_demo()).unwrap();
    sim::upgrade_php(root, 1, "8.3").unwrap();
    for s in ["alice", "bob", "admin", "webapps"] {
        serve_fcgi(root, &format!("/usr/local/php83/sockets/{s}.sock"));
    }
    let bin = env!("CARGO_BIN_EXE_fpm-doctor");
    let cfg = root.join("fpm.toml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(
        f,
        "[commands]\nrewrite = \"sh -c '(sleep 2; {bin} sim-rewrite {} --user {{user}}) >/dev/null 2>&1 &'\"\nrewrite_wait_secs = 20",
        root.display()
    )
    .unwrap();
    let start = Instant::now();
    let out = Command::new(bin)
        .args(["repair", "--domain", "alice.test", "--yes", "--json", "--root"])
        .arg(root)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    let j: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(j["outcome"], "ok", "{text}");
    assert!(
        took >= Duration::from_secs(2),
        "the verify step waited for the rewrite ({took:?})"
    );
    let generated =
        std::fs::read_to_string(root.join("usr/local/directadmin/data/users/alice/nginx.conf")).unwrap();
    assert!(
        !generated.contains("php82"),
        "DA's (emulated) rewrite carried the fix into the generated file"
    );
}
