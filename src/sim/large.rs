//! Large trees for benchmarks: many accounts and domains, written fast
//! (parallel per account), some domains drifted.

use super::{write_tree, SimDomain, SimServer, SimUser};
use std::io;
use std::path::Path;

/// `users` accounts (`u00001`…) with `domains_per_user` domains each, spread
/// over resellers of 50 accounts. PHP 8.3 in slot 1 and 8.1 in slot 2 (every
/// 7th domain selects slot 2). When `drift_every > 0`, every
/// `drift_every`-th domain has a `.cust_nginx` hard-coding the gone php82
/// socket; some others have a harmless `.cust_nginx`. Deterministic.
pub fn generate_large(
    root: &Path,
    users: usize,
    domains_per_user: usize,
    drift_every: usize,
) -> io::Result<()> {
    let mut s = SimServer::new("nginx", "8.3");
    s.php.push(("8.1".into(), "php-fpm".into()));
    let resellers = users.div_ceil(50).max(1);
    s.resellers = (1..=resellers).map(|r| format!("res{r:03}")).collect();
    let mut k = 0usize;
    for i in 0..users {
        let name = format!("u{:05}", i + 1);
        let mut domains = Vec::with_capacity(domains_per_user);
        for j in 0..domains_per_user {
            k += 1;
            let mut d = SimDomain::new(&format!("{name}-d{}.test", j + 1));
            if k.is_multiple_of(7) {
                d.php1_select = Some(2);
            }
            d.ssl = k.is_multiple_of(4);
            if k.is_multiple_of(10) {
                d.subdomains.push("shop".into());
            }
            if k.is_multiple_of(13) {
                d.aliases.push(format!("alias-{name}-{}.test", j + 1));
            }
            if drift_every > 0 && k.is_multiple_of(drift_every) {
                d.cust_nginx = Some(format!(
                    "location ~ \\.php$ {{\n\tfastcgi_pass unix:/usr/local/php82/sockets/{name}.sock;\n\
                     \tinclude /etc/nginx/fastcgi_params;\n}}\n"
                ));
            } else if k.is_multiple_of(11) {
                d.cust_nginx = Some("client_max_body_size 256m;\n".into());
            }
            domains.push(d);
        }
        let creator = &s.resellers[i / 50];
        s.users
            .push(SimUser::new(&name, creator, 10_000 + i as u32, domains));
    }
    // Resellers and the admin are accounts too, without domains.
    for (n, r) in s.resellers.clone().iter().enumerate() {
        let mut u = SimUser::new(r, "admin", 9_000 + n as u32, vec![]);
        u.usertype = "reseller".into();
        s.users.push(u);
    }
    let mut admin = SimUser::new("admin", "admin", 8_999, vec![]);
    admin.usertype = "admin".into();
    s.users.push(admin);
    write_tree(root, &s)
}
