//! Two ready-made [`Source`]s: an in-memory map (tests, simulations) and a
//! directory that stands for `/` (`--root`).

use super::loader::Source;
use glob::{MatchOptions, Pattern};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// glob(3) defaults as nginx calls it: `*` stays within one path component
/// and does not match a leading dot.
const GLOB_OPTS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// Files held in memory, keyed by server path. Counts reads per path.
#[derive(Debug, Default)]
pub struct MemSource {
    pub files: BTreeMap<String, Vec<u8>>,
    reads: Mutex<HashMap<String, usize>>,
}

impl MemSource {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, path: &str, content: impl AsRef<[u8]>) -> Self {
        self.insert(path, content);
        self
    }

    pub fn insert(&mut self, path: &str, content: impl AsRef<[u8]>) {
        self.files.insert(path.to_string(), content.as_ref().to_vec());
    }

    /// How often `read` was called for `path` (found or not).
    pub fn reads_of(&self, path: &str) -> usize {
        self.reads
            .lock()
            .map(|m| m.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Total `read` calls.
    pub fn reads(&self) -> usize {
        self.reads.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

impl Source for MemSource {
    fn read(&self, server_path: &str) -> io::Result<Vec<u8>> {
        if let Ok(mut m) = self.reads.lock() {
            *m.entry(server_path.to_string()).or_default() += 1;
        }
        self.files
            .get(server_path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn glob(&self, server_pattern: &str) -> io::Result<Vec<String>> {
        let pat = Pattern::new(server_pattern).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // BTreeMap order is byte order, which is what nginx's glob gives in the C locale.
        Ok(self
            .files
            .keys()
            .filter(|k| pat.matches_with(k, GLOB_OPTS))
            .cloned()
            .collect())
    }
}

/// A directory standing for the server's `/`.
#[derive(Debug, Clone)]
pub struct RootSource {
    pub root: PathBuf,
}

impl RootSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RootSource { root: root.into() }
    }

    /// The path this process opens for a server path.
    pub fn host(&self, server_path: &str) -> PathBuf {
        self.root.join(server_path.trim_start_matches('/'))
    }
}

impl Source for RootSource {
    fn read(&self, server_path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.host(server_path))
    }

    fn glob(&self, server_pattern: &str) -> io::Result<Vec<String>> {
        let root = self.root.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "root directory is not valid UTF-8")
        })?;
        // The root itself may contain glob characters; only the server part is a pattern.
        let root = root.trim_end_matches('/');
        let pattern = format!(
            "{}/{}",
            Pattern::escape(root),
            server_pattern.trim_start_matches('/')
        );
        let paths = glob::glob_with(&pattern, GLOB_OPTS)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Unreadable directories are skipped, as glob(3) does without GLOB_ERR.
        let mut out: Vec<String> = paths
            .filter_map(Result::ok)
            .filter_map(|p| {
                let rel = p
                    .strip_prefix(Path::new(if root.is_empty() { "/" } else { root }))
                    .ok()?;
                Some(format!("/{}", rel.to_str()?))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
