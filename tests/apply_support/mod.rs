//! Shared helpers of the apply tests: a server tree in a temp dir.
#![allow(dead_code)]

use fpm_doctor::apply::{Edit, Plan, Safety, Target};
use fpm_doctor::config::Config;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub struct Tree {
    pub dir: tempfile::TempDir,
    pub cfg: Config,
}

pub const CUST: &str = "/usr/local/directadmin/data/users/alice/domains/a.test.cust_nginx";
pub const TPL: &str = "/usr/local/directadmin/data/templates/custom/nginx_php.conf";
pub const QUEUE: &str = "/usr/local/directadmin/data/task.queue";

pub const CUST_TEXT: &[u8] =
    b"# custom\r\nlocation ~ \\.php$ {\r\n\tfastcgi_pass unix:/usr/local/php82/sockets/alice.sock;\r\n}\r\n";
pub const TPL_TEXT: &[u8] =
    b"|*if HAVE_PHP1_FPM=\"1\"|\n\tfastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\n|*endif|\n\xff\xfe\n";

impl Tree {
    /// A tree with `config` (TOML) loaded from a file inside it.
    pub fn new(config: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let cfile = dir.path().join("fpm-doctor.toml");
        std::fs::write(&cfile, config).unwrap();
        let cfg = Config::load(Some(&cfile), Some(dir.path())).unwrap();
        Tree { dir, cfg }
    }

    /// The standard two-file tree (a .cust_nginx and a custom template).
    pub fn standard(config: &str) -> Tree {
        let t = Tree::new(config);
        t.write(CUST, CUST_TEXT);
        t.write(TPL, TPL_TEXT);
        std::fs::create_dir_all(t.host("/usr/local/directadmin/data")).unwrap();
        t
    }

    pub fn host(&self, p: &str) -> PathBuf {
        self.cfg.host(p)
    }

    pub fn root(&self) -> String {
        self.cfg.root.to_string_lossy().into_owned()
    }

    pub fn write(&self, p: &str, bytes: &[u8]) {
        let h = self.host(p);
        std::fs::create_dir_all(h.parent().unwrap()).unwrap();
        std::fs::write(h, bytes).unwrap();
    }

    pub fn read(&self, p: &str) -> Vec<u8> {
        std::fs::read(self.host(p)).unwrap()
    }

    pub fn meta(&self, p: &str) -> (u32, u32, u32) {
        let m = std::fs::symlink_metadata(self.host(p)).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    }

    /// Plan replacing the first `needle` in the file as it is now.
    pub fn plan(&self, file: &str, needle: &str, repl: &str) -> Plan {
        let cur = self.read(file);
        let start = find(&cur, needle.as_bytes()).expect("needle");
        plan_at(file, start, needle, repl)
    }

    pub fn queue_lines(&self) -> Vec<String> {
        match std::fs::read_to_string(self.host(QUEUE)) {
            Ok(s) => s.lines().map(String::from).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Temp files left beside the edited files.
    pub fn stray_temps(&self) -> Vec<String> {
        let mut v = Vec::new();
        for f in [CUST, TPL] {
            let d = self.host(f).parent().unwrap().to_path_buf();
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".tmp") {
                    v.push(n);
                }
            }
        }
        v
    }
}

pub fn plan_at(file: &str, start: usize, old: &str, new: &str) -> Plan {
    Plan {
        finding: format!("socket-drift {file}"),
        safety: Safety::Safe,
        edits: vec![Edit {
            file: file.into(),
            start,
            end: start + old.len(),
            old: old.as_bytes().to_vec(),
            new: new.as_bytes().to_vec(),
        }],
        rewrite_users: vec!["alice".into()],
        actions: vec![],
        target: Target::Nginx,
        advice: None,
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `a` with the first `old` replaced by `new`.
pub fn replaced(a: &[u8], old: &str, new: &str) -> Vec<u8> {
    let i = find(a, old.as_bytes()).unwrap();
    let mut v = a[..i].to_vec();
    v.extend_from_slice(new.as_bytes());
    v.extend_from_slice(&a[i + old.len()..]);
    v
}

pub const OLD_SOCK: &str = "php82/sockets/alice.sock";
pub const NEW_SOCK: &str = "php83/sockets/alice.sock";
pub const OLD_TPL: &str = "php82/sockets/|USER|";
pub const NEW_TPL: &str = "php83/sockets/|USER|";

/// The two-file repair of the standard tree.
pub fn two_file_plans(t: &Tree) -> Vec<Plan> {
    vec![t.plan(CUST, OLD_SOCK, NEW_SOCK), t.plan(TPL, OLD_TPL, NEW_TPL)]
}

pub fn new_cust() -> Vec<u8> {
    replaced(CUST_TEXT, OLD_SOCK, NEW_SOCK)
}

pub fn new_tpl() -> Vec<u8> {
    replaced(TPL_TEXT, OLD_TPL, NEW_TPL)
}
