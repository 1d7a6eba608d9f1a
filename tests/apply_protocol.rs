//! The apply protocol end to end, in temp trees (`--root`).

mod apply_support;

use apply_support::*;
use fpm_doctor::apply::{self, commands, ApplyOptions, FileState, JState, Kind, Outcome, Safety, Target};
use fpm_doctor::config::Config;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn chown(t: &Tree, p: &str, uid: u32, gid: u32, mode: u32) {
    let h = t.host(p);
    std::os::unix::fs::chown(&h, Some(uid), Some(gid)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&h, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn apply_edits_keeps_owner_group_mode_and_queues_rewrite() {
    let t = Tree::standard("");
    chown(&t, CUST, 1234, 5678, 0o640);
    chown(&t, TPL, 4321, 8765, 0o604);
    let plans = two_file_plans(&t);
    let d = apply::diff(&t.cfg, &plans);
    assert!(
        d.contains("-\tfastcgi_pass unix:/usr/local/php82/sockets/alice.sock;"),
        "{d}"
    );
    assert!(
        d.contains("+\tfastcgi_pass unix:/usr/local/php83/sockets/|USER|.sock;"),
        "{d}"
    );

    let rep = apply::apply(&t.cfg, &plans, &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Ok, "{rep:#?}");
    assert_eq!(t.read(CUST), new_cust());
    assert_eq!(t.read(TPL), new_tpl());
    assert_eq!(t.meta(CUST), (1234, 5678, 0o640));
    assert_eq!(t.meta(TPL), (4321, 8765, 0o604));
    assert!(rep.files.iter().all(|f| f.state == FileState::Applied));
    assert!(t.stray_temps().is_empty());
    // One coalesced rewrite line for alice, under the root.
    assert_eq!(t.queue_lines(), vec!["action=rewrite&value=httpd&user=alice"]);

    let h = apply::history(&t.cfg);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].state, JState::Applied);
    assert_eq!(h[0].id, rep.repair_id);
    // Backups are byte-identical.
    let b = t.host("/var/lib/fpm_doctor/backups").join(&rep.repair_id);
    let orig: Vec<Vec<u8>> = h[0]
        .files
        .iter()
        .map(|f| std::fs::read(b.join(&f.backup)).unwrap())
        .collect();
    assert!(orig.contains(&CUST_TEXT.to_vec()) && orig.contains(&TPL_TEXT.to_vec()));
}

#[test]
fn symlinked_target_is_refused_and_link_target_untouched() {
    let t = Tree::standard("");
    let real = t.dir.path().join("elsewhere.conf");
    std::fs::write(&real, CUST_TEXT).unwrap();
    std::fs::remove_file(t.host(CUST)).unwrap();
    std::os::unix::fs::symlink(&real, t.host(CUST)).unwrap();
    let plans = vec![plan_at(
        CUST,
        find(CUST_TEXT, OLD_SOCK.as_bytes()).unwrap(),
        OLD_SOCK,
        NEW_SOCK,
    )];
    let rep = apply::apply(&t.cfg, &plans, &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Refused, "{rep:#?}");
    assert!(rep.error.as_deref().unwrap().contains("symlink"), "{rep:?}");
    assert_eq!(std::fs::read(&real).unwrap(), CUST_TEXT);
    assert!(std::fs::symlink_metadata(t.host(CUST))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(t.queue_lines().is_empty());

    // A FIFO (not a regular file) is refused too, without hanging.
    std::fs::remove_file(t.host(CUST)).unwrap();
    let c = std::ffi::CString::new(t.host(CUST).to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let rep = apply::apply(&t.cfg, &plans, &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Refused);
    assert!(rep.error.unwrap().contains("not a regular file"));
}

#[test]
fn stale_plan_is_refused_and_nothing_written() {
    let t = Tree::standard("");
    let plans = two_file_plans(&t);
    // The template changes after the scan (text before the span shifts it).
    let changed = replaced(TPL_TEXT, "|*if", "# note\n|*if");
    t.write(TPL, &changed);
    let rep = apply::apply(&t.cfg, &plans, &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Refused, "{rep:#?}");
    assert!(rep.error.as_deref().unwrap().contains("changed since the scan"));
    assert_eq!(t.read(CUST), CUST_TEXT);
    assert_eq!(t.read(TPL), changed);
    assert!(rep.files.iter().all(|f| f.state == FileState::Unchanged));
    assert!(t.queue_lines().is_empty());
    let h = apply::history(&t.cfg);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].state, JState::Refused);
}

#[test]
fn overlapping_and_manual_plans_are_refused() {
    let t = Tree::standard("");
    let a = t.plan(CUST, OLD_SOCK, NEW_SOCK);
    let b = t.plan(CUST, "82/sockets", "83/sockets");
    let rep = apply::apply(&t.cfg, &[a, b], &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Refused);
    assert!(rep.error.unwrap().contains("overlap"));

    let mut m = t.plan(CUST, OLD_SOCK, NEW_SOCK);
    m.safety = Safety::Manual;
    m.advice = Some("edit it by hand".into());
    let rep = apply::apply(&t.cfg, &[m], &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Refused);
    assert!(rep.error.unwrap().contains("edit it by hand"));

    let mut u = t.plan(CUST, OLD_SOCK, NEW_SOCK);
    u.rewrite_users = vec!["alice&user=root".into()];
    let rep = apply::apply(&t.cfg, &[u], &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Refused);
    assert_eq!(t.read(CUST), CUST_TEXT);
}

#[test]
fn failing_nginx_test_rolls_back_byte_for_byte() {
    let t = Tree::standard("[commands]\nnginx_test = \"/bin/false\"\nnginx_reload = \"/bin/true\"\n");
    chown(&t, CUST, 1234, 5678, 0o640);
    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::RolledBack, "{rep:#?}");
    let err = rep.error.clone().unwrap();
    assert!(
        err.contains("validate failed") && err.contains("/bin/false"),
        "{err}"
    );
    assert_eq!(t.read(CUST), CUST_TEXT);
    assert_eq!(t.read(TPL), TPL_TEXT);
    assert_eq!(t.meta(CUST), (1234, 5678, 0o640));
    assert!(
        rep.files.iter().all(|f| f.state == FileState::RolledBack),
        "{rep:#?}"
    );
    // Rewrite queued again after the restore; no reload after a failed test.
    assert_eq!(t.queue_lines().len(), 2);
    assert!(!rep
        .steps
        .iter()
        .any(|s| s.step == "reload" && !s.command.is_empty()));
    assert_eq!(apply::history(&t.cfg)[0].state, JState::RolledBack);
    assert!(t.stray_temps().is_empty());
}

#[test]
fn real_nginx_t_with_broken_unrelated_include_rolls_back() {
    if !std::path::Path::new("/usr/sbin/nginx").exists() {
        eprintln!("no nginx: skipped");
        return;
    }
    let t = Tree::new("");
    let r = t.root();
    let conf = format!(
        "pid {r}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n    access_log off;\n    include {r}/etc/nginx/conf.d/*.conf;\n}}\n"
    );
    t.write("/etc/nginx/nginx.conf", conf.as_bytes());
    let site = b"server {\n    listen 127.0.0.1:18080;\n    location / { return 200; }\n}\n";
    t.write("/etc/nginx/conf.d/site.conf", site);
    t.write(
        "/etc/nginx/conf.d/broken.conf",
        b"server {\n    bogus_directive on;\n}\n",
    );
    let cfg_text = format!(
        "[commands]\nnginx_test = \"/usr/sbin/nginx -t -q -e stderr -p {r} -c {r}/etc/nginx/nginx.conf\"\n"
    );
    std::fs::write(t.dir.path().join("fpm-doctor.toml"), cfg_text).unwrap();
    let cfg = Config::load(Some(&t.dir.path().join("fpm-doctor.toml")), Some(t.dir.path())).unwrap();
    let mut p = t.plan("/etc/nginx/conf.d/site.conf", "return 200", "return 204");
    p.rewrite_users.clear();
    let rep = apply::apply(&cfg, &[p], &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::RolledBack, "{rep:#?}");
    let err = rep.error.unwrap();
    assert!(err.contains("bogus_directive"), "{err}");
    assert_eq!(t.read("/etc/nginx/conf.d/site.conf"), site);
}

#[test]
fn verify_failure_rolls_back_and_success_keeps() {
    let t = Tree::standard("");
    let fail = |_: &Config| -> Result<(), String> { Err("a.test still answers 502".into()) };
    let opts = ApplyOptions {
        verify: Some(&fail),
        ..Default::default()
    };
    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &opts);
    assert_eq!(rep.outcome, Outcome::RolledBack);
    assert!(rep.error.unwrap().contains("still answers 502"));
    assert_eq!(t.read(CUST), CUST_TEXT);
    assert_eq!(t.read(TPL), TPL_TEXT);

    // The callback sees the new text in place.
    let seen = AtomicUsize::new(0);
    let ok = |c: &Config| -> Result<(), String> {
        assert_eq!(std::fs::read(c.host(CUST)).unwrap(), new_cust());
        seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    let opts = ApplyOptions {
        verify: Some(&ok),
        ..Default::default()
    };
    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &opts);
    assert_eq!(rep.outcome, Outcome::Ok);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(t.read(TPL), new_tpl());
}

#[test]
fn undo_restores_previous_bytes_and_runs_rewrite() {
    let t = Tree::new("");
    let r = t.root();
    let cfg_text = format!("[commands]\nrewrite = \"/usr/bin/touch {r}/rewrote-{{user}}\"\n");
    std::fs::write(t.dir.path().join("fpm-doctor.toml"), cfg_text).unwrap();
    let t = Tree {
        cfg: Config::load(Some(&t.dir.path().join("fpm-doctor.toml")), Some(t.dir.path())).unwrap(),
        dir: t.dir,
    };
    t.write(CUST, CUST_TEXT);
    t.write(TPL, TPL_TEXT);
    chown(&t, CUST, 1234, 5678, 0o640);
    let marker = t.dir.path().join("rewrote-alice");

    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Ok, "{rep:#?}");
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();

    let u = apply::undo(&t.cfg, &rep.repair_id, &ApplyOptions::default());
    assert_eq!(u.outcome, Outcome::Ok, "{u:#?}");
    assert_eq!(t.read(CUST), CUST_TEXT);
    assert_eq!(t.read(TPL), TPL_TEXT);
    assert_eq!(t.meta(CUST), (1234, 5678, 0o640));
    assert!(marker.exists(), "undo must trigger the rewrite");

    let h = apply::history(&t.cfg);
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].kind, Kind::Undo);
    assert_eq!(h[1].undoes.as_deref(), Some(rep.repair_id.as_str()));
    assert_eq!(h[1].state, JState::Applied);

    // Undoing twice is refused: the files no longer hold the repair's text.
    let again = apply::undo(&t.cfg, &rep.repair_id, &ApplyOptions::default());
    assert_eq!(again.outcome, Outcome::Refused);
    // And the undo itself can be undone (re-applies the repair's text).
    let redo = apply::undo(&t.cfg, &u.repair_id, &ApplyOptions::default());
    assert_eq!(redo.outcome, Outcome::Ok);
    assert_eq!(t.read(CUST), new_cust());
}

#[test]
fn undo_refused_when_file_changed_after_repair_shows_diff() {
    let t = Tree::standard("");
    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Ok);
    let edited = replaced(&new_cust(), "# custom", "# custom, edited by the admin");
    t.write(CUST, &edited);
    let u = apply::undo(&t.cfg, &rep.repair_id, &ApplyOptions::default());
    assert_eq!(u.outcome, Outcome::Refused, "{u:#?}");
    let d = u.diff.unwrap();
    assert!(
        d.contains("-# custom\r\n") && d.contains("+# custom, edited by the admin"),
        "{d}"
    );
    assert_eq!(t.read(CUST), edited);
    assert_eq!(t.read(TPL), new_tpl());
    assert!(apply::undo(&t.cfg, "../../etc", &ApplyOptions::default()).outcome == Outcome::Refused);
}

#[test]
fn concurrent_repairs_on_different_files_serialise() {
    let t = Arc::new(Tree::standard(""));
    let active = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let mut hs = Vec::new();
    for plan in two_file_plans(&t) {
        let (t, active, barrier) = (t.clone(), active.clone(), barrier.clone());
        hs.push(std::thread::spawn(move || {
            let v = |_: &Config| -> Result<(), String> {
                // Under the lock no other repair may be between write and verify.
                assert_eq!(active.fetch_add(1, Ordering::SeqCst), 0);
                std::thread::sleep(Duration::from_millis(200));
                active.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            };
            barrier.wait();
            apply::apply(
                &t.cfg,
                &[plan],
                &ApplyOptions {
                    verify: Some(&v),
                    ..Default::default()
                },
            )
        }));
    }
    for h in hs {
        assert_eq!(h.join().unwrap().outcome, Outcome::Ok);
    }
    assert_eq!(t.read(CUST), new_cust());
    assert_eq!(t.read(TPL), new_tpl());
    let h = apply::history(&t.cfg);
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|e| e.state == JState::Applied));
}

#[test]
fn concurrent_repairs_on_same_file_second_is_stale() {
    let t = Arc::new(Tree::standard(""));
    let barrier = Arc::new(Barrier::new(2));
    let mut hs = Vec::new();
    for new in ["php83/sockets/alice.sock", "php84/sockets/alice.sock"] {
        let plan = t.plan(CUST, OLD_SOCK, new);
        let (t, barrier) = (t.clone(), barrier.clone());
        hs.push(std::thread::spawn(move || {
            barrier.wait();
            apply::apply(&t.cfg, &[plan], &ApplyOptions::default()).outcome
        }));
    }
    let mut outs: Vec<Outcome> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    outs.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outs, vec![Outcome::Ok, Outcome::Refused]);
    let now = t.read(CUST);
    assert!(now == new_cust() || now == replaced(CUST_TEXT, OLD_SOCK, "php84/sockets/alice.sock"));
    let mut states: Vec<JState> = apply::history(&t.cfg).iter().map(|e| e.state).collect();
    states.sort();
    assert_eq!(states, vec![JState::Applied, JState::Refused]);
}

#[test]
fn lock_wait_is_bounded() {
    let t = Tree::standard("[apply]\nlock_wait_secs = 1\n");
    let held = apply::journal::Lock::acquire(&t.cfg, Duration::from_secs(1)).unwrap();
    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Failed);
    assert!(rep.error.unwrap().contains("another repair is running"));
    assert_eq!(t.read(CUST), CUST_TEXT);
    drop(held);
    assert_eq!(
        apply::apply(&t.cfg, &two_file_plans(&t), &ApplyOptions::default()).outcome,
        Outcome::Ok
    );
}

#[test]
fn under_root_default_commands_are_off_and_queue_is_under_root() {
    let t = Tree::standard("");
    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Ok);
    assert!(rep.steps.iter().all(|s| s.command.is_empty()), "{:#?}", rep.steps);
    assert!(rep.steps.iter().any(|s| s.step == "reload" && s.skipped));
    assert!(rep.steps.iter().any(|s| s.step == "validate" && s.skipped));
    assert!(rep.steps.iter().any(|s| s.step == "dataskq" && s.skipped));
    assert!(t.host(QUEUE).starts_with(t.dir.path()));
    assert_eq!(t.queue_lines().len(), 1);

    use commands::Which::*;
    for w in [NginxTest, NginxReload, ApacheTest, ApacheReload, Rewrite] {
        assert_eq!(commands::resolve_with(&t.cfg, w, true), None);
    }
    let live = Config::default();
    assert_eq!(
        commands::resolve_with(&live, NginxTest, false).unwrap(),
        "nginx -t"
    );
    assert_eq!(
        commands::resolve_with(&live, NginxReload, false).unwrap(),
        "nginx -s reload"
    );
    assert_eq!(
        commands::resolve_with(&live, NginxReload, true).unwrap(),
        "systemctl reload nginx"
    );
    assert_eq!(commands::resolve_with(&live, Rewrite, true), None);
    let mut off = Config::default();
    off.commands.nginx_reload = Some(String::new());
    assert_eq!(commands::resolve_with(&off, NginxReload, true), None);
    // Apache targets use the Apache commands.
    let t = Tree::standard("[commands]\napache_test = \"/bin/false\"\nnginx_test = \"/bin/true\"\n");
    let mut plans = two_file_plans(&t);
    plans[1].target = Target::Apache;
    let rep = apply::apply(&t.cfg, &plans, &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::RolledBack);
    assert!(rep.error.unwrap().contains("/bin/false"));
}

#[test]
fn retention_prunes_old_entries_and_backups() {
    let t = Tree::standard("[apply]\nkeep_repairs = 3\n");
    let mut cur = OLD_SOCK.to_string();
    let mut ids = Vec::new();
    for i in 0..5 {
        let next = format!("php8{i}/sockets/alice.sock");
        let rep = apply::apply(&t.cfg, &[t.plan(CUST, &cur, &next)], &ApplyOptions::default());
        assert_eq!(rep.outcome, Outcome::Ok);
        ids.push(rep.repair_id);
        cur = next;
    }
    let h: Vec<String> = apply::history(&t.cfg).into_iter().map(|e| e.id).collect();
    assert_eq!(h, ids[2..].to_vec());
    let backups = std::fs::read_dir(t.host("/var/lib/fpm_doctor/backups"))
        .unwrap()
        .count();
    assert_eq!(backups, 3);
    let gone = apply::undo(&t.cfg, &ids[0], &ApplyOptions::default());
    assert_eq!(gone.outcome, Outcome::Refused);
    // State dir is private.
    let m = std::fs::metadata(t.host("/var/lib/fpm_doctor/journal")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o700);
}

#[test]
fn edits_that_change_nothing_are_a_recorded_no_op() {
    let t = Tree::standard("[commands]\nnginx_reload = \"/bin/false\"\n");
    let rep = apply::apply(
        &t.cfg,
        &[t.plan(CUST, OLD_SOCK, OLD_SOCK)],
        &ApplyOptions::default(),
    );
    assert_eq!(rep.outcome, Outcome::Ok, "{rep:#?}");
    assert_eq!(rep.files[0].state, FileState::Unchanged);
    assert!(rep.steps.is_empty());
    assert!(t.queue_lines().is_empty());
    assert_eq!(apply::history(&t.cfg)[0].state, JState::Applied);
}
