//! Commands (no shell, env allow-list, timeouts) and DA's task.queue.

mod apply_support;

use apply_support::*;
use fpm_doctor::apply::{self, commands, da, ApplyOptions, Outcome, StepReport};
use std::time::{Duration, Instant};

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn commands_are_split_without_a_shell() {
    let t = Tree::new("");
    let pwned = t.dir.path().join("pwned");
    let line = format!("echo {{user}}; touch {} $(id) `id` | cat", pwned.display());
    let a = commands::split(&line).unwrap();
    let a = commands::substitute(&a, Some("alice"), None).unwrap();
    let s = commands::run("test", &a, Duration::from_secs(5));
    assert!(s.ok, "{s:?}");
    assert_eq!(
        s.stdout_tail,
        format!("alice; touch {} $(id) `id` | cat\n", pwned.display())
    );
    assert!(!pwned.exists());
    // Quotes group, like a shell.
    assert_eq!(
        commands::split("nginx -t -c '/a b/nginx.conf'").unwrap(),
        argv(&["nginx", "-t", "-c", "/a b/nginx.conf"])
    );
    assert!(commands::split("  ").is_err());
    assert!(commands::split("echo 'unterminated").is_err());
    assert!(commands::substitute(&argv(&["x", "{domain}"]), Some("a"), None).is_err());
}

#[test]
fn rewrite_command_in_a_repair_runs_without_a_shell() {
    let t0 = Tree::new("");
    let pwned = t0.dir.path().join("pwned");
    let cfg = format!(
        "[commands]\nrewrite = \"echo {{user}}; touch {}\"\n",
        pwned.display()
    );
    std::fs::write(t0.dir.path().join("fpm-doctor.toml"), cfg).unwrap();
    let t = Tree {
        cfg: fpm_doctor::config::Config::load(
            Some(&t0.dir.path().join("fpm-doctor.toml")),
            Some(t0.dir.path()),
        )
        .unwrap(),
        dir: t0.dir,
    };
    t.write(CUST, CUST_TEXT);
    let rep = apply::apply(
        &t.cfg,
        &[t.plan(CUST, OLD_SOCK, NEW_SOCK)],
        &ApplyOptions::default(),
    );
    assert_eq!(rep.outcome, Outcome::Ok, "{rep:#?}");
    let s: &StepReport = rep.steps.iter().find(|s| s.step == "rewrite").unwrap();
    assert_eq!(s.command[0], "echo");
    assert_eq!(s.stdout_tail, format!("alice; touch {}\n", pwned.display()));
    assert!(!pwned.exists());
    assert!(t.queue_lines().is_empty(), "a rewrite command replaces the queue");
}

#[test]
fn environment_is_allow_listed() {
    let s = commands::run("env", &argv(&["/usr/bin/env"]), Duration::from_secs(5));
    assert!(s.ok);
    let mut lines: Vec<&str> = s.stdout_tail.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    // stdin is /dev/null: `cat` ends at once.
    let s = commands::run("cat", &argv(&["cat"]), Duration::from_secs(5));
    assert!(s.ok && s.stdout_tail.is_empty());
    // A PATH lookup uses the allow-listed PATH; a missing program is reported.
    let s = commands::run("x", &argv(&["no-such-program-fpmd"]), Duration::from_secs(5));
    assert!(!s.ok && s.note.contains("cannot run"), "{s:?}");
}

#[test]
fn timeouts_kill_the_command_and_its_children() {
    let t = Instant::now();
    let s = commands::run(
        "slow",
        &argv(&["/bin/sh", "-c", "sleep 30 & sleep 30; echo never"]),
        Duration::from_secs(1),
    );
    assert!(!s.ok && s.timed_out, "{s:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(s.summary().contains("timed out"));
    // Exit status and stderr tail are reported.
    let s = commands::run(
        "f",
        &argv(&["/bin/sh", "-c", "echo oops >&2; exit 4"]),
        Duration::from_secs(5),
    );
    assert_eq!((s.ok, s.status), (false, Some(4)));
    assert!(s.summary().contains("exit 4") && s.summary().contains("oops"));
}

#[test]
fn task_queue_lines_are_validated_coalesced_and_form_encoded() {
    let t = Tree::standard("");
    for bad in ["a\nb", "a&user=root", "a=b", "", "-rf", "Alice", "a b", "a/b"] {
        assert!(!da::valid_user(bad), "{bad:?}");
        let mut steps = Vec::new();
        assert!(da::trigger_rewrite(&t.cfg, &[bad.to_string()], &mut steps).is_err());
    }
    assert!(t.queue_lines().is_empty());
    assert!(da::valid_user("alice_2.x-y"));
    let mut steps = Vec::new();
    da::trigger_rewrite(&t.cfg, &argv(&["bob", "alice", "bob"]), &mut steps).unwrap();
    assert_eq!(
        t.queue_lines(),
        vec![
            "action=rewrite&value=httpd&user=alice",
            "action=rewrite&value=httpd&user=bob"
        ]
    );
    assert_eq!(da::form_encode("a b&c=d\n%+é"), "a%20b%26c%3Dd%0A%25%2B%C3%A9");
    // Appends, never truncates DA's own pending tasks.
    std::fs::write(t.host(QUEUE), "action=rewrite&value=nginx\n").unwrap();
    da::trigger_rewrite(&t.cfg, &argv(&["alice"]), &mut steps).unwrap();
    assert_eq!(t.queue_lines()[0], "action=rewrite&value=nginx");
    assert_eq!(t.queue_lines().len(), 2);
}

#[test]
fn notify_admin_appends_exactly_one_capped_line() {
    let t = Tree::standard("");
    let long = "x&y=z\n".repeat(2000);
    da::notify_admin(
        &t.cfg,
        "FPM Doctor: a&b=c\nd",
        &format!("line1\nline2 & a=b\n{long}"),
    )
    .unwrap();
    let text = std::fs::read_to_string(t.host(QUEUE)).unwrap();
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    assert!(text.ends_with('\n') && text.len() <= da::NOTIFY_MAX);
    assert!(text.starts_with(
        "action=notify&value=admin&subject=FPM%20Doctor%3A%20a%26b%3Dc%0Ad&message=line1%0Aline2%20%26%20a%3Db%0A"
    ));
    assert_eq!(text.matches('&').count(), 3);
    assert_eq!(text.matches('=').count(), 4);
    // A second notification is a second line (appended).
    apply::notify_admin(&t.cfg, "s", "m").unwrap();
    assert_eq!(t.queue_lines().len(), 2);
}

#[test]
fn dataskq_is_run_and_the_queue_drain_is_awaited() {
    let t = Tree::standard("[commands]\nrun_dataskq = true\nrewrite_wait_secs = 1\n");
    let script = format!("#!/bin/sh\nrm -f {}\n", t.host(QUEUE).display());
    t.write("/usr/local/directadmin/dataskq", script.as_bytes());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.host("/usr/local/directadmin/dataskq"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let rep = apply::apply(&t.cfg, &two_file_plans(&t), &ApplyOptions::default());
    assert_eq!(rep.outcome, Outcome::Ok);
    let w = rep.steps.iter().find(|s| s.step == "rewrite_wait").unwrap();
    assert!(w.note.contains("consumed"), "{w:?}");

    // A dataskq that leaves our lines: the wait times out, recorded, not fatal.
    t.write("/usr/local/directadmin/dataskq", b"#!/bin/sh\nexit 0\n");
    let rep = apply::apply(
        &t.cfg,
        &[t.plan(CUST, NEW_SOCK, OLD_SOCK)],
        &ApplyOptions::default(),
    );
    assert_eq!(rep.outcome, Outcome::Ok);
    let w = rep.steps.iter().find(|s| s.step == "rewrite_wait").unwrap();
    assert!(w.note.contains("timed out"), "{w:?}");

    // A failing dataskq fails the repair: rolled back.
    t.write(
        "/usr/local/directadmin/dataskq",
        b"#!/bin/sh\necho broken >&2\nexit 1\n",
    );
    let rep = apply::apply(
        &t.cfg,
        &[t.plan(CUST, OLD_SOCK, NEW_SOCK)],
        &ApplyOptions::default(),
    );
    assert_eq!(rep.outcome, Outcome::RolledBack);
    assert!(rep.error.unwrap().contains("broken"));
    assert_eq!(t.read(CUST), CUST_TEXT);
}

fn restart_plan(version: &str) -> apply::Plan {
    apply::Plan {
        finding: "fpm-down PHP 8.3".into(),
        safety: apply::Safety::Confirm,
        edits: vec![],
        rewrite_users: vec![],
        target: apply::Target::Nginx,
        advice: None,
        actions: vec![apply::Action::FpmRestart {
            version: version.into(),
        }],
    }
}

#[test]
fn fpm_restart_runs_detached_and_cannot_be_undone() {
    let t = Tree::new("");
    let out = t.dir.path().join("restarted");
    let script = t.dir.path().join("restart.sh");
    // Records its version argument and its session id (≠ ours: setsid).
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $(cut -d' ' -f6 /proc/self/stat)\" > {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg_file = t.dir.path().join("c.toml");
    std::fs::write(
        &cfg_file,
        format!("[commands]\nfpm_restart = \"{} {{version}}\"\n", script.display()),
    )
    .unwrap();
    let cfg = fpm_doctor::config::Config::load(Some(&cfg_file), Some(t.dir.path())).unwrap();
    let r = apply::apply(&cfg, &[restart_plan("83")], &ApplyOptions::default());
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    let step = r
        .steps
        .iter()
        .find(|s| s.step == "fpm_restart")
        .expect("step reported");
    assert!(step.ok, "{step:?}");
    assert_eq!(step.command.last().map(String::as_str), Some("83"));
    let got = std::fs::read_to_string(&out).unwrap();
    let (ver, sid) = got.trim().split_once(' ').unwrap();
    assert_eq!(ver, "83");
    let our_sid = unsafe { libc::getsid(0) };
    assert_ne!(
        sid.parse::<i32>().unwrap(),
        our_sid,
        "must run in its own session"
    );
    let h = apply::history(&cfg);
    let e = h.iter().find(|e| e.id == r.repair_id).unwrap();
    assert!(!e.undoable, "journalled as not undoable");
    assert_eq!(e.state, apply::JState::Applied);
    let u = apply::undo(&cfg, &r.repair_id, &ApplyOptions::default());
    assert_eq!(u.outcome, Outcome::Refused);
    assert!(u.error.unwrap().contains("cannot be undone"));
}

#[test]
fn fpm_restart_is_off_under_root_unless_configured_and_failures_are_reported() {
    let t = Tree::new("");
    let r = apply::apply(&t.cfg, &[restart_plan("83")], &ApplyOptions::default());
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert!(r.steps.iter().any(|s| s.step == "fpm_restart" && s.skipped));
    let t = Tree::new("[commands]\nfpm_restart = \"/bin/false {version}\"\n");
    let r = apply::apply(&t.cfg, &[restart_plan("83")], &ApplyOptions::default());
    assert_eq!(r.outcome, Outcome::Failed, "{r:?}");
    let r = apply::apply(&t.cfg, &[restart_plan("8;3")], &ApplyOptions::default());
    assert_eq!(r.outcome, Outcome::Failed, "invalid version refused: {r:?}");
}

#[test]
fn fpm_restart_defaults() {
    let live = fpm_doctor::config::Config::default();
    assert_eq!(
        commands::resolve_fpm_restart_with(&live, "83", true).as_deref(),
        Some("systemctl restart php-fpm83")
    );
    assert_eq!(
        commands::resolve_fpm_restart_with(&live, "83", false).as_deref(),
        Some("/usr/local/php83/sbin/php-fpm83 --fpm-config /usr/local/php83/etc/php-fpm.conf")
    );
}
