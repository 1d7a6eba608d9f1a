//! The `Server` model: everything the readers collected, and nothing more.
//! Checks are pure functions over it (see `checks/`), so they can be tested
//! without a disk.

use crate::probe::{Endpoint, ProbeResult};
use serde::Serialize;
use std::collections::BTreeMap;

/// Which configuration layer a piece of text lives in, i.e. who owns it and
/// whether DirectAdmin's next rewrite keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Written by DA (`nginx.conf`, `nginx_php.conf`, `httpd.conf`): lost at the next rewrite.
    Generated,
    /// A domain's `.cust_nginx`, `.cust_nginx_https`, `.cust_httpd`.
    Custom,
    /// `data/templates/custom/*`: server-wide.
    Template,
    /// CustomBuild `custom/nginx*/conf/*`, copied over `/etc/nginx`.
    Overlay,
    /// `/etc/nginx` itself.
    Global,
    /// DirectAdmin's panel data (a domain's conf: `php1_select`), which DA
    /// reads, never rewrites.
    Panel,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Generated => "generated",
            Layer::Custom => "custom",
            Layer::Template => "template",
            Layer::Overlay => "overlay",
            Layer::Global => "global",
            Layer::Panel => "panel",
        }
    }
}

/// One CustomBuild PHP slot (`php1_release` … `php4_release`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhpSlot {
    pub slot: u8,
    /// `8.3`, or `no` when the slot is unused.
    pub release: String,
    /// `php-fpm`, `fastcgi`, `lsphp`, … (empty when not set).
    pub mode: String,
    /// `/usr/local/php83`; empty for `no`.
    pub prefix: String,
}

impl PhpSlot {
    pub fn is_enabled(&self) -> bool {
        !self.release.is_empty() && self.release != "no"
    }
    pub fn is_fpm(&self) -> bool {
        self.is_enabled() && (self.mode == "php-fpm" || self.mode.is_empty())
    }
}

/// Where a directive sits, for evidence and for byte-span edits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Location {
    /// Server path of the file.
    pub file: String,
    pub line: u32,
    /// Exact text of the directive as written.
    pub text: String,
    /// Byte span of the directive in the file.
    pub start: usize,
    pub end: usize,
}

/// What a PHP handler points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Endpoint(Endpoint),
    /// Could not be resolved (variables, unknown upstream): why.
    Unresolved(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandlerKind {
    /// `fastcgi_pass` in nginx.
    Nginx,
    /// `proxy:unix:…|fcgi://` in Apache.
    Apache,
}

/// A PHP handler that serves (part of) a vhost, traced back to its source.
#[derive(Debug, Clone)]
pub struct Handler {
    pub kind: HandlerKind,
    /// The target as written (after token substitution for templates).
    pub raw_target: String,
    pub target: Target,
    /// Where the text lives in the layer that produces it.
    pub source: Location,
    pub layer: Layer,
    /// Copies of the same text in generated files (`.cust_*` and templates
    /// are inlined by DA's rewrite).
    pub generated_copies: Vec<Location>,
    /// The location block it sits in (`~ \.php$`), if any.
    pub location: Option<String>,
    /// True when an earlier location with the same match wins in nginx,
    /// so this handler never serves a request.
    pub shadowed: bool,
    /// The handler belongs to DA's webapps (`webapps.sock`), not the user's pool.
    pub webapps: bool,
    /// The `fastcgi_read_timeout` in force for this handler; `None` = nginx's
    /// default (60 s). Apache handlers have none.
    pub read_timeout: Option<ReadTimeout>,
}

/// Which block a directive in force is set in (nginx inheritance: a
/// location's own setting shadows the server's, which shadows http's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Location,
    Server,
    Http,
}

/// An effective `fastcgi_read_timeout`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadTimeout {
    pub millis: u64,
    pub level: Level,
    /// Where it is written, in the layer that produces it (a `.cust_nginx`
    /// line rather than its generated copy).
    pub at: Location,
    pub layer: Layer,
    /// The copy nginx reads, when `at` is a surviving layer.
    pub generated_copy: Option<Location>,
}

/// nginx's default `fastcgi_read_timeout`.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 60_000;

/// nginx time syntax (`300`, `2s`, `1m30s`, `500ms`) in milliseconds.
pub fn parse_nginx_time(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok()?.checked_mul(1000);
    }
    let mut total: u64 = 0;
    let mut rest = v;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit())?;
        if n_end == 0 {
            return None;
        }
        let n: u64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..u_end] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "M" => 2_592_000_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        rest = &rest[u_end..];
    }
    Some(total)
}

/// A domain's `.cust_nginx` as far as a repair needs it: where to append.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustTail {
    pub path: String,
    /// Byte offset and text of the last line (with its newline, if any).
    pub last_line_start: usize,
    pub last_line: String,
}

impl CustTail {
    pub fn of(path: &str, src: &[u8]) -> CustTail {
        let body = src.strip_suffix(b"\n").unwrap_or(src);
        let start = body.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
        CustTail {
            path: path.to_string(),
            last_line_start: start,
            last_line: String::from_utf8_lossy(&src[start..]).into_owned(),
        }
    }
}

/// One server block (or Apache VirtualHost) that serves a domain.
#[derive(Debug, Clone)]
pub struct Vhost {
    pub server_names: Vec<String>,
    pub https: bool,
    /// Where the block starts.
    pub file: String,
    pub line: u32,
    pub handlers: Vec<Handler>,
    /// The block proxies to a backend (nginx_apache) instead of running PHP.
    pub proxies: bool,
    /// `proxy_pass` arguments as written (`http://1.2.3.4:8080`).
    pub proxy_targets: Vec<String>,
}

/// A PHP-FPM pool from `data/users/<u>/php/php-fpmXY.conf` (or any pool file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pool {
    pub name: String,
    /// `83` for php-fpm83.conf.
    pub version_digits: String,
    pub file: String,
    pub line: u32,
    pub listen: Option<String>,
    pub listen_owner: Option<String>,
    pub listen_group: Option<String>,
    pub listen_mode: Option<String>,
    /// Every other key (`pm`, `pm.max_children`, …), in file order.
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    /// For a subdomain entry, the DA domain it belongs to.
    pub parent: Option<String>,
    /// `php1_select=` from the domain conf (slot number), if set.
    pub php_select: Option<u8>,
    /// Where `php1_select` was read (domain conf path and line).
    pub php_select_at: Option<Location>,
    pub nginx_only: bool,
    pub aliases: Vec<String>,
    pub vhosts: Vec<Vhost>,
    /// The DA domain's `.cust_nginx`, if it exists (for repairs that append).
    pub cust_nginx: Option<CustTail>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub creator: Option<String>,
    pub usertype: Option<String>,
    pub domains: Vec<Domain>,
    pub pools: Vec<Pool>,
    /// Server blocks of the user's config that match none of their domains.
    pub stray_vhosts: Vec<Vhost>,
}

/// Something that could not be read or parsed: reported as `unknown`, never
/// taken as healthy.
#[derive(Debug, Clone, Serialize)]
pub struct Unknown {
    pub user: Option<String>,
    pub domain: Option<String>,
    pub file: String,
    pub line: Option<u32>,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct Server {
    /// `webserver=` from options.conf.
    pub webserver: Option<String>,
    pub php: Vec<PhpSlot>,
    pub users: Vec<User>,
    /// Server blocks from `/etc/nginx` outside users' files (hostname, webapps).
    pub global_vhosts: Vec<Vhost>,
    pub nginx_worker_user: Option<String>,
    pub unknowns: Vec<Unknown>,
    /// Result per probed endpoint.
    pub probes: BTreeMap<Endpoint, ProbeResult>,
    /// The scan was limited to one user / domain.
    pub scoped: bool,
    /// Logs, processes, kernel and system state for the 502 checks.
    pub evidence: crate::evidence::Evidence,
    /// The nginx worker's uid/gids from the tree's passwd/group (when known).
    pub worker: Option<crate::probe::WorkerIdentity>,
    /// The tree's account database (names in pool `listen.owner/group`).
    pub accounts: Option<crate::accounts::Accounts>,
    /// Endpoint → the domains whose PHP goes there, built once on first use
    /// (the checks ask per pool; asking the whole model each time made a
    /// 10,000-domain scan quadratic).
    pub socket_index: std::sync::OnceLock<std::collections::HashMap<Endpoint, Vec<String>>>,
    /// Domain → its owner, built once on first use.
    pub owner_index: std::sync::OnceLock<std::collections::HashMap<String, String>>,
}

/// Where a pool `listen =` value makes FPM listen: a unix path, `ip:port`
/// or a bare port (all addresses; probed on 127.0.0.1).
pub fn pool_endpoint(listen: &str) -> Option<Endpoint> {
    let l = listen.trim();
    if l.starts_with('/') {
        return Some(Endpoint::Unix(l.to_string()));
    }
    if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: l.parse().ok().filter(|p| *p != 0)?,
        });
    }
    Endpoint::parse_nginx(l)
}

/// A pool with the DA user whose data folder defines it (`None` for the
/// master config's own pools, e.g. webapps).
pub struct PoolRef<'a> {
    pub user: Option<&'a str>,
    pub pool: &'a Pool,
}

impl Server {
    /// The DA user owning a domain (or subdomain) entry.
    pub fn owner_of(&self, domain: &str) -> Option<&str> {
        let idx = self.owner_index.get_or_init(|| {
            let mut m = std::collections::HashMap::new();
            for u in &self.users {
                for d in &u.domains {
                    m.entry(d.name.clone()).or_insert_with(|| u.name.clone());
                }
            }
            m
        });
        idx.get(domain).map(String::as_str)
    }

    /// Every pool of one FPM version (`83`): users' pools and the master's.
    pub fn fpm_pools(&self, digits: &str) -> Vec<PoolRef<'_>> {
        let mut out: Vec<PoolRef> = Vec::new();
        if let Some(v) = self.evidence.fpm.as_ref().and_then(|f| f.version(digits)) {
            out.extend(v.pools.iter().map(|pool| PoolRef { user: None, pool }));
        }
        for u in &self.users {
            for pool in u.pools.iter().filter(|p| p.version_digits == digits) {
                out.push(PoolRef {
                    user: Some(&u.name),
                    pool,
                });
            }
        }
        out
    }

    /// Domains whose PHP goes to `sock`: a handler names it, or the panel
    /// expects it. Users and domains in model order.
    pub fn domains_using(&self, sock: &Endpoint) -> Vec<String> {
        let idx = self.socket_index.get_or_init(|| {
            let mut idx: std::collections::HashMap<Endpoint, Vec<String>> = std::collections::HashMap::new();
            for u in &self.users {
                for d in &u.domains {
                    let mut eps: Vec<Endpoint> = d
                        .vhosts
                        .iter()
                        .flat_map(|v| v.handlers.iter())
                        .filter_map(|h| match &h.target {
                            Target::Endpoint(e) => Some(e.clone()),
                            Target::Unresolved(_) => None,
                        })
                        .collect();
                    if let Some(p) = expected_socket(&self.php, &u.pools, &u.name, d.php_select).socket {
                        eps.push(Endpoint::Unix(p));
                    }
                    eps.sort();
                    eps.dedup();
                    for e in eps {
                        idx.entry(e).or_default().push(d.name.clone());
                    }
                }
            }
            idx
        });
        idx.get(sock).cloned().unwrap_or_default()
    }

    pub fn slot(&self, n: u8) -> Option<&PhpSlot> {
        self.php.iter().find(|s| s.slot == n)
    }

    /// Every server block: users' (matched or stray) and global ones.
    pub fn all_vhosts(&self) -> impl Iterator<Item = &Vhost> {
        self.users
            .iter()
            .flat_map(|u| {
                u.domains
                    .iter()
                    .flat_map(|d| d.vhosts.iter())
                    .chain(u.stray_vhosts.iter())
            })
            .chain(self.global_vhosts.iter())
    }

    /// Every endpoint a handler points at, deduplicated.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let set: std::collections::BTreeSet<Endpoint> = self
            .all_vhosts()
            .flat_map(|v| v.handlers.iter())
            .filter_map(|h| match &h.target {
                Target::Endpoint(e) => Some(e.clone()),
                Target::Unresolved(_) => None,
            })
            .collect();
        set.into_iter().collect()
    }
}

/// The socket a domain's PHP should use, derived from panel data alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expected {
    /// The slot in force (`php1_select`, default 1).
    pub slot: u8,
    pub release: Option<String>,
    pub mode: Option<String>,
    /// `None` when the slot gives no FPM socket (disabled, not php-fpm, unknown).
    pub socket: Option<String>,
    /// Where the socket came from: `pool listen in …` or `computed from slot N`.
    pub basis: String,
}

/// `php1_select` slot → its release and mode → `<prefix>/sockets/<user>.sock`,
/// except that the user's pool `listen` for that version wins (isolated_fpm,
/// custom pools).
pub fn expected_socket(slots: &[PhpSlot], pools: &[Pool], user: &str, php_select: Option<u8>) -> Expected {
    let slot_n = php_select.unwrap_or(1);
    let Some(slot) = slots.iter().find(|s| s.slot == slot_n) else {
        return Expected {
            slot: slot_n,
            release: None,
            mode: None,
            socket: None,
            basis: format!("slot {slot_n} is not in options.conf"),
        };
    };
    let base = Expected {
        slot: slot_n,
        release: Some(slot.release.clone()),
        mode: Some(slot.mode.clone()),
        socket: None,
        basis: String::new(),
    };
    if !slot.is_enabled() {
        return Expected {
            basis: format!("slot {slot_n} is disabled (php{slot_n}_release=no)"),
            ..base
        };
    }
    if !slot.is_fpm() {
        return Expected {
            basis: format!("slot {slot_n} runs PHP as {}, not php-fpm", slot.mode),
            ..base
        };
    }
    let digits = slot.release.replace('.', "");
    if let Some(pool) = pools
        .iter()
        .find(|p| p.version_digits == digits && p.listen.as_deref().is_some_and(|l| l.starts_with('/')))
    {
        return Expected {
            socket: pool.listen.clone(),
            basis: format!("listen of pool [{}] in {}:{}", pool.name, pool.file, pool.line),
            ..base
        };
    }
    Expected {
        socket: Some(format!("{}/sockets/{user}.sock", slot.prefix)),
        basis: format!(
            "computed from slot {slot_n} (php{slot_n}_release={})",
            slot.release
        ),
        ..base
    }
}

/// The webapps pool socket (phpMyAdmin, webmail): slot 1's `webapps.sock`.
pub fn expected_webapps_socket(slots: &[PhpSlot]) -> Option<String> {
    slots
        .iter()
        .find(|s| s.slot == 1)
        .filter(|s| s.is_fpm())
        .map(|s| format!("{}/sockets/webapps.sock", s.prefix))
}
