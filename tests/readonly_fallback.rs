//! Where `*_run_as` does not take effect, DirectAdmin runs a page as the
//! logged-in account, which may not execute the setuid binary. The wrapper
//! then shows the read-only view root published for that account, and an
//! account can read its own view only. Run for real: the wrapper as alice's
//! uid (setpriv) in a namespace whose /etc/passwd is the demo tree's.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

#[test]
fn each_account_sees_its_own_read_only_view_and_no_other() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (./build.sh test)");
    let t = tempfile::Builder::new()
        .prefix("fpm-doctor-ro.")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    fpm_doctor::demo::build(&root).unwrap();
    let cfg = fpm_doctor::config::Config::load(None, Some(&root)).unwrap();
    fpm_doctor::web::snapshot::run(&cfg).unwrap();

    let public = root.join("var/cache/fpm_doctor");
    let alice = public.join("user/alice.html");
    let m = std::fs::metadata(&alice).expect("alice's view published");
    assert_eq!(m.mode() & 0o777, 0o640);
    assert_eq!((m.uid(), m.gid()), (0, 1002), "root:alice's group");
    assert_eq!(
        std::fs::metadata(public.join("user")).unwrap().mode() & 0o777,
        0o711,
        "not listable"
    );
    let a = std::fs::read_to_string(&alice).unwrap();
    assert!(
        a.contains("alice-shop.test") && !a.contains("bob-news.test"),
        "{a}"
    );
    assert!(a.contains("Read-only view"));
    let r = std::fs::read_to_string(public.join("reseller/resel.html")).unwrap();
    assert!(
        r.contains("alice-shop.test") && r.contains("bob-news.test"),
        "the reseller's users"
    );
    assert!(!r.contains("carol"), "another reseller's (the admin's) user");
    let adm = std::fs::read_to_string(public.join("admin/admin.html")).unwrap();
    assert!(adm.contains("carol-legacy.test"), "the admin sees everything");

    // The real wrapper, as alice, with no executable binary.
    let wrapper = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("user/index.html");
    let script = format!(
        "mount --bind {}/etc/passwd /etc/passwd && mount --bind {}/etc/group /etc/group && \
exec setpriv --reuid 1002 --regid 1002 --clear-groups env FPM_DOCTOR_BIN=/nonexistent FPM_DOCTOR_PUBLIC={} \
sh -c 'sh {}; echo ---; cat {}/user/bob.html'",
        root.display(),
        root.display(),
        public.display(),
        wrapper.display(),
        public.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let (page, other) = text.split_once("---").unwrap_or((&text, ""));
    assert!(
        page.contains("alice-shop.test") && page.contains("Read-only view"),
        "{text}{err}"
    );
    assert!(
        !other.contains("bob-news.test"),
        "alice must not read bob's view: {other}"
    );
    assert!(err.contains("Permission denied"), "{err}");
}
