//! Reader fixtures: DA account files with CRLF, non-UTF-8 bytes, empty and
//! huge files, unreadable files. Readers never panic and never turn an
//! unreadable file into an absence.

use fpm_doctor::config::Config;
use fpm_doctor::readers::{da, Fs};
use std::path::Path;

fn write(root: &Path, path: &str, content: &[u8]) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const U: &str = "/usr/local/directadmin/data/users";

#[test]
fn crlf_and_non_utf8_account_files() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(
        r,
        &format!("{U}/alice/user.conf"),
        b"creator=resel\r\nusertype=user\r\n",
    );
    write(
        r,
        &format!("{U}/alice/domains.list"),
        b"a.test\r\n\xff\xfe.test\r\n\r\n",
    );
    write(
        r,
        &format!("{U}/alice/domains/a.test.conf"),
        b"domain=a.test\r\nphp1_select=2\r\nnginx=1\r\n",
    );
    write(
        r,
        &format!("{U}/alice/domains/a.test.subdomains"),
        b"shop\r\n../evil\r\n",
    );
    write(
        r,
        &format!("{U}/alice/domains/a.test.pointers"),
        b"b.test=type=alias\r\n",
    );
    let cfg = Config::load(None, Some(r)).unwrap();
    let fs = Fs::new(&cfg);
    let mut unknowns = vec![];
    let u = da::read_user(&fs, "alice", None, &mut unknowns);
    assert_eq!(u.creator.as_deref(), Some("resel"));
    assert_eq!(
        u.domains.len(),
        1,
        "the non-UTF-8 name is refused, not used as a path"
    );
    let d = &u.domains[0];
    assert_eq!(d.php_select.as_ref().map(|(n, _)| *n), Some(2));
    assert!(d.nginx_only);
    assert_eq!(
        d.subdomains,
        vec!["shop"],
        "path tricks in subdomains are dropped"
    );
    assert_eq!(d.aliases, vec!["b.test"]);
    assert!(unknowns.iter().any(|u| u.reason.contains("invalid domain name")));
}

#[test]
fn empty_and_missing_files_are_reported() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, &format!("{U}/bob/user.conf"), b"");
    let cfg = Config::load(None, Some(r)).unwrap();
    let fs = Fs::new(&cfg);
    let mut unknowns = vec![];
    let u = da::read_user(&fs, "bob", None, &mut unknowns);
    assert!(u.domains.is_empty());
    assert!(unknowns
        .iter()
        .any(|u| u.file.ends_with("domains.list") && u.reason.contains("missing")));
    write(r, &format!("{U}/bob/domains.list"), b"b.test\n");
    let mut unknowns = vec![];
    let u = da::read_user(&fs, "bob", None, &mut unknowns);
    assert_eq!(u.domains.len(), 1);
    assert!(
        unknowns.iter().any(|u| u.file.ends_with("b.test.conf")),
        "{unknowns:?}"
    );
}

#[test]
fn huge_domains_list() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, &format!("{U}/big/user.conf"), b"usertype=user\n");
    let mut list = String::new();
    for i in 0..20_000 {
        list.push_str(&format!("d{i}.test\n"));
    }
    write(r, &format!("{U}/big/domains.list"), list.as_bytes());
    let cfg = Config::load(None, Some(r)).unwrap();
    let fs = Fs::new(&cfg);
    let mut unknowns = vec![];
    let u = da::read_user(&fs, "big", Some("d19999.test"), &mut unknowns);
    assert_eq!(u.domains.len(), 1, "a domain scope reads one domain's files");
}

#[test]
fn unreadable_file_is_unknown_not_absent() {
    // Root reads everything, so make the "file" a directory: read() fails with EISDIR.
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, &format!("{U}/carol/user.conf"), b"usertype=user\n");
    std::fs::create_dir_all(r.join(format!("{U}/carol/domains.list").trim_start_matches('/'))).unwrap();
    let cfg = Config::load(None, Some(r)).unwrap();
    let fs = Fs::new(&cfg);
    let mut unknowns = vec![];
    let _ = da::read_user(&fs, "carol", None, &mut unknowns);
    assert!(
        unknowns
            .iter()
            .any(|u| u.file.ends_with("domains.list") && u.reason.contains("cannot read")),
        "{unknowns:?}"
    );
}

#[test]
fn scoped_user_must_exist_and_be_a_plain_name() {
    let t = tempfile::tempdir().unwrap();
    let cfg = Config::load(None, Some(t.path())).unwrap();
    let fs = Fs::new(&cfg);
    assert!(da::list_users(&fs, Some("../../etc")).is_err());
    assert!(da::list_users(&fs, Some("nobody")).is_err());
}

#[test]
fn symlinks_in_a_root_copy_resolve_inside_it() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "/etc/secret", b"inside-the-copy\n");
    std::fs::create_dir_all(r.join("usr/local/directadmin/data/users/eve")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/secret",
        r.join("usr/local/directadmin/data/users/eve/nginx.conf"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../etc/hostname",
        r.join("usr/local/directadmin/data/users/eve/up"),
    )
    .unwrap();
    let cfg = Config::load(None, Some(r)).unwrap();
    let fs = Fs::new(&cfg);
    let got = fs.read(&format!("{U}/eve/nginx.conf")).unwrap().unwrap();
    assert_eq!(got, b"inside-the-copy\n", "an absolute link is re-rooted");
    // `..` cannot climb out of the root: /etc/hostname of the copy does not exist.
    assert_eq!(fs.read(&format!("{U}/eve/up")).unwrap(), None);
}
