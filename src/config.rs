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
    /// Read-only views per account for servers where `*_run_as` does not
    /// take effect (0711; each file 0640 with the account's group).
    pub public_dir: String,
    /// Folders whose subfolders belong to hosting users (`/home/<u>`): files
    /// there are read without following symlinks and only if the user or
    /// root owns them.
    pub user_controlled: Vec<String>,
    /// CustomBuild's FPM master config per version, `{XY}` = digits.
    pub fpm_conf: String,
    /// The master's pid file when its config has no `pid =` [U].
    pub fpm_pid: String,
    /// The FPM log when the master config has no `error_log =`.
    pub fpm_log: String,
    /// procfs (processes, `smaps_rollup`, `meminfo`). Under `--root` it is
    /// the copy's: an offline copy has none, and worker memory is unknown.
    pub proc_dir: String,
    /// Present when systemd is PID 1.
    pub systemd_dir: String,
    /// Kernel logs written by syslog (read when they exist).
    pub kern_log: String,
    pub messages_log: String,
    /// `btime` (boot time) for converting `[12345.678]` kernel timestamps.
    pub proc_stat: String,
    /// A PHP slot's php.ini, `{prefix}` = the slot's PHP prefix.
    pub php_ini: String,
    /// A PHP slot's ini scan dir when `-i` cannot be asked.
    pub php_scan_dir: String,
    /// A PHP slot's FPM binary, `{prefix}` and `{XY}` substituted.
    pub php_fpm_bin: String,
    /// The temp dir whose filesystem must have room (sessions, uploads).
    pub tmp_dir: String,
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
            user_controlled: vec!["/home".into()],
            public_dir: "/var/cache/fpm_doctor".into(),
            fpm_conf: "/usr/local/php{XY}/etc/php-fpm.conf".into(),
            fpm_pid: "/usr/local/php{XY}/var/run/php-fpm.pid".into(),
            fpm_log: "/var/log/php-fpm{XY}.log".into(),
            proc_dir: "/proc".into(),
            systemd_dir: "/run/systemd/system".into(),
            kern_log: "/var/log/kern.log".into(),
            messages_log: "/var/log/messages".into(),
            proc_stat: "/proc/stat".into(),
            php_ini: "{prefix}/lib/php.ini".into(),
            php_scan_dir: "{prefix}/lib/php.conf.d".into(),
            php_fpm_bin: "{prefix}/sbin/php-fpm{XY}".into(),
            tmp_dir: "/tmp".into(),
        }
    }
}

impl Paths {
    /// `/usr/local/php83` for release "8.3".
    pub fn php_prefix_for(&self, release: &str) -> String {
        self.php_prefix.replace("{XY}", &release.replace('.', ""))
    }

    /// Any `{XY}` path template for release "8.3".
    pub fn for_release(template: &str, release: &str) -> String {
        template.replace("{XY}", &release.replace('.', ""))
    }

    /// A per-slot path template (`{prefix}`, `{XY}`) for release "8.3".
    pub fn php_path(template: &str, prefix: &str, release: &str) -> String {
        template
            .replace("{prefix}", prefix)
            .replace("{XY}", &release.replace('.', ""))
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
    /// Start or restart one PHP-FPM version, `{version}` = digits (`83`).
    /// Default: `systemctl restart php-fpm{version}` under systemd, else the
    /// master binary `<php_prefix>/sbin/php-fpm{version}` [U: the non-systemd
    /// way DA hosts start FPM is not confirmed]. Runs detached (own session).
    pub fpm_restart: Option<String>,
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
            fpm_restart: None,
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

/// PHP-FPM sizing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FpmSettings {
    /// Memory kept free for everything else when sizing `pm.max_children`:
    /// the larger of `reserve_mb` and `reserve_percent` of MemTotal.
    pub reserve_mb: u64,
    pub reserve_percent: u64,
    /// Requests in the window above which a site counts as busy (an
    /// `ondemand` pool forks on every burst there).
    pub busy_hits: usize,
}

impl Default for FpmSettings {
    fn default() -> Self {
        FpmSettings {
            reserve_mb: 512,
            reserve_percent: 10,
            busy_hits: 1000,
        }
    }
}

/// MySQL / MariaDB (`mysql-stall`). Commands follow [`CommandSettings`]:
/// `None` = the default, which is off when the root is not `/`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MysqlSettings {
    /// DA's credentials (`user=`, `passwd=`, optional `host=`, `port=`, `socket=`).
    pub credentials: String,
    /// The client; default `mariadb`, else `mysql`, found in PATH.
    pub client: Option<String>,
    /// Server path of the server's socket (mapped through `--root`); default: the client's.
    pub socket: Option<String>,
    /// A query (or an open transaction holding locks) this old is stalled.
    pub long_query_secs: u64,
    /// Warn when this share of `max_connections` is in use.
    pub connections_warn_pct: u64,
    pub timeout_secs: u64,
}

impl Default for MysqlSettings {
    fn default() -> Self {
        MysqlSettings {
            credentials: "/usr/local/directadmin/conf/mysql.conf".into(),
            client: None,
            socket: None,
            long_query_secs: 30,
            connections_warn_pct: 90,
            timeout_secs: 10,
        }
    }
}

/// Settings of the system checks (kernel, disks, PHP ini, timeouts).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SystemSettings {
    /// Kernel ring buffer command. Default `dmesg` when the root is `/`
    /// (another root's kernel is not this one); "" turns it off.
    pub dmesg: Option<String>,
    /// Kernel journal command, run only when the program exists. Default
    /// `journalctl -k -q --no-pager -o short-unix` when the root is `/`.
    pub journalctl: Option<String>,
    /// Ask each PHP slot's FPM binary (`-m`, `-i`). Default: root is `/`.
    pub run_php_fpm: Option<bool>,
    /// Measure filesystems (`statvfs`). Default: root is `/` (an offline
    /// copy's disk is not the server's).
    pub statvfs: Option<bool>,
    /// Timeout of each of those commands.
    pub command_timeout_secs: u64,
    /// Disk usage (space or inodes) at or above this percentage is a warning…
    pub disk_warn_pct: f64,
    /// …and at or above this one critical.
    pub disk_crit_pct: f64,
    /// Less free space than this (MB) is critical whatever the percentage.
    pub disk_min_free_mb: u64,
    /// The `fastcgi_read_timeout` a repair proposes (at least twice the current one).
    pub fastcgi_timeout_secs: u64,
    /// ini files a CustomBuild rebuild leaves alone (globs, `{prefix}`
    /// substituted): only there is an xdebug line commented out
    /// automatically. Which files CustomBuild regenerates is unconfirmed.
    pub surviving_ini: Vec<String>,
}

impl Default for SystemSettings {
    fn default() -> Self {
        SystemSettings {
            dmesg: None,
            journalctl: None,
            run_php_fpm: None,
            statvfs: None,
            command_timeout_secs: 10,
            disk_warn_pct: 90.0,
            disk_crit_pct: 97.0,
            disk_min_free_mb: 100,
            fastcgi_timeout_secs: 300,
            surviving_ini: vec!["{prefix}/lib/php.conf.d/90-custom.ini".into()],
        }
    }
}

/// Firewalls and ban lists (`loopback-banned`). File names from CSF, DA's
/// Brute Force Monitor and its CSF scripts; commands are off under `--root`
/// unless set. `{ip}` and `{jail}` are substituted.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FirewallSettings {
    pub csf_deny: String,
    pub csf_tempban: String,
    pub csf_allow: String,
    pub csf_ignore: String,
    /// DA's login blacklist (blocks DA's own port only) and its whitelist.
    pub da_ip_blacklist: String,
    pub da_ip_whitelist: String,
    /// BFM's block list written by DA's `block_ip.sh` (firewall-wide) and its exempt lists.
    pub bfm_blocked: String,
    pub bfm_exempt: String,
    pub brute_skip: String,
    /// The server's own IPs.
    pub server_ips: String,
    pub fail2ban_jail_local: String,
    pub fail2ban_client: Option<String>,
    pub iptables_save: Option<String>,
    pub ip6tables_save: Option<String>,
    pub nft_list: Option<String>,
    pub csf_unban: Option<String>,
    pub csf_temp_unban: Option<String>,
    pub fail2ban_unban: Option<String>,
    pub timeout_secs: u64,
}

impl Default for FirewallSettings {
    fn default() -> Self {
        let admin = "/usr/local/directadmin/data/admin";
        FirewallSettings {
            csf_deny: "/etc/csf/csf.deny".into(),
            csf_tempban: "/var/lib/csf/csf.tempban".into(),
            csf_allow: "/etc/csf/csf.allow".into(),
            csf_ignore: "/etc/csf/csf.ignore".into(),
            da_ip_blacklist: format!("{admin}/ip_blacklist"),
            da_ip_whitelist: format!("{admin}/ip_whitelist"),
            bfm_blocked: "/root/blocked_ips.txt".into(),
            bfm_exempt: "/root/exempt_ips.txt".into(),
            brute_skip: format!("{admin}/brute_skip.list"),
            server_ips: format!("{admin}/ips.list"),
            fail2ban_jail_local: "/etc/fail2ban/jail.local".into(),
            fail2ban_client: None,
            iptables_save: None,
            ip6tables_save: None,
            nft_list: None,
            csf_unban: None,
            csf_temp_unban: None,
            fail2ban_unban: None,
            timeout_secs: 10,
        }
    }
}

/// `Some(cmd)` unless off: an empty setting is off; unset means `default`
/// on a live root and off under `--root`.
pub fn resolve_cmd(live: bool, set: &Option<String>, default: &str) -> Option<String> {
    match set {
        Some(s) if s.trim().is_empty() => None,
        Some(s) => Some(s.clone()),
        None if live && !default.is_empty() => Some(default.to_string()),
        None => None,
    }
}

/// What resellers and users may repair themselves.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSettings {
    /// Whether DA lets users choose a domain's PHP version here (their
    /// package's PHP selector). Unconfirmed per server, so a `php1_select`
    /// change is admin-only unless this says so.
    pub users_choose_php: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub access: AccessSettings,
    pub system: SystemSettings,
    pub logs: LogSettings,
    pub fpm: FpmSettings,
    pub paths: Paths,
    pub probe: ProbeSettings,
    pub commands: CommandSettings,
    pub apply: ApplySettings,
    pub hook: HookSettings,
    pub mysql: MysqlSettings,
    pub firewall: FirewallSettings,
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
    pub access: AccessSettings,
    pub hook: HookSettings,
    pub fpm: FpmSettings,
    pub system: SystemSettings,
    pub mysql: MysqlSettings,
    pub firewall: FirewallSettings,
    /// `--no-probe`: report `not_probed` instead of touching sockets.
    pub no_probe: bool,
    /// The `--config` file this run loaded, so a detached child (the web
    /// face's background scan) loads the same one.
    pub config_file: Option<PathBuf>,
    /// The root directory opened once (`O_PATH`): every read resolves from
    /// it, and reopening it per file doubled the syscalls of a large scan.
    pub root_fd: std::sync::Arc<std::sync::OnceLock<(PathBuf, std::os::fd::OwnedFd)>>,
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
            access: AccessSettings::default(),
            hook: HookSettings::default(),
            fpm: FpmSettings::default(),
            system: SystemSettings::default(),
            mysql: MysqlSettings::default(),
            firewall: FirewallSettings::default(),
            no_probe: false,
            config_file: None,
            root_fd: Default::default(),
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
            access: file.access,
            hook: file.hook,
            fpm: file.fpm,
            system: file.system,
            mysql: file.mysql,
            firewall: file.firewall,
            no_probe: false,
            config_file: config_file.map(Path::to_path_buf),
            root_fd: Default::default(),
        })
    }

    /// The cached `O_PATH` fd of the root, when it was opened for this root.
    pub fn cached_root_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::{AsRawFd, FromRawFd};
        if self.root_fd.get().is_none() {
            use nix::fcntl::OFlag;
            if let Ok(fd) = nix::fcntl::open(
                &self.root,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ) {
                // SAFETY: a fresh fd from open(2), owned from here on.
                let _ = self.root_fd.set((self.root.clone(), unsafe {
                    std::os::fd::OwnedFd::from_raw_fd(fd)
                }));
            }
        }
        self.root_fd
            .get()
            .filter(|(p, _)| *p == self.root)
            .map(|(_, fd)| fd.as_raw_fd())
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
