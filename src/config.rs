//! Where things are. Every path the tool reads has a DirectAdmin default and
//! can be overridden in a TOML config; `--root DIR` makes DIR look like `/`
//! for every path read or probed, including paths found inside config files.
//!
//! Paths in the model, findings and JSON are always *server paths* (as the
//! server sees them, without the root prefix). Only [`Config::host`] turns a
//! server path into the path this process opens.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// All server paths the readers use. `{XY}` in `php_prefix` stands for the
/// version without a dot (8.3 -> 83).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Paths {
    /// DirectAdmin's home, `/usr/local/directadmin`.
    pub da_dir: String,
    /// CustomBuild's `options.conf`.
    pub options_conf: String,
    /// `data/users`: one folder per account.
    pub users_dir: String,
    /// `data/admin`: admin.list, reseller.list.
    pub admin_dir: String,
    /// `data/templates/custom`: server-wide templates that survive a rewrite.
    pub templates_custom_dir: String,
    /// CustomBuild overlay copied over `/etc/nginx` (pure nginx).
    pub cb_nginx_overlay: String,
    /// CustomBuild overlay copied over `/etc/nginx` (nginx_apache).
    pub cb_nginx_reverse_overlay: String,
    /// The main nginx config; relative includes resolve against its folder.
    pub nginx_conf: String,
    /// PHP prefix per version, `{XY}` = version digits.
    pub php_prefix: String,
    /// Account database, parsed by hand: a static binary must not call NSS.
    pub passwd: String,
    pub group: String,
    /// Our own state (repair journal, backups, lock). Outside the plugin
    /// folder: DA replaces that folder on update.
    pub state_dir: String,
    /// DA's task queue: rewrite and notify requests are appended here.
    pub task_queue: String,
    /// DA's queue processor, run to process `task_queue` now.
    pub dataskq: String,
    /// nginx's global error log.
    pub nginx_error_log: String,
    /// DA's per-domain nginx logs (`<d>.log`, `<d>.error.log`).
    pub nginx_domain_log_dir: String,
}

impl Default for Paths {
    fn default() -> Self {
        let da = "/usr/local/directadmin";
        Paths {
            da_dir: da.into(),
            options_conf: format!("{da}/custombuild/options.conf"),
            users_dir: format!("{da}/data/users"),
            admin_dir: format!("{da}/data/admin"),
            templates_custom_dir: format!("{da}/data/templates/custom"),
            cb_nginx_overlay: format!("{da}/custombuild/custom/nginx/conf"),
            cb_nginx_reverse_overlay: format!("{da}/custombuild/custom/nginx_reverse/conf"),
            nginx_conf: "/etc/nginx/nginx.conf".into(),
            php_prefix: "/usr/local/php{XY}".into(),
            passwd: "/etc/passwd".into(),
            group: "/etc/group".into(),
            state_dir: "/var/lib/fpm_doctor".into(),
            task_queue: format!("{da}/data/task.queue"),
            dataskq: format!("{da}/dataskq"),
            nginx_error_log: "/var/log/nginx/error.log".into(),
            nginx_domain_log_dir: "/var/log/nginx/domains".into(),
        }
    }
}

impl Paths {
    /// `/usr/local/php83` for release "8.3".
    pub fn php_prefix_for(&self, release: &str) -> String {
        self.php_prefix.replace("{XY}", &release.replace('.', ""))
    }
}

/// Live-probe settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSettings {
    /// Connect + FastCGI handshake timeout per endpoint, milliseconds.
    pub timeout_ms: u64,
    /// How many probes run at once.
    pub parallelism: usize,
    /// Probe TCP FastCGI listeners. Default: only when the root is `/`
    /// (an offline copy's 127.0.0.1 is not this machine's).
    pub tcp: Option<bool>,
    /// The nginx worker user, judged against socket permissions. Default:
    /// the `user` directive of nginx.conf, else `nginx` (DirectAdmin's).
    pub worker_user: Option<String>,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            timeout_ms: 1500,
            parallelism: 16,
            tcp: None,
            worker_user: None,
        }
    }
}

/// Commands the apply protocol runs. Each is split like a shell would
/// (no shell runs it). `None` = the default, which is OFF when the root is
/// not `/` (an offline copy must never reload the host's nginx); an empty
/// string turns a command off explicitly.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CommandSettings {
    /// Per-user rewrite, `{user}` substituted. Default: DA's task.queue.
    pub rewrite: Option<String>,
    /// Default `nginx -t`.
    pub nginx_test: Option<String>,
    /// Default `systemctl reload nginx` under systemd, else `nginx -s reload`.
    pub nginx_reload: Option<String>,
    /// Default `apachectl -t`.
    pub apache_test: Option<String>,
    /// Default `systemctl reload httpd` under systemd, else `apachectl graceful`.
    pub apache_reload: Option<String>,
    /// Run `dataskq` after queueing. Default: when the root is `/` and it exists.
    pub run_dataskq: Option<bool>,
    /// How long to wait for DA to consume our task.queue lines.
    pub rewrite_wait_secs: u64,
    /// Timeout of each command.
    pub timeout_secs: u64,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            rewrite: None,
            nginx_test: None,
            nginx_reload: None,
            apache_test: None,
            apache_reload: None,
            run_dataskq: None,
            rewrite_wait_secs: 30,
            timeout_secs: 60,
        }
    }
}

/// Repair bookkeeping.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApplySettings {
    /// Journal entries (and their backups) kept; older ones are pruned.
    pub keep_repairs: usize,
    /// How long a repair waits for another one to finish.
    pub lock_wait_secs: u64,
}

impl Default for ApplySettings {
    fn default() -> Self {
        ApplySettings {
            keep_repairs: 50,
            lock_wait_secs: 60,
        }
    }
}

/// How much of the logs is read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Only lines from the last this many hours.
    pub window_hours: u64,
    /// Bytes read at most per log (all its rotations together).
    pub max_bytes: u64,
    /// Rotated files followed (`.1` … `.N`, plain or `.gz`).
    pub rotations: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            window_hours: 24,
            max_bytes: 64 << 20,
            rotations: 3,
        }
    }
}

/// What `hook custombuild-post` does after a PHP build.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OnUpgrade {
    /// Scan, write the summary, notify: change nothing.
    #[default]
    Report,
    /// Also apply the plans marked `safe` (never `confirm` or `manual`).
    RepairSafe,
}

/// When the hooks send DA's admin message.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyWhen {
    /// Drift found, something repaired, or the check itself failed.
    #[default]
    Problems,
    Always,
    Never,
}

/// Automatic checks (CustomBuild and DA event hooks).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HookSettings {
    pub on_upgrade: OnUpgrade,
    pub notify: NotifyWhen,
    /// The task.queue action of an admin message. DA's task-queue docs do
    /// not list it (real plugins use this line), hence configurable;
    /// `&subject=…&message=…` is appended.
    pub notify_task: String,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            on_upgrade: OnUpgrade::Report,
            notify: NotifyWhen::Problems,
            notify_task: "action=notify&value=admin".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub logs: LogSettings,
    pub paths: Paths,
    pub probe: ProbeSettings,
    pub commands: CommandSettings,
    pub apply: ApplySettings,
    pub hook: HookSettings,
}

/// Where `scripts/install.sh` puts the config (root, 0600).
pub const DEFAULT_CONFIG: &str = "/etc/fpm_doctor/config.toml";

/// A config that others may write would let them choose our commands.
fn check_not_writable_by_others(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is group- or world-writable: refusing to use it",
            p.display()
        ));
    }
    Ok(())
}

/// The resolved configuration of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What this process sees as the server's `/`.
    pub root: PathBuf,
    pub paths: Paths,
    pub probe: ProbeSettings,
    pub commands: CommandSettings,
    pub apply: ApplySettings,
    pub logs: LogSettings,
    pub hook: HookSettings,
    /// `--no-probe`: report `not_probed` instead of touching sockets.
    pub no_probe: bool,
    /// The `--config` file this run loaded, so a detached child (the web
    /// face's background scan) loads the same one.
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/"),
            paths: Paths::default(),
            probe: ProbeSettings::default(),
            commands: CommandSettings::default(),
            apply: ApplySettings::default(),
            logs: LogSettings::default(),
            hook: HookSettings::default(),
            no_probe: false,
            config_file: None,
        }
    }
}

impl Config {
    /// Load `--config FILE` (if any) and apply `--root`.
    pub fn load(config_file: Option<&Path>, root: Option<&Path>) -> Result<Config, String> {
        // Without --config, a live run reads the installed config if there is
        // one; an offline --root run never does (its commands are this host's).
        let default = Path::new(DEFAULT_CONFIG);
        let config_file = match (config_file, root) {
            (Some(p), _) => Some(p),
            (None, None) if default.exists() => {
                check_not_writable_by_others(default)?;
                Some(default)
            }
            _ => None,
        };
        let file = match config_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let t = &file.hook.notify_task;
        // One queue line: a newline or a second `action=` would inject another task.
        if !t.starts_with("action=") || t.contains(['\n', '\r']) || t.matches("action=").count() != 1 {
            return Err(format!(
                "[hook] notify_task must be one `action=…` query, got {t:?}"
            ));
        }
        let root = match root {
            Some(r) => std::fs::canonicalize(r).map_err(|e| format!("--root {}: {e}", r.display()))?,
            None => PathBuf::from("/"),
        };
        Ok(Config {
            root,
            paths: file.paths,
            probe: file.probe,
            commands: file.commands,
            apply: file.apply,
            logs: file.logs,
            hook: file.hook,
            no_probe: false,
            config_file: config_file.map(Path::to_path_buf),
        })
    }

    /// True when the root is the real `/`.
    pub fn is_live_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Map a server path (absolute, as found in configs) to the path this
    /// process opens. `..` components cannot climb above the root.
    pub fn host(&self, server_path: &str) -> PathBuf {
        if self.is_live_root() {
            return PathBuf::from(server_path);
        }
        let mut out = self.root.clone();
        let mut depth = 0usize;
        for comp in server_path.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    if depth > 0 {
                        out.pop();
                        depth -= 1;
                    }
                }
                c => {
                    out.push(c);
                    depth += 1;
                }
            }
        }
        out
    }

    /// Inverse of [`Config::host`] for paths produced by globbing.
    pub fn server_path(&self, host_path: &Path) -> String {
        if self.is_live_root() {
            return host_path.to_string_lossy().into_owned();
        }
        match host_path.strip_prefix(&self.root) {
            Ok(rel) => format!("/{}", rel.to_string_lossy()),
            Err(_) => host_path.to_string_lossy().into_owned(),
        }
    }

    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.probe.timeout_ms.max(1))
    }

    /// Whether TCP endpoints are probed (see [`ProbeSettings::tcp`]).
    pub fn probe_tcp(&self) -> bool {
        self.probe.tcp.unwrap_or_else(|| self.is_live_root())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_maps_under_root_and_cannot_escape() {
        let c = Config {
            root: PathBuf::from("/tmp/x"),
            ..Config::default()
        };
        assert_eq!(
            c.host("/etc/nginx/nginx.conf"),
            PathBuf::from("/tmp/x/etc/nginx/nginx.conf")
        );
        assert_eq!(c.host("/../../etc/shadow"), PathBuf::from("/tmp/x/etc/shadow"));
        assert_eq!(c.server_path(Path::new("/tmp/x/etc/passwd")), "/etc/passwd");
        let live = Config::default();
        assert_eq!(live.host("/etc/passwd"), PathBuf::from("/etc/passwd"));
    }

    #[test]
    fn a_config_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_not_writable_by_others(&p).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(check_not_writable_by_others(&p).is_err());
    }

    #[test]
    fn toml_overrides_paths() {
        let f: FileConfig =
            toml::from_str("[paths]\nphp_prefix = \"/opt/php{XY}\"\n[probe]\ntimeout_ms = 50\n").unwrap();
        assert_eq!(f.paths.php_prefix_for("8.3"), "/opt/php83");
        assert_eq!(f.paths.nginx_conf, "/etc/nginx/nginx.conf");
        assert_eq!(f.probe.timeout_ms, 50);
        assert!(toml::from_str::<FileConfig>("[paths]\nbogus = 1\n").is_err());
        let h: FileConfig =
            toml::from_str("[hook]\non_upgrade = \"repair-safe\"\nnotify = \"never\"\n").unwrap();
        assert_eq!(h.hook.on_upgrade, OnUpgrade::RepairSafe);
        assert_eq!(h.hook.notify, NotifyWhen::Never);
        assert_eq!(FileConfig::default().hook.on_upgrade, OnUpgrade::Report);
        assert!(toml::from_str::<FileConfig>("[hook]\non_upgrade = \"repair-all\"\n").is_err());
    }
}
