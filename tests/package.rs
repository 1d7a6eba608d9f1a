//! The plugin tarball `./build.sh` makes (`./build.sh test` builds it before
//! the suite): the layout DirectAdmin expects, a static binary under 8 MB,
//! and an install from the unpacked tarball into a DA-shaped temp tree.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tarball() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/fpm_doctor.tar.gz");
    assert!(
        p.exists(),
        "{} missing: run ./build.sh (./build.sh test builds it first)",
        p.display()
    );
    p
}

fn unpack() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(tarball())
        .arg("-C")
        .arg(t.path())
        .status()
        .unwrap();
    assert!(st.success());
    t
}

#[test]
fn tarball_has_the_layout_directadmin_expects() {
    let t = unpack();
    let r = t.path();
    let conf = std::fs::read_to_string(r.join("plugin.conf")).expect("plugin.conf at the archive root");
    let version = env!("CARGO_PKG_VERSION");
    for line in [
        "id=fpm_doctor",
        "active=yes",
        "installed=",
        &format!("version={version}"),
    ] {
        assert!(
            conf.lines().any(|l| l.starts_with(line)),
            "plugin.conf lacks {line}: {conf}"
        );
    }
    for level in ["admin", "reseller", "user"] {
        assert!(
            conf.contains(&format!("menu_{level}=")),
            "Evolution menu for {level}"
        );
        assert!(
            conf.contains(&format!("{level}_run_as=fpm_doctor")),
            "run_as for {level}"
        );
        for page in ["index.html", "status.raw"] {
            let p = r.join(level).join(page);
            let text = std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("{} missing", p.display()));
            assert!(text.starts_with("#!/bin/sh"), "{} is a sh wrapper", p.display());
            assert!(text.contains("exec "), "{} execs the binary", p.display());
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o755,
                "{}",
                p.display()
            );
        }
        for hook in ["txt", "img"] {
            assert!(
                r.join(format!("hooks/{level}_{hook}.html")).exists(),
                "classic skin link {level}_{hook}"
            );
        }
    }
    for m in ["menus/admin.json", "menus/reseller.json", "menus/user.json"] {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(r.join(m)).unwrap()).unwrap();
        assert!(v.is_array(), "{m}");
    }
    for f in [
        "scripts/install.sh",
        "scripts/uninstall.sh",
        "scripts/update.sh",
        "images/style.css",
        "bin/fpm-doctor",
    ] {
        assert!(r.join(f).exists(), "{f} missing");
    }
}

#[test]
fn the_binary_is_static_and_small() {
    let t = unpack();
    let bin = t.path().join("bin/fpm-doctor");
    let size = std::fs::metadata(&bin).unwrap().len();
    assert!(size < 8 << 20, "binary is {size} bytes, over 8 MB");
    let out = Command::new("file")
        .arg(&bin)
        .output()
        .expect("`file` (./build.sh installs it)");
    let what = String::from_utf8_lossy(&out.stdout);
    assert!(
        what.contains("statically linked") || what.contains("static-pie linked"),
        "{what}"
    );
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn install_from_the_tarball_into_a_da_tree() {
    let t = unpack();
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg(t.path().join("scripts/install.sh"))
        .env("INSTALL_ROOT", root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bin = root.path().join("usr/local/lib/fpm_doctor/bin/fpm-doctor");
    assert_eq!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o7777,
        0o4750,
        "setuid, plugin group only"
    );
    for c in ["php", "update_versions"] {
        assert!(root
            .path()
            .join(format!(
                "usr/local/directadmin/custombuild/custom/hooks/{c}/post/fpm_doctor.sh"
            ))
            .exists());
    }
}
