//! kill -9 at every step of a two-file repair: after `recover()` every
//! file is all-old or all-new, never a mix, and the journal says which.
//!
//! The child is this test binary re-invoked on `crash_child` with
//! `CRASH_ROOT` (the tree) and `FPM_DOCTOR_FAULT` (the fault point) set.

mod apply_support;

use apply_support::*;
use fpm_doctor::apply::{self, ApplyOptions, JState, FAULT_ENV, FAULT_POINTS};
use fpm_doctor::config::Config;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

const ROOT_ENV: &str = "FPM_DOCTOR_TEST_CRASH_ROOT";

fn load(root: &Path) -> Config {
    Config::load(Some(&root.join("fpm-doctor.toml")), Some(root)).unwrap()
}

/// Not a test on its own: does nothing unless re-invoked by the parent.
#[test]
fn crash_child() {
    let Ok(root) = std::env::var(ROOT_ENV) else { return };
    let cfg = load(Path::new(&root));
    let t = Tree {
        dir: tempfile::tempdir().unwrap(),
        cfg,
    };
    let plans = two_file_plans(&t);
    let rep = apply::apply(&t.cfg, &plans, &ApplyOptions::default());
    // Reaching this line means the fault point was never hit.
    eprintln!("child finished without crashing: {rep:?}");
    std::process::exit(3);
}

#[test]
fn kill_9_at_every_step_then_recover_is_all_old_or_all_new() {
    for point in FAULT_POINTS {
        // mid_rollback needs a rollback: make validation fail.
        let config = if *point == "mid_rollback" {
            "[commands]\nnginx_test = \"/bin/false\"\n"
        } else {
            "[commands]\nnginx_test = \"/bin/true\"\nnginx_reload = \"/bin/true\"\n"
        };
        let t = Tree::standard(config);
        std::os::unix::fs::chown(t.host(CUST), Some(1234), Some(5678)).unwrap();
        let st = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(ROOT_ENV, t.dir.path())
            .env(FAULT_ENV, point)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(st.signal(), Some(9), "{point}: child was not killed: {st:?}");

        let msgs = apply::recover(&t.cfg);
        let h = apply::history(&t.cfg);
        assert_eq!(h.len(), 1, "{point}: {h:#?}");
        let (c, p) = (t.read(CUST), t.read(TPL));
        let all_old = c == CUST_TEXT && p == TPL_TEXT;
        let all_new = c == new_cust() && p == new_tpl();
        assert!(all_old || all_new, "{point}: mixed files after recover: {msgs:?}");
        let want = if *point == "after_verify" {
            assert!(all_new, "{point}");
            JState::Applied
        } else {
            assert!(all_old, "{point}: {msgs:?}");
            JState::RolledBack
        };
        assert_eq!(h[0].state, want, "{point}: {msgs:?}");
        assert!(!msgs.is_empty(), "{point}: recover reported nothing");
        assert_eq!(t.meta(CUST).0, 1234, "{point}: owner lost");
        assert!(t.stray_temps().is_empty(), "{point}: temp files left");
        // Recovery is idempotent and the next repair goes through.
        assert!(apply::recover(&t.cfg).is_empty(), "{point}");
        if all_old {
            let rep = apply::apply(&load(t.dir.path()), &two_file_plans(&t), &ApplyOptions::default());
            if *point != "mid_rollback" {
                assert_eq!(rep.outcome, apply::Outcome::Ok, "{point}: {rep:#?}");
            }
        }
    }
}
