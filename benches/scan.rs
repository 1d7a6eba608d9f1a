//! Scan time on a generated DirectAdmin tree, next to a baseline measured in
//! the same run: `cat` of the very files the scan reads (what the disk costs).
//!
//! `cargo bench --bench scan` (defaults: 2,000 users × 5 domains = 10,000
//! domains). Override with FPM_BENCH_USERS / FPM_BENCH_DOMAINS / FPM_BENCH_RUNS.

use fpm_doctor::config::Config;
use fpm_doctor::readers::Scope;
use std::process::Command;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let users = env("FPM_BENCH_USERS", 2000);
    let domains = env("FPM_BENCH_DOMAINS", 5);
    let runs = env("FPM_BENCH_RUNS", 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let t = Instant::now();
    fpm_doctor::sim::generate_large(root, users, domains, 10).expect("generate");
    println!(
        "generated {users} users x {domains} domains in {:.2?}",
        t.elapsed()
    );

    // Baseline: read every file of the DA data dir and /etc/nginx with cat.
    let files = Command::new("sh")
        .arg("-c")
        .arg("find usr/local/directadmin etc/nginx -type f | wc -l")
        .current_dir(root)
        .output()
        .expect("find");
    println!("files in tree: {}", String::from_utf8_lossy(&files.stdout).trim());
    let mut cat = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new("sh")
            .arg("-c")
            .arg("find usr/local/directadmin etc/nginx -type f -print0 | xargs -0 cat > /dev/null")
            .current_dir(root)
            .status()
            .expect("cat");
        assert!(st.success());
        cat.push(t.elapsed());
    }

    let mut cfg = Config::load(None, Some(root)).expect("config");
    cfg.no_probe = true;
    let mut scan_np = Vec::new();
    let mut drift = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let r = fpm_doctor::scan::scan(&cfg, &Scope::default()).expect("scan");
        scan_np.push(t.elapsed());
        drift = r.domains.iter().filter(|d| d.status == "drift").count();
        assert_eq!(
            r.domains.iter().filter(|d| d.parent.is_none()).count(),
            users * domains
        );
    }
    cfg.no_probe = false;
    let mut scan_p = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let _ = fpm_doctor::scan::scan(&cfg, &Scope::default()).expect("scan");
        scan_p.push(t.elapsed());
    }
    let mut one_user = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let _ = fpm_doctor::scan::scan(
            &cfg,
            &Scope {
                user: Some("u00001".into()),
                domain: None,
            },
        )
        .expect("scan");
        one_user.push(t.elapsed());
    }
    println!("drifted domains found: {drift}");
    println!("median of {runs} runs:");
    println!("  cat of all files (baseline)   {:>10.2?}", median(cat));
    println!("  scan --no-probe               {:>10.2?}", median(scan_np));
    println!("  scan (probing sockets)        {:>10.2?}", median(scan_p));
    println!("  scan --user u00001            {:>10.2?}", median(one_user));
}
