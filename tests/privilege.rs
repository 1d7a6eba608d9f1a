//! The setuid boundary, tested with a real setuid-root copy of the binary
//! and forged identities: a passwd naming `fpm_doctor` is bind-mounted over
//! /etc/passwd inside a private mount namespace (never the host's files),
//! and `setpriv` drops to that uid before exec.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PLUGIN_UID: u32 = 990;
const OTHER_UID: u32 = 1234;

struct Setup {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    passwd: PathBuf,
}

fn setup() -> Setup {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the privilege tests run as root (./build.sh test in CI)"
    );
    for tool in ["unshare", "setpriv", "mount"] {
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} missing: run ./build.sh test"
        );
    }
    // A directory on / (not a tmpfs that may be nosuid), readable by others.
    let tmp = tempfile::Builder::new()
        .prefix("fpm-doctor-suid.")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = tmp.path().join("fpm-doctor");
    std::fs::copy(env!("CARGO_BIN_EXE_fpm-doctor"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let passwd = tmp.path().join("passwd");
    std::fs::write(
        &passwd,
        format!(
            "root:x:0:0:root:/root:/bin/sh\nfpm_doctor:x:{PLUGIN_UID}:{PLUGIN_UID}::/nonexistent:/usr/sbin/nologin\n\
other:x:{OTHER_UID}:{OTHER_UID}::/nonexistent:/bin/sh\n"
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        bin,
        passwd,
    }
}

/// Runs the setuid copy as `uid` in a namespace where our passwd is /etc/passwd.
fn run_as(s: &Setup, uid: u32, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut script = format!(
        "mount --bind {} /etc/passwd && exec setpriv --reuid {uid} --regid {uid} --clear-groups env",
        s.passwd.display()
    );
    for (k, v) in env {
        script.push_str(&format!(" {k}={v}"));
    }
    script.push_str(&format!(" {}", s.bin.display()));
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_binary_really_runs_setuid_root_for_the_plugin_user() {
    let s = setup();
    let o = run_as(
        &s,
        PLUGIN_UID,
        &["whoami"],
        &[
            ("USERNAME", "admin"),
            ("FPM_DOCTOR_FAULT", "after_backup"),
            ("LD_PRELOAD", "/x.so"),
        ],
    );
    let t = text(&o);
    // Without this, every refusal below could pass vacuously (a nosuid mount).
    // Classified as the plugin user (real uid 990 at exec), then fully root
    // so that user can no longer signal it in the middle of a repair.
    assert!(t.contains("ruid=0 euid=0 caller=PluginUser"), "{t}");
    assert!(t.contains("USERNAME"), "{t}");
    assert!(
        !t.contains("FPM_DOCTOR_FAULT") && !t.contains("LD_PRELOAD"),
        "environment cleared to an allow-list: {t}"
    );
}

#[test]
fn the_plugin_user_may_not_steer_the_binary() {
    let s = setup();
    for args in [
        vec!["scan", "--json"],
        vec!["repair", "--all", "--yes"],
        vec!["undo", "x"],
        vec!["cgi", "--config", "/tmp/evil.toml"],
        vec!["cgi", "--root=/tmp"],
    ] {
        let o = run_as(&s, PLUGIN_UID, &args, &[]);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("refused") || text(&o).contains("may only run the cgi face"),
            "{args:?}: {}",
            text(&o)
        );
    }
}

#[test]
fn any_other_uid_is_refused_outright() {
    let s = setup();
    let o = run_as(&s, OTHER_UID, &["whoami"], &[("USERNAME", "admin")]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("may not run this setuid program"),
        "{}",
        text(&o)
    );
    assert!(!Path::new("/etc/fpm_doctor/forged").exists());
}
