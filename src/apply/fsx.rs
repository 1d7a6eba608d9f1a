//! File operations of the apply protocol: read and replace a config file
//! without ever following a symlink in its last component, keeping owner,
//! group and mode, and making every step durable (fsync file and folder).

use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Owner, group and permission bits of a file (what an atomic replace keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn errno_msg(what: &str, path: &Path) -> String {
    format!("{what} {}: {}", path.display(), std::io::Error::last_os_error())
}

fn cstr(bytes: &[u8], path: &Path) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| format!("{}: path contains a NUL byte", path.display()))
}

/// A file addressed as (open parent folder, name): every later operation
/// (open, temp file, rename, fsync) happens in that same folder even if the
/// folder's path is changed under us.
pub struct DirEntry {
    dir: OwnedFd,
    name: CString,
    pub host: PathBuf,
}

impl DirEntry {
    pub fn open(host: &Path) -> Result<DirEntry, String> {
        let name = host
            .file_name()
            .ok_or_else(|| format!("{}: not a file path", host.display()))?;
        let parent = match host.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let pc = cstr(parent.as_os_str().as_bytes(), parent)?;
        // SAFETY: plain open(2) of a NUL-terminated path.
        let fd = unsafe { libc::open(pc.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(errno_msg("open folder", parent));
        }
        Ok(DirEntry {
            // SAFETY: fd is a fresh descriptor we own.
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
            name: cstr(name.as_bytes(), host)?,
            host: host.to_path_buf(),
        })
    }

    /// Open the file itself for reading, refusing symlinks and anything but a
    /// regular file. O_NONBLOCK so a FIFO planted there cannot hang us.
    fn open_read(&self) -> Result<(File, Meta), String> {
        // SAFETY: openat(2) relative to our folder descriptor.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ELOOP) {
                return Err(format!("{}: is a symlink, refused", self.host.display()));
            }
            return Err(format!("open {}: {e}", self.host.display()));
        }
        // SAFETY: fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        let md = file
            .metadata()
            .map_err(|e| format!("stat {}: {e}", self.host.display()))?;
        if !md.file_type().is_file() {
            return Err(format!("{}: not a regular file, refused", self.host.display()));
        }
        use std::os::unix::fs::MetadataExt;
        Ok((
            file,
            Meta {
                uid: md.uid(),
                gid: md.gid(),
                mode: md.mode() & 0o7777,
            },
        ))
    }

    /// The file's bytes and metadata (regular files only, never via a symlink).
    pub fn read(&self) -> Result<(Vec<u8>, Meta), String> {
        let (mut f, meta) = self.open_read()?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| format!("read {}: {e}", self.host.display()))?;
        Ok((buf, meta))
    }

    /// Replace the file atomically: temp file in the same folder, write,
    /// fchown/fchmod to `meta`, fsync, rename over, fsync the folder. A
    /// symlink at the name is refused (rename would replace the link, but the
    /// admin meant the file it points to: better to say so).
    pub fn replace(&self, bytes: &[u8], meta: Meta) -> Result<(), String> {
        // Refuse what we would refuse to read.
        self.open_read()?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        // A dot name ending in `.tmp`: no `*.conf` include glob picks it up.
        let tmp_name = format!(
            ".{}{}{}-{}.tmp",
            String::from_utf8_lossy(self.name.as_bytes()),
            TMP_MARK,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = cstr(tmp_name.as_bytes(), &self.host)?;
        // SAFETY: openat(2) creating a new file relative to our folder.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(errno_msg("create temp file beside", &self.host));
        }
        // SAFETY: fresh descriptor we own.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let unlink_tmp = || {
            // SAFETY: unlinkat(2) of the temp name we created.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), tmp.as_ptr(), 0) };
        };
        let res = (|| {
            f.write_all(bytes)
                .map_err(|e| format!("write {}: {e}", self.host.display()))?;
            // chown first: chown clears setuid/setgid bits, chmod restores them.
            // SAFETY: fchown/fchmod on our own descriptor.
            if unsafe { libc::fchown(f.as_raw_fd(), meta.uid, meta.gid) } != 0 {
                return Err(errno_msg("fchown temp of", &self.host));
            }
            if unsafe { libc::fchmod(f.as_raw_fd(), meta.mode as libc::mode_t) } != 0 {
                return Err(errno_msg("fchmod temp of", &self.host));
            }
            f.sync_all()
                .map_err(|e| format!("fsync {}: {e}", self.host.display()))?;
            // SAFETY: renameat(2) within the same folder descriptor.
            let r = unsafe {
                libc::renameat(
                    self.dir.as_raw_fd(),
                    tmp.as_ptr(),
                    self.dir.as_raw_fd(),
                    self.name.as_ptr(),
                )
            };
            if r != 0 {
                return Err(errno_msg("rename over", &self.host));
            }
            Ok(())
        })();
        if res.is_err() {
            unlink_tmp();
            return res;
        }
        self.sync_dir()
    }

    pub fn sync_dir(&self) -> Result<(), String> {
        // SAFETY: fsync on our folder descriptor.
        if unsafe { libc::fsync(self.dir.as_raw_fd()) } != 0 {
            return Err(errno_msg("fsync folder of", &self.host));
        }
        Ok(())
    }

    /// Remove temp files a killed repair left beside this file.
    pub fn remove_stale_temps(&self) -> Vec<String> {
        let prefix = format!(".{}{}", String::from_utf8_lossy(self.name.as_bytes()), TMP_MARK);
        let mut removed = Vec::new();
        let Some(parent) = self.host.parent() else {
            return removed;
        };
        let Ok(rd) = std::fs::read_dir(parent) else {
            return removed;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) && n.ends_with(".tmp") {
                if let Ok(c) = CString::new(n.as_bytes()) {
                    // SAFETY: unlinkat(2) of a name in our folder.
                    if unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) } == 0 {
                        removed.push(parent.join(&n).display().to_string());
                    }
                }
            }
        }
        removed
    }
}

const TMP_MARK: &str = ".fpmdoctor-";

/// Write a whole new private file (journal, backup) durably: temp, fsync,
/// rename, fsync folder. Created 0600: backups may hold other users' configs.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{}: no folder", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| format!("create {}: {e}", tmp.display()))?;
        f.write_all(bytes)
            .map_err(|e| format!("write {}: {e}", tmp.display()))?;
        f.sync_all()
            .map_err(|e| format!("fsync {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("rename {}: {e}", path.display()))?;
    sync_path_dir(dir)
}

/// fsync a folder by path.
pub fn sync_path_dir(dir: &Path) -> Result<(), String> {
    let f = File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
    f.sync_all().map_err(|e| format!("fsync {}: {e}", dir.display()))
}

/// Create a private folder (0700) and its parents; fsync the parent so the
/// new folder survives a crash.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    if let Some(p) = dir.parent() {
        sync_path_dir(p)?;
    }
    Ok(())
}
