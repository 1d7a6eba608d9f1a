//! Space and inodes (`statvfs`) of the filesystems PHP and nginx write to:
//! socket dirs, logs, `/tmp`, DirectAdmin's data, our state dir. One entry
//! per filesystem (`st_dev`), listing every path that lives on it.

use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One filesystem's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsUsage {
    /// Server paths that live on it (as configured, before walking up).
    pub paths: Vec<String>,
    pub dev: u64,
    pub bytes_total: u64,
    /// Free for unprivileged users (what PHP, running as the user, gets).
    pub bytes_avail: u64,
    pub inodes_total: u64,
    pub inodes_avail: u64,
}

impl FsUsage {
    /// Percent used, as `df` computes it (used / (used + available)).
    pub fn pct(total: u64, free_all: u64, avail: u64) -> f64 {
        let used = total.saturating_sub(free_all);
        let denom = used + avail;
        if denom == 0 {
            0.0
        } else {
            used as f64 * 100.0 / denom as f64
        }
    }
    pub fn space_pct(&self) -> f64 {
        Self::pct(self.bytes_total, self.bytes_avail, self.bytes_avail)
    }
    pub fn inode_pct(&self) -> f64 {
        Self::pct(self.inodes_total, self.inodes_avail, self.inodes_avail)
    }
}

/// A path whose filesystem could not be measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsError {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Disks {
    pub filesystems: Vec<FsUsage>,
    pub errors: Vec<FsError>,
    /// The configured thresholds, carried so the check stays pure.
    pub warn_pct: f64,
    pub crit_pct: f64,
    pub min_free_bytes: u64,
}

/// The nearest existing ancestor (a state dir not created yet lives on its
/// parent's filesystem).
fn existing(host: &Path) -> Option<&Path> {
    host.ancestors().find(|p| p.symlink_metadata().is_ok())
}

/// Measures the filesystems of `paths` (server path, host path).
pub fn collect(paths: &[(String, std::path::PathBuf)]) -> Disks {
    let mut out = Disks::default();
    for (server, host) in paths {
        let Some(p) = existing(host) else {
            out.errors.push(FsError {
                path: server.clone(),
                reason: "no part of the path exists".into(),
            });
            continue;
        };
        let dev = match std::fs::metadata(p) {
            Ok(m) => m.dev(),
            Err(e) => {
                out.errors.push(FsError {
                    path: server.clone(),
                    reason: format!("stat {}: {e}", p.display()),
                });
                continue;
            }
        };
        if let Some(fs) = out.filesystems.iter_mut().find(|f| f.dev == dev) {
            fs.paths.push(server.clone());
            continue;
        }
        match nix::sys::statvfs::statvfs(p) {
            Ok(v) => {
                let frag = v.fragment_size().max(1);
                out.filesystems.push(FsUsage {
                    paths: vec![server.clone()],
                    dev,
                    bytes_total: v.blocks() * frag,
                    bytes_avail: v.blocks_available() * frag,
                    inodes_total: v.files(),
                    inodes_avail: v.files_available(),
                });
            }
            Err(e) => out.errors.push(FsError {
                path: server.clone(),
                reason: format!("statvfs {}: {e}", p.display()),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupes_by_device_and_walks_up_to_an_existing_dir() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let d = collect(&[
            ("/a".into(), t.path().join("a")),
            ("/not/yet".into(), t.path().join("not/yet")),
        ]);
        assert!(d.errors.is_empty(), "{d:?}");
        assert_eq!(d.filesystems.len(), 1, "one filesystem: {d:?}");
        assert_eq!(d.filesystems[0].paths, vec!["/a", "/not/yet"]);
        assert!(d.filesystems[0].bytes_total > 0);
    }

    #[test]
    fn percent_like_df() {
        assert_eq!(FsUsage::pct(100, 50, 50), 50.0);
        assert_eq!(FsUsage::pct(0, 0, 0), 0.0);
        // Reserved blocks: 100 total, 10 free, 5 available to users.
        assert!((FsUsage::pct(100, 10, 5) - 94.736).abs() < 0.01);
    }
}
