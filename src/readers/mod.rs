//! Readers: all file IO of a scan. They turn a DirectAdmin tree into the
//! [`Server`](crate::model::Server) model. Nothing here judges health.

pub mod apache;
pub mod da;
pub mod fpm;
pub mod kv;
pub mod nginx;

use crate::config::Config;
use std::io::ErrorKind;

/// Reads server paths through the root mapping of a [`Config`].
#[derive(Clone, Copy)]
pub struct Fs<'c> {
    pub cfg: &'c Config,
}

impl<'c> Fs<'c> {
    pub fn new(cfg: &'c Config) -> Self {
        Fs { cfg }
    }

    /// `Ok(None)` when the file does not exist; `Err(reason)` when it exists
    /// but cannot be read (that is an *unknown*, never an absence).
    pub fn read(&self, server_path: &str) -> Result<Option<Vec<u8>>, String> {
        match self.read_raw(server_path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {server_path}: {e}")),
        }
    }

    /// Opens a server path. Under `--root`, symlinks inside the copy resolve
    /// inside it too (`openat2` with `RESOLVE_IN_ROOT`), so a link to
    /// `/etc/shadow` in a customer's tree never reaches this machine's file.
    pub fn open(&self, server_path: &str, directory: bool) -> std::io::Result<std::fs::File> {
        use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let extra = if directory {
            OFlag::O_DIRECTORY
        } else {
            OFlag::empty()
        };
        // In places a hosting user controls, a symlink could point the
        // (root) scanner at any file: refuse links there, and check the owner.
        let user_place = self.user_home(server_path);
        let mut resolve = ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if user_place.is_some() {
            resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        // The root's fd is opened once per run; a fresh one only if that failed.
        let fresh;
        let root_raw = match self.cfg.cached_root_fd() {
            Some(fd) => fd,
            None => {
                let fd = nix::fcntl::open(
                    self.cfg.root.as_path(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )?;
                // SAFETY: `open` just returned this fd and nothing else owns it.
                fresh = unsafe { OwnedFd::from_raw_fd(fd) };
                fresh.as_raw_fd()
            }
        };
        let rel = server_path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        if !self.cfg.is_live_root() {
            resolve |= ResolveFlag::RESOLVE_IN_ROOT;
        }
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | extra)
            .resolve(resolve);
        let fd = openat2(root_raw, rel, how).map_err(|e| match e {
            nix::errno::Errno::ELOOP if user_place.is_some() => std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{server_path} is reached through a symlink in a user's home: not followed"),
            ),
            e => e.into(),
        })?;
        // SAFETY: a fresh fd from openat2.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if let Some(home) = user_place {
            use std::os::unix::fs::MetadataExt;
            let owner = file.metadata()?.uid();
            let home_owner = self.cfg.host(&home).metadata()?.uid();
            if owner != 0 && owner != home_owner {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{server_path} is owned by uid {owner}, not by the owner of {home}: not read"),
                ));
            }
        }
        Ok(file)
    }

    /// `/home/alice` when `server_path` lies in a user-controlled place.
    fn user_home(&self, server_path: &str) -> Option<String> {
        self.cfg.paths.user_controlled.iter().find_map(|prefix| {
            let rest = server_path
                .strip_prefix(prefix.trim_end_matches('/'))?
                .strip_prefix('/')?;
            let first = rest.split('/').next().filter(|f| !f.is_empty())?;
            Some(format!("{}/{first}", prefix.trim_end_matches('/')))
        })
    }

    fn read_raw(&self, server_path: &str) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut f = self.open(server_path, false)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    }

    pub fn exists(&self, server_path: &str) -> bool {
        self.cfg.host(server_path).symlink_metadata().is_ok()
    }

    /// Names of the entries of a directory, sorted; `Ok(vec![])` if absent.
    pub fn list_dir(&self, server_path: &str) -> Result<Vec<String>, String> {
        match std::fs::read_dir(self.cfg.host(server_path)) {
            Ok(rd) => {
                let mut v: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                Ok(v)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(format!("cannot list {server_path}: {e}")),
        }
    }

    pub fn is_dir(&self, server_path: &str) -> bool {
        self.cfg.host(server_path).is_dir()
    }
}

impl crate::nginx::Source for Fs<'_> {
    fn read(&self, server_path: &str) -> std::io::Result<Vec<u8>> {
        self.read_raw(server_path)
    }

    fn glob(&self, server_pattern: &str) -> std::io::Result<Vec<String>> {
        let host = self.cfg.host(server_pattern);
        let pattern = host.to_string_lossy();
        let paths = glob::glob(&pattern).map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.msg))?;
        let mut out: Vec<String> = paths
            .filter_map(|p| p.ok())
            .map(|p| self.cfg.server_path(&p))
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Joins a server directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

use crate::model::{
    expected_socket, Domain, Handler, HandlerKind, Layer, Location, Server, Target, Unknown, User, Vhost,
};
use crate::probe::Endpoint;
use da::{DaDomain, DaUser};
use nginx::{LayerFile, RawVhost, SharedLayers, Tokens};
use rayon::prelude::*;

/// What to read: everything, one user, or one domain.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub user: Option<String>,
    pub domain: Option<String>,
}

/// Which side serves PHP for the configured web server.
fn serves(webserver: Option<&str>) -> (bool, bool) {
    match webserver {
        Some("nginx") | None => (true, false),
        Some("nginx_apache") => (true, true),
        Some("apache") => (false, true),
        _ => (false, false),
    }
}

/// Finds the owner of `--domain D` by reading only domains.list files.
fn owner_of_domain(fs: &Fs, d: &str) -> Result<String, String> {
    if !da::valid_name(d) {
        return Err(format!("invalid domain name: {d:?}"));
    }
    for u in da::list_users(fs, None)? {
        let path = join(&join(&fs.cfg.paths.users_dir, &u), "domains.list");
        if let Ok(Some(src)) = fs.read(&path) {
            if kv::list(&src).iter().any(|x| x == d) {
                return Ok(u);
            }
        }
    }
    Err(format!("no DirectAdmin user owns domain {d}"))
}

/// Reads the whole model for a scope. Errors only when the scope itself is
/// invalid (unknown user or domain); unreadable files become `unknowns`.
pub fn read_server(cfg: &crate::config::Config, scope: &Scope) -> Result<Server, String> {
    let fs = Fs::new(cfg);
    let mut server = Server {
        scoped: scope.user.is_some() || scope.domain.is_some(),
        ..Default::default()
    };
    match fs.read(&cfg.paths.options_conf) {
        Ok(Some(src)) => {
            let o = da::parse_options(&src, |r| cfg.paths.php_prefix_for(r));
            server.webserver = o.webserver;
            server.php = o.php;
            if server.php.is_empty() {
                server.unknowns.push(Unknown {
                    user: None,
                    domain: None,
                    file: cfg.paths.options_conf.clone(),
                    line: None,
                    reason: "options.conf names no php1_release: expected sockets cannot be computed".into(),
                });
            }
        }
        Ok(None) => server.unknowns.push(Unknown {
            user: None,
            domain: None,
            file: cfg.paths.options_conf.clone(),
            line: None,
            reason: "CustomBuild options.conf is missing: PHP versions unknown".into(),
        }),
        Err(reason) => server.unknowns.push(Unknown {
            user: None,
            domain: None,
            file: cfg.paths.options_conf.clone(),
            line: None,
            reason,
        }),
    }
    let (nginx_side, apache_side) = serves(server.webserver.as_deref());
    let users = match (&scope.user, &scope.domain) {
        (Some(u), _) => da::list_users(&fs, Some(u))?,
        (None, Some(d)) => vec![owner_of_domain(&fs, d)?],
        (None, None) => da::list_users(&fs, None)?,
    };
    let shared = if nginx_side {
        read_shared_layers_for(&fs, apache_side)
    } else {
        SharedLayers::default()
    };
    server.unknowns.extend(shared.unknowns.iter().cloned());
    let global = if nginx_side {
        nginx::read_global(&fs)
    } else {
        nginx::GlobalNginx::default()
    };
    server.unknowns.extend(global.unknowns.iter().cloned());
    server.nginx_worker_user = global.worker_user.clone();
    let etc_nginx = nginx_conf_dir(&cfg.paths.nginx_conf);
    // Global server blocks: hostname page and webapps outside user vhosts.
    if !server.scoped {
        let tokens = Tokens {
            user: "",
            domain: "",
            slots: &server.php,
            expected_socket: "",
        };
        for rv in &global.vhosts {
            server.global_vhosts.push(build_vhost(
                rv,
                &[],
                &shared,
                &tokens,
                &etc_nginx,
                &cfg.paths.users_dir,
            ));
        }
    }
    let slots = server.php.clone();
    let results: Vec<(User, Vec<Unknown>)> = users
        .par_iter()
        .map(|u| {
            let mut unknowns = Vec::new();
            let du = da::read_user(&fs, u, scope.domain.as_deref(), &mut unknowns);
            let user = assemble_user(
                &fs,
                &du,
                &slots,
                &shared,
                &global,
                &etc_nginx,
                nginx_side,
                apache_side,
                &mut unknowns,
            );
            (user, unknowns)
        })
        .collect();
    for (u, unk) in results {
        server.users.push(u);
        server.unknowns.extend(unk);
    }
    if let Some(d) = &scope.domain {
        if server.users.iter().all(|u| u.domains.is_empty()) {
            return Err(format!("domain {d} is not in that user's domains.list"));
        }
    }
    Ok(server)
}

fn read_shared_layers_for(fs: &Fs, reverse: bool) -> SharedLayers {
    nginx::read_shared_layers(fs, reverse)
}

fn nginx_conf_dir(nginx_conf: &str) -> String {
    nginx_conf
        .rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or_default()
}

/// Attributes each handler of a raw server block to its source layer.
fn build_vhost(
    rv: &RawVhost,
    cust: &[&LayerFile],
    shared: &SharedLayers,
    tokens: &Tokens,
    etc_nginx: &str,
    users_dir: &str,
) -> Vhost {
    let mut handlers = Vec::new();
    for h in &rv.handlers {
        let in_etc = h.at.file.starts_with(&format!("{etc_nginx}/"));
        let generated =
            h.at.file
                .starts_with(&format!("{}/", users_dir.trim_end_matches('/')));
        let is_php_include = h.at.file.ends_with("/nginx_php.conf");
        let mut candidates: Vec<&LayerFile> = Vec::new();
        if in_etc {
            if let Some(o) = shared.overlay_for(etc_nginx, &h.at.file) {
                candidates.push(o);
            }
        } else {
            if !is_php_include {
                candidates.extend(cust.iter().copied());
            }
            candidates.extend(shared.templates.iter());
        }
        let file_layer = if generated {
            Layer::Generated
        } else {
            Layer::Global
        };
        let mut handler = nginx::attribute(h, &candidates, tokens, file_layer);
        // The timeout may live elsewhere than the handler (a server-level
        // line from .cust_nginx above a generated PHP location).
        handler.read_timeout = h.read_timeout.as_ref().map(|t| {
            let users_prefix = format!("{}/", users_dir.trim_end_matches('/'));
            let mut c: Vec<&LayerFile> = Vec::new();
            if t.at.file.starts_with(&format!("{etc_nginx}/")) {
                c.extend(shared.overlay_for(etc_nginx, &t.at.file));
            } else {
                c.extend(cust.iter().copied());
                c.extend(shared.templates.iter());
            }
            let layer = if t.at.file.starts_with(&users_prefix) {
                Layer::Generated
            } else {
                Layer::Global
            };
            nginx::attribute_timeout(t, &c, layer)
        });
        handlers.push(handler);
    }
    Vhost {
        server_names: rv.server_names.clone(),
        https: rv.https,
        file: rv.file.clone(),
        line: rv.line,
        handlers,
        proxies: rv.proxies,
        proxy_targets: rv.proxy_targets.clone(),
    }
}

/// The names a DA domain entry answers to.
fn names_of(d: &DaDomain) -> Vec<(String, Option<String>, Vec<String>)> {
    let mut main = vec![d.name.clone(), format!("www.{}", d.name)];
    for a in &d.aliases {
        main.push(a.clone());
        main.push(format!("www.{a}"));
    }
    let mut out = vec![(d.name.clone(), None, main)];
    for s in &d.subdomains {
        let full = format!("{s}.{}", d.name);
        out.push((
            full.clone(),
            Some(d.name.clone()),
            vec![full.clone(), format!("www.{full}")],
        ));
    }
    out
}

fn find_entry(entries: &[(Domain, usize, Vec<String>)], server_names: &[String]) -> Option<usize> {
    server_names.iter().find_map(|sn| {
        entries
            .iter()
            .position(|(_, _, names)| names.iter().any(|n| n == sn))
    })
}

#[allow(clippy::too_many_arguments)]
fn assemble_user(
    fs: &Fs,
    du: &DaUser,
    slots: &[crate::model::PhpSlot],
    shared: &SharedLayers,
    global: &nginx::GlobalNginx,
    etc_nginx: &str,
    nginx_side: bool,
    apache_side: bool,
    unknowns: &mut Vec<Unknown>,
) -> User {
    let mut user = User {
        name: du.name.clone(),
        creator: du.creator.clone(),
        usertype: du.usertype.clone(),
        domains: vec![],
        pools: du.pools.clone(),
        stray_vhosts: vec![],
    };
    // Domain entries (main domains and subdomains) and the DA domain behind each.
    let mut entries: Vec<(Domain, usize, Vec<String>)> = Vec::new();
    for (di, d) in du.domains.iter().enumerate() {
        for (name, parent, names) in names_of(d) {
            entries.push((
                Domain {
                    name,
                    parent,
                    php_select: d.php_select.as_ref().map(|(n, _)| *n),
                    php_select_at: d.php_select.as_ref().map(|(_, l)| l.clone()),
                    nginx_only: d.nginx_only,
                    aliases: d.aliases.clone(),
                    vhosts: vec![],
                    cust_nginx: d
                        .cust_nginx
                        .as_ref()
                        .map(|c| crate::model::CustTail::of(&c.path, &c.src)),
                },
                di,
                names,
            ));
        }
    }
    let cust: Vec<(Option<LayerFile>, Option<LayerFile>)> = du
        .domains
        .iter()
        .map(|d| {
            (
                d.cust_nginx.as_ref().map(LayerFile::from_cust),
                d.cust_nginx_https.as_ref().map(LayerFile::from_cust),
            )
        })
        .collect();
    for ((n, nh), d) in cust.iter().zip(&du.domains) {
        for lf in n.iter().chain(nh.iter()) {
            unknowns.extend(lf.unknowns(Some(&du.name), Some(&d.name)));
        }
    }
    let mut used: std::collections::HashSet<(String, usize)> = std::collections::HashSet::new();
    if nginx_side {
        let (raw, unk) = nginx::read_user(
            fs,
            &du.dir,
            &du.name,
            &global.upstreams,
            global.http_read_timeout.as_ref(),
        );
        unknowns.extend(unk);
        for rv in raw {
            let e = find_entry(&entries, &rv.server_names);
            let (domain_name, cust_files): (String, Vec<&LayerFile>) = match e {
                Some(ei) => {
                    let di = entries[ei].1;
                    let (n, nh) = &cust[di];
                    let mut c: Vec<&LayerFile> = Vec::new();
                    if rv.https {
                        c.extend(nh.iter());
                    }
                    c.extend(n.iter());
                    (du.domains[di].name.clone(), c)
                }
                None => (rv.server_names.first().cloned().unwrap_or_default(), vec![]),
            };
            let pools = &du.pools;
            let exp = expected_socket(slots, pools, &du.name, e.and_then(|ei| entries[ei].0.php_select));
            let tokens = Tokens {
                user: &du.name,
                domain: &domain_name,
                slots,
                expected_socket: exp.socket.as_deref().unwrap_or(""),
            };
            let v = build_vhost(
                &rv,
                &cust_files,
                shared,
                &tokens,
                etc_nginx,
                &fs.cfg.paths.users_dir,
            );
            for h in &v.handlers {
                if h.layer == Layer::Custom {
                    used.insert((h.source.file.clone(), h.source.start));
                }
            }
            match e {
                Some(ei) => entries[ei].0.vhosts.push(v),
                None => user.stray_vhosts.push(v),
            }
        }
        // Custom handlers DA has not inlined (yet): they serve after the next rewrite.
        for (di, d) in du.domains.iter().enumerate() {
            let (n, nh) = &cust[di];
            for lf in n.iter().chain(nh.iter()) {
                let pending: Vec<Handler> = lf
                    .handlers
                    .iter()
                    .filter(|(_, loc, _)| !used.contains(&(loc.file.clone(), loc.start)))
                    .map(|(arg, loc, location)| {
                        pending_handler(arg, loc, location.clone(), &du.name, d, slots, &du.pools)
                    })
                    .collect();
                if !pending.is_empty() {
                    if let Some(entry) = entries
                        .iter_mut()
                        .find(|(dom, i, _)| *i == di && dom.parent.is_none())
                    {
                        entry.0.vhosts.push(Vhost {
                            server_names: vec![d.name.clone()],
                            https: lf.parsed.path.ends_with("_https"),
                            file: lf.parsed.path.clone(),
                            line: 1,
                            handlers: pending,
                            proxies: false,
                            proxy_targets: vec![],
                        });
                    }
                }
            }
        }
    }
    if apache_side {
        apache_user(fs, du, slots, &mut entries, &mut user, unknowns);
    }
    user.domains = entries.into_iter().map(|(d, _, _)| d).collect();
    user
}

fn pending_handler(
    arg: &str,
    loc: &Location,
    location: Option<String>,
    user: &str,
    d: &DaDomain,
    slots: &[crate::model::PhpSlot],
    pools: &[crate::model::Pool],
) -> Handler {
    let exp = expected_socket(slots, pools, user, d.php_select.as_ref().map(|(n, _)| *n));
    let tokens = Tokens {
        user,
        domain: &d.name,
        slots,
        expected_socket: exp.socket.as_deref().unwrap_or(""),
    };
    let expanded = nginx::expand_tokens(arg, &tokens).remove(0);
    let target = match Endpoint::parse_nginx(&expanded) {
        Some(ep) => Target::Endpoint(ep),
        None => Target::Unresolved(format!(
            "{expanded} is not a socket address (upstream or variable in a custom snippet)"
        )),
    };
    let webapps = expanded.ends_with("/webapps.sock");
    Handler {
        kind: HandlerKind::Nginx,
        raw_target: expanded,
        target,
        source: loc.clone(),
        layer: Layer::Custom,
        generated_copies: vec![],
        location,
        shadowed: false,
        webapps,
        read_timeout: None,
    }
}

/// Apache handlers (`nginx_apache`, `apache`): `httpd.conf` and `.cust_httpd`.
fn apache_user(
    fs: &Fs,
    du: &DaUser,
    slots: &[crate::model::PhpSlot],
    entries: &mut [(Domain, usize, Vec<String>)],
    user: &mut User,
    unknowns: &mut Vec<Unknown>,
) {
    let path = join(&du.dir, "httpd.conf");
    let src = match fs.read(&path) {
        Ok(Some(s)) => s,
        Ok(None) => {
            unknowns.push(Unknown {
                user: Some(du.name.clone()),
                domain: None,
                file: path,
                line: None,
                reason: "the user's generated httpd.conf is missing".into(),
            });
            return;
        }
        Err(reason) => {
            unknowns.push(Unknown {
                user: Some(du.name.clone()),
                domain: None,
                file: path,
                line: None,
                reason,
            });
            return;
        }
    };
    let mut used: std::collections::HashSet<(String, usize)> = std::collections::HashSet::new();
    let cust: Vec<Vec<apache::ApacheHandler>> = du
        .domains
        .iter()
        .map(|d| {
            d.cust_httpd
                .as_ref()
                .map(|c| apache::handlers(&c.path, &c.src))
                .unwrap_or_default()
        })
        .collect();
    for av in apache::vhosts(&path, &src) {
        let ei = find_entry(entries, &av.server_names);
        let mut handlers = Vec::new();
        for h in &av.handlers {
            let mut handler = Handler {
                kind: HandlerKind::Apache,
                raw_target: h.socket.clone(),
                target: Target::Endpoint(Endpoint::Unix(h.socket.clone())),
                source: h.at.clone(),
                layer: Layer::Generated,
                generated_copies: vec![],
                location: None,
                shadowed: false,
                webapps: h.socket.ends_with("/webapps.sock"),
                read_timeout: None,
            };
            if let Some(ei) = ei {
                let di = entries[ei].1;
                let d = &du.domains[di];
                let exp = expected_socket(slots, &du.pools, &du.name, d.php_select.as_ref().map(|(n, _)| *n));
                let tokens = Tokens {
                    user: &du.name,
                    domain: &d.name,
                    slots,
                    expected_socket: exp.socket.as_deref().unwrap_or(""),
                };
                if let Some(c) = cust[di]
                    .iter()
                    .find(|c| nginx::expand_tokens(&c.socket, &tokens).contains(&h.socket))
                {
                    used.insert((c.at.file.clone(), c.at.start));
                    handler.generated_copies = vec![h.at.clone()];
                    handler.source = c.at.clone();
                    handler.layer = Layer::Custom;
                }
            }
            handlers.push(handler);
        }
        let v = Vhost {
            server_names: av.server_names.clone(),
            https: av.https,
            file: path.clone(),
            line: av.line,
            handlers,
            proxies: false,
            proxy_targets: vec![],
        };
        match ei {
            Some(ei) => entries[ei].0.vhosts.push(v),
            None => user.stray_vhosts.push(v),
        }
    }
    for (di, d) in du.domains.iter().enumerate() {
        let pending: Vec<Handler> = cust[di]
            .iter()
            .filter(|c| !used.contains(&(c.at.file.clone(), c.at.start)))
            .map(|c| Handler {
                kind: HandlerKind::Apache,
                raw_target: c.socket.clone(),
                target: Target::Endpoint(Endpoint::Unix(c.socket.clone())),
                source: c.at.clone(),
                layer: Layer::Custom,
                generated_copies: vec![],
                location: None,
                shadowed: false,
                webapps: false,
                read_timeout: None,
            })
            .collect();
        if !pending.is_empty() {
            if let Some(e) = entries
                .iter_mut()
                .find(|(dom, i, _)| *i == di && dom.parent.is_none())
            {
                e.0.vhosts.push(Vhost {
                    server_names: vec![d.name.clone()],
                    https: false,
                    file: d.cust_httpd.as_ref().map(|c| c.path.clone()).unwrap_or_default(),
                    line: 1,
                    handlers: pending,
                    proxies: false,
                    proxy_targets: vec![],
                });
            }
        }
    }
}
