//! `disk-full`: the filesystems PHP and nginx write to are (nearly) out of
//! space or inodes.

use super::{CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::disk::{Disks, FsUsage};
use crate::model::Server;

pub const ID: &str = "disk-full";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "Filesystems of sockets, logs, /tmp or DirectAdmin data nearly full",
    what: "Measures (`statvfs`) space and inodes of the filesystems holding the PHP socket dirs, nginx's logs, \
`/tmp`, DirectAdmin's data dir and FPM Doctor's state dir, once per filesystem. Usage at or above the warning \
(default 90 %) or critical (97 %) threshold, or less free space than the minimum (100 MB), is reported. Measured \
only on the live server (`--root /`).",
    why: "PHP-FPM cannot create its socket, write sessions or uploads to /tmp, nor nginx buffer a large response \
to its temp dir: requests fail with 502/500 and the logs that would explain it stop being written.",
    example: "`/ (holding /tmp, /var/log/nginx, /usr/local/php83/sockets) is 98.4 % full: 310 MB free of 20 GB`.",
    fix: "Free space: rotate or delete old logs (`/var/log/nginx/domains/*.log`), clear `/tmp`, old backups; find \
large directories with `du -xh / | sort -h | tail`. Out of inodes: remove the many small files (sessions, cache).",
    fix_safety: "No automatic fix: deleting files needs a person.",
};

fn human(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn judge(fs: &FsUsage, d: &Disks) -> Option<(Severity, String)> {
    let names = fs.paths.join(", ");
    let sp = fs.space_pct();
    let ip = fs.inode_pct();
    let mut sev = None;
    let mut why = Vec::new();
    if sp >= d.crit_pct || (fs.bytes_total > 0 && fs.bytes_avail < d.min_free_bytes) {
        sev = Some(Severity::Critical);
    } else if sp >= d.warn_pct {
        sev = Some(Severity::Warning);
    }
    if sev.is_some() {
        why.push(format!(
            "space {sp:.1} % used, {} free of {}",
            human(fs.bytes_avail),
            human(fs.bytes_total)
        ));
    }
    // Filesystems without inode accounting (btrfs, some tmpfs) report 0.
    if fs.inodes_total > 0 {
        let isev = if ip >= d.crit_pct {
            Some(Severity::Critical)
        } else if ip >= d.warn_pct {
            Some(Severity::Warning)
        } else {
            None
        };
        if let Some(s) = isev {
            why.push(format!("inodes {ip:.1} % used, {} free", fs.inodes_avail));
            sev = sev.max(Some(s));
        }
    }
    sev.map(|s| (s, format!("the filesystem holding {names}: {}", why.join("; "))))
}

pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    let Some(d) = &server.evidence.disks else {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    };
    let mut findings = Vec::new();
    for e in &d.errors {
        let mut f = Finding::new(
            ID,
            Severity::Unknown,
            format!("cannot measure {}: {}", e.path, e.reason),
        );
        f.file = Some(e.path.clone());
        f.secondary = true;
        findings.push(f);
    }
    for fs in &d.filesystems {
        if let Some((sev, msg)) = judge(fs, d) {
            let mut f = Finding::new(ID, sev, msg);
            f.file = fs.paths.first().cloned();
            f.secondary = true;
            findings.push(f);
        }
    }
    let state = super::state_from(&findings);
    CheckOutput { findings, state }
}

/// One filesystem with these statvfs numbers (fixture builder).
pub fn fixture(total_gb: u64, avail_gb_tenths: u64, inodes_total: u64, inodes_avail: u64) -> Server {
    let mut s = Server::default();
    s.evidence.disks = Some(Disks {
        filesystems: vec![FsUsage {
            paths: vec!["/tmp".into(), "/var/log/nginx".into()],
            dev: 2049,
            bytes_total: total_gb << 30,
            bytes_avail: (avail_gb_tenths << 30) / 10,
            inodes_total,
            inodes_avail,
        }],
        errors: vec![],
        warn_pct: 90.0,
        crit_pct: 97.0,
        min_free_bytes: 100 << 20,
    });
    s
}

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "98 % full",
            server: fixture(20, 4, 1_000_000, 900_000),
            triggers: true,
        },
        super::Fixture {
            name: "space fine, inodes 99 % used",
            server: fixture(20, 100, 1_000_000, 10_000),
            triggers: true,
        },
        super::Fixture {
            name: "50 % used",
            server: fixture(20, 100, 1_000_000, 500_000),
            triggers: false,
        },
        super::Fixture {
            name: "no inode accounting (btrfs reports 0)",
            server: fixture(20, 100, 0, 0),
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &Server) -> CheckOutput {
        let drift = super::super::socket_drift::run(s);
        check(s, &super::super::Context { drift: &drift })
    }

    #[test]
    fn thresholds_and_min_free() {
        let f = &run(&fixture(20, 4, 1_000_000, 900_000)).findings[0];
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.message.contains("/tmp, /var/log/nginx"), "{}", f.message);
        // 92 % used: warning.
        let f = &run(&fixture(100, 80, 1, 1)).findings[0];
        assert_eq!(f.severity, Severity::Warning);
        // A tiny filesystem with 50 MB free is critical whatever the percentage.
        let mut s = fixture(1, 0, 0, 0);
        s.evidence.disks.as_mut().unwrap().filesystems[0].bytes_avail = 50 << 20;
        s.evidence.disks.as_mut().unwrap().filesystems[0].bytes_total = 100 << 20;
        assert_eq!(run(&s).findings[0].severity, Severity::Critical);
    }

    #[test]
    fn unmeasurable_is_secondary_unknown() {
        let mut s = fixture(20, 100, 0, 0);
        s.evidence
            .disks
            .as_mut()
            .unwrap()
            .errors
            .push(crate::evidence::disk::FsError {
                path: "/usr/local/php83/sockets".into(),
                reason: "statvfs: Permission denied".into(),
            });
        let out = run(&s);
        assert_eq!(out.state, CheckState::Unknown);
        assert!(out.findings[0].secondary);
        assert_eq!(super::super::verdict(&out.findings), "ok");
    }

    #[test]
    fn measures_a_real_tmpfs_or_temp_dir() {
        // The collector on this machine's temp dir: numbers are sane and the
        // check's verdict follows them.
        let t = tempfile::tempdir().unwrap();
        let d = crate::evidence::disk::collect(&[("/tmp".into(), t.path().to_path_buf())]);
        let fs = &d.filesystems[0];
        assert!(fs.bytes_total >= fs.bytes_avail && fs.bytes_total > 0);
        let mut s = Server::default();
        s.evidence.disks = Some(Disks {
            warn_pct: 101.0,
            crit_pct: 101.0,
            min_free_bytes: 0,
            ..d.clone()
        });
        assert_eq!(run(&s).state, CheckState::Ok);
        s.evidence.disks = Some(Disks {
            warn_pct: 0.0,
            crit_pct: 101.0,
            min_free_bytes: 0,
            ..d
        });
        assert_eq!(run(&s).state, CheckState::Finding);
    }
}
